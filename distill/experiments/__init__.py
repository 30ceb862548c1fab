"""The experiment configs, shipped with the package: one `ml_collections` file per experiment.

`distill X --config NAME.py[:ARG]` names one of these files by its bare name from any folder
(`recipe.py:demo`, `pretrain.py:tiny,corpora`); a path to a config file of your own
(`--config my/recipe.py:demo`) is read as it is and may import these (`from distill.experiments
import finetune`) to build on them. A path that exists wins over a packaged name.
"""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).parent


def names() -> list[str]:
    """The packaged experiment files (`recipe.py`, …)."""
    return sorted(p.name for p in DIR.glob("*.py") if not p.name.startswith("_"))


def resolve(spec: str) -> str:
    """`FILE.py[:ARG]` with FILE made a path: an existing file as given, else the packaged file of
    that bare name. Anything else comes back unchanged, for the config loader to report."""
    file, colon, arg = spec.partition(":")
    if Path(file).expanduser().is_file() or Path(file).name != file:
        return spec
    packaged = DIR / file
    return f"{packaged}{colon}{arg}" if packaged.is_file() else spec
