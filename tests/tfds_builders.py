"""Real prepared TensorFlow Datasets for the tests, written offline by TFDS's own builders.

- `prepare_glue(glue_dir, task, data_dir)`: TFDS's GLUE builder (`tensorflow_datasets.text.glue`:
  its features, class names, split names and `_generate_examples`) run over the TSV files of a
  local `glue_data/` folder; only the download is replaced (the folder stands for the extracted
  zip).
- `prepare_text(name, config, articles, data_dir)`: TFDS's Wikipedia builder's features (title,
  text) for `name/config`, written from the given articles instead of a dump.
- `prepare_snli(pairs, folder, data_dir)`: TFDS's SNLI builder over SNLI 1.0 TSVs of the pairs.

All are written as ArrayRecord, which TFDS reads without TensorFlow (none is installed here).
"""

from __future__ import annotations

from pathlib import Path

from etils import epath
from tensorflow_datasets.datasets.snli import snli_dataset_builder
from tensorflow_datasets.text import glue, wikipedia


class _ExtractedDownloads:
    """TFDS's download manager for a GLUE zip that is already extracted in `folder`."""

    def __init__(self, folder):
        self.folder = folder

    def download_and_extract(self, url):  # every archive: the folder
        return str(self.folder)


class _FromFolder:
    """A TFDS builder whose downloads are already extracted in `folder`."""

    def __init__(self, *, folder, **kwargs):
        self.folder = folder
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        return super()._split_generators(_ExtractedDownloads(self.folder))


class _OfflineGlue(_FromFolder, glue.Glue, skip_registration=True):
    name = "glue"


class _OfflineSnli(_FromFolder, snli_dataset_builder.Builder, skip_registration=True):
    name = "snli"
    pkg_dir_path = epath.Path(snli_dataset_builder.__file__).parent  # its metadata files


class _OfflineWikipedia(wikipedia.Wikipedia, skip_registration=True):
    name = "wikipedia"

    def __init__(self, *, articles, **kwargs):
        self.articles = articles
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        return {"train": ((f"page{i}", {"title": title, "text": text})
                          for i, (title, text) in enumerate(self.articles))}


def prepare_glue(glue_dir: Path, task: str, data_dir: Path) -> Path:
    """Prepares TFDS's `glue/<task>` from `glue_dir/<TASK>/*.tsv` into `data_dir`."""
    builder = _OfflineGlue(folder=glue_dir, config=task, data_dir=str(data_dir),
                           file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)


def prepare_text(config: str, articles: list[tuple[str, str]], data_dir: Path) -> Path:
    """Prepares `wikipedia/<config>` (fields title, text) holding `articles` into `data_dir`."""
    builder = _OfflineWikipedia(articles=articles, config=config, data_dir=str(data_dir),
                                file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)


def prepare_snli(pairs: list[tuple[str, str]], folder: Path, data_dir: Path) -> Path:
    """Prepares TFDS's `snli` from `pairs` (its train split; one pair for validation and test),
    written as the SNLI 1.0 TSVs into `folder` and read by TFDS's own SNLI builder."""
    files = folder / "snli_1.0"
    files.mkdir(parents=True, exist_ok=True)
    labels = ("entailment", "neutral", "contradiction", "-")  # '-': no gold label (-1)
    for split, rows in (("train", pairs), ("dev", pairs[:1]), ("test", pairs[:1])):
        (files / f"snli_1.0_{split}.txt").write_text("gold_label\tsentence1\tsentence2\n" + "".join(
            f"{labels[i % 4]}\t{a}\t{b}\n" for i, (a, b) in enumerate(rows)), encoding="utf-8")
    builder = _OfflineSnli(folder=folder, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)
