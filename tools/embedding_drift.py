"""Where a short MLM pre-training leaves the word embeddings, and which part of an export plain
fine-tuning gains or loses from (experiments/README.md, "Why PT+FT loses to scratch").

    python tools/embedding_drift.py runs/demo/pretrain_tiny/export
    python tools/embedding_drift.py runs/demo/pretrain_tiny/export --reset word_embeddings --out X
    distill finetune --config finetune.py:sentiment --config.model.name=X --workdir runs/ft_X

The first prints how far the word embeddings have drifted into one shared direction: the norm of
the mean unit embedding over the vocabulary (≈ 0 for a fresh init, 1 when every row points the
same way), and each row's cosine with that direction, binned by how often the token occurs in the
demo task's training texts. With tied input/output embeddings a token that is never a target
still gets a small gradient through the softmax every step, always along the mean hidden state,
and Adam normalises it into a full-size step: rare rows all move the same way (the
"representation degeneration" of Gao et al. 2019, ICLR).

`--reset PART...` writes a copy of the export with those weights re-drawn from the init that
fine-tuning from scratch starts from (`init_params`, seeded), the rest kept: `word_embeddings`,
`embeddings` (word, position, type and their LayerNorm) or `encoder` (every layer).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from distill.data.tasks import vader_sentiment
from distill.defaults import VADER
from flaxbert import init_params
from flaxbert.pretrained import from_pretrained, save_pretrained

PARTS = {"word_embeddings": lambda path: "word_embeddings" in path,
         "embeddings": lambda path: "'embeddings'" in path,
         "encoder": lambda path: "'layer_" in path}
COUNT_BINS = ((1, 2), (2, 5), (5, 20), (20, 100), (100, None))


def drift(embeddings: np.ndarray, task_counts: np.ndarray) -> dict:
    """The shared direction's strength and each task-frequency bin's mean cosine with it."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    mean = unit.mean(0)
    cosine = unit @ (mean / np.linalg.norm(mean))

    def mean_cosine(rows):  # None for an empty bin
        return float(cosine[rows].mean()) if rows.any() else None
    bins = {}
    for low, high in COUNT_BINS:
        rows = (task_counts >= low) & (task_counts < (high or np.inf))
        bins[f"{low}-{high - 1}" if high else f"{low}+"] = (int(rows.sum()), mean_cosine(rows))
    return {"mean_unit_norm": float(np.linalg.norm(mean)),
            "unseen_in_task_cosine": mean_cosine(task_counts == 0), "task_bins": bins}


def task_counts(tokenizer, vocab_size: int) -> np.ndarray:
    """How often each token occurs in the demo task's training texts."""
    counts = np.zeros(vocab_size, np.int64)
    for example in vader_sentiment(VADER, seed=0)["train"]:
        np.add.at(counts, tokenizer.encode(example.text_a), 1)
    return counts


def reset(pretrained, parts, seed: int):
    """The export's params with `parts` re-drawn from a fresh init of the same model."""
    fresh = init_params(pretrained.model, seed)
    chosen = [PARTS[p] for p in parts]

    def pick(path, old, new):
        name = jax.tree_util.keystr(path)
        return new if any(match(name) for match in chosen) else old
    return jax.tree_util.tree_map_with_path(pick, pretrained.params, fresh)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a model folder from_pretrained reads")
    parser.add_argument("--reset", nargs="+", choices=sorted(PARTS), default=[])
    parser.add_argument("--out", help="where --reset writes its copy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.reset and not args.out:
        parser.error("--reset needs --out")
    pretrained = from_pretrained(args.export)
    table = pretrained.params["backbone"]["embeddings"]["word_embeddings"]["embedding"]
    counts = task_counts(pretrained.tokenizer, table.shape[0])
    report = drift(np.asarray(table, np.float32), counts)
    print(report)
    if args.reset:
        save_pretrained(args.out, pretrained.model, reset(pretrained, args.reset, args.seed),
                        pretrained.tokenizer)
        print(f"wrote {args.out}: {', '.join(args.reset)} re-drawn (seed {args.seed})")
    return report


if __name__ == "__main__":
    main()
