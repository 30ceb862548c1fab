"""The transfer set of task distillation: unlabelled sentences (VADER texts or a text file)."""

from __future__ import annotations

from pathlib import Path

from distill.data import tasks as task_data
from flaxbert.textfiles import read_utf8


def transfer_examples(config) -> list[task_data.Example]:
    """The unlabelled transfer set: the VADER texts the config names, or a text file (one per line)."""
    d = config.data
    if d.transfer == "vader":
        texts = task_data.vader_transfer_texts(d.vader_dir)
    else:
        path = Path(d.transfer)
        if not path.is_file():
            raise FileNotFoundError(f"data.transfer={d.transfer!r}: no such file (expected 'vader' "
                                    f"or a text file with one example per line)")
        texts = [line.strip() for line in read_utf8(path, "data.transfer").splitlines()
                 if line.strip()]
    if not texts:
        raise ValueError(f"data.transfer={d.transfer!r} holds no texts")
    return [task_data.Example(f"transfer-{i}", t, None, None) for i, t in enumerate(texts)]
