"""Real prepared TensorFlow Datasets for the tests, written offline by TFDS's own builders.

- `prepare_glue(glue_dir, task, data_dir)`: TFDS's GLUE builder (`tensorflow_datasets.text.glue`:
  its features, class names, split names and `_generate_examples`) run over the TSV files of a
  local `glue_data/` folder; only the download is replaced (the folder stands for the extracted
  zip).
- `prepare_text(name, config, articles, data_dir)`: TFDS's Wikipedia builder's features (title,
  text) for `name/config`, written from the given articles instead of a dump.
- `prepare_pairs(name, fields, pairs, data_dir)`: a train split of sentence pairs under the two
  field names (an SNLI-like set: premise/hypothesis and a label).

All are written as ArrayRecord, which TFDS reads without TensorFlow (none is installed here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.text import glue, wikipedia


class _ExtractedDownloads:
    """TFDS's download manager for a GLUE zip that is already extracted in `folder`."""

    def __init__(self, folder):
        self.folder = folder

    def download_and_extract(self, url):
        return str(self.folder)


class _OfflineGlue(glue.Glue, skip_registration=True):
    name = "glue"

    def __init__(self, *, glue_dir, **kwargs):
        self.glue_dir = glue_dir
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        return super()._split_generators(_ExtractedDownloads(self.glue_dir))


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
    builder = _OfflineGlue(glue_dir=glue_dir, config=task, data_dir=str(data_dir),
                           file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)


def prepare_text(config: str, articles: list[tuple[str, str]], data_dir: Path) -> Path:
    """Prepares `wikipedia/<config>` (fields title, text) holding `articles` into `data_dir`."""
    builder = _OfflineWikipedia(articles=articles, config=config, data_dir=str(data_dir),
                                file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)


def prepare_pairs(name: str, fields: tuple[str, str], pairs: list[tuple[str, str]],
                  data_dir: Path) -> Path:
    """Prepares dataset `name` with a train split of `pairs` under `fields` (and a label)."""
    a, b = fields

    class Pairs(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                a: tfds.features.Text(), b: tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=["entailment", "neutral",
                                                         "contradiction"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (x, y) in enumerate(pairs):
                yield i, {a: x, b: y, "label": np.int64(i % 3)}

    Pairs.name = name
    builder = Pairs(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)
