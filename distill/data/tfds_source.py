"""TensorFlow Datasets as a data source: pre-training text, GLUE task rows and transfer pairs.

A dataset is named ``tfds:NAME[:VERSION][:SPLIT][#FIELD[,FIELD]]``::

    tfds:wikipedia/20230601.en                     split train, field text (the defaults)
    tfds:wikipedia/20230601.en:train[:99%]#text    TFDS's split syntax (slices, "a+b")
    tfds:glue/mnli:2.0.0                           a version pinned
    tfds:snli:train#premise,hypothesis             two fields: sentence pairs

Reading goes through TFDS's own reader and never downloads. A dataset prepared as ArrayRecord
(or Parquet) is opened with ``builder.as_data_source`` — random access, no TensorFlow at read
time, the data source grain reads — and a host reads only its own records. One prepared as
TFRecord (TFDS's default, and the format of TFDS's public GCS copies) is read with tf.data
(``builder.as_dataset`` + ``tfds.as_numpy``), which needs TensorFlow; without it the error says
so and how to prepare the set as ArrayRecord instead
(``tfds build NAME --file_format=array_record``).

The prepared data lives in ``data_dir``: the argument, else ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets`` (TFDS's own default); a ``gs://`` folder works where TFDS can reach
Google Storage. A dataset that is not there, a split it does not have or a field its examples
lack is an error naming the dataset, the split and what it has.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# NAME may hold a config ("glue/rte"), VERSION is TFDS's x.y.z (with * wildcards), SPLIT anything
# up to '#' (TFDS's slices hold ':' and '%'), FIELDS a comma-separated list.
_SPEC = re.compile(r"(?P<name>[^:#]+?)(?::(?P<version>\d+\.[\d*]+\.[\d*]+))?"
                   r"(?::(?P<split>[^#]+))?(?:#(?P<fields>.+))?")
#: Rows read at once from a random-access source.
_CHUNK = 1024


@dataclass(frozen=True)
class TfdsSpec:
    """A parsed ``tfds:`` spec (without the prefix); split and fields are None when not given."""

    name: str
    version: str | None = None
    split: str | None = None
    fields: tuple[str, ...] | None = None

    @property
    def dataset(self) -> str:
        """The name TFDS's builder takes: ``NAME`` or ``NAME:VERSION``."""
        return f"{self.name}:{self.version}" if self.version else self.name


def parse_spec(target: str) -> TfdsSpec:
    """``NAME[:VERSION][:SPLIT][#FIELD[,FIELD]]`` (after ``tfds:``) → :class:`TfdsSpec`."""
    match = _SPEC.fullmatch(target.strip())
    if not match or not match["name"].strip():
        raise ValueError(f"tfds:{target}: expected tfds:NAME[:VERSION][:SPLIT][#FIELD[,FIELD]], "
                         f"e.g. tfds:wikipedia/20230601.en:train#text")
    fields = None
    if match["fields"]:
        fields = tuple(f.strip() for f in match["fields"].split(","))
        if not all(fields):
            raise ValueError(f"tfds:{target}: an empty field name after '#'")
    return TfdsSpec(match["name"].strip(), match["version"], match["split"] and
                    match["split"].strip(), fields)


def data_dir_or_default(data_dir: str | None) -> str:
    """``data_dir``, else ``$TFDS_DATA_DIR``, else TFDS's default ``~/tensorflow_datasets``."""
    return (data_dir or os.environ.get("TFDS_DATA_DIR")
            or str(Path.home() / "tensorflow_datasets"))


def import_tfds(what: str):
    try:
        import tensorflow_datasets as tfds  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError(f"{what} needs tensorflow_datasets; install the tfds extra: "
                          f"pip install 'flaxbert[tfds]'") from e
    return tfds


class TfdsSplit:
    """One split of a prepared TFDS dataset, read through TFDS's reader (see the module doc).

    Attributes:
        features: the dataset's ``FeaturesDict`` (``features["label"].names`` of a ClassLabel).
    """

    def __init__(self, dataset: str, split: str, data_dir: str | None = None):
        self.dataset, self.split = dataset, split
        self.data_dir = data_dir_or_default(data_dir)
        where = f"tfds:{dataset} split {split!r}"
        self.tfds = tfds = import_tfds(f"tfds:{dataset}")
        missing = FileNotFoundError(
            f"{where}: dataset {dataset!r} is not prepared in {self.data_dir}; set data_dir or "
            f"$TFDS_DATA_DIR to where it is, or prepare it there (nothing is downloaded at run "
            f"time): tfds build {dataset} --data_dir={self.data_dir} --file_format=array_record")
        try:
            self.builder = tfds.builder(dataset, data_dir=self.data_dir)
        except tfds.core.DatasetNotFoundError:  # neither TFDS's code nor its files know it
            raise missing from None
        except ValueError as e:  # an unknown config or version of a dataset TFDS has code for
            raise ValueError(f"{where}: {str(e).splitlines()[0]}") from None
        if not self.builder.is_prepared():
            raise missing
        info = self.builder.info
        self.features = info.features
        splits = list(info.splits)
        # TFDS's split strings: "train", "train[:10%]", "train+validation[5:]"
        named = [part.split("[")[0].strip() for part in split.split("+")]
        if not all(named) or any(name not in splits for name in named):
            raise ValueError(f"{where}: dataset {dataset!r} has no split {split!r}; its splits: "
                             f"{splits}, its fields: {sorted(self.features)}")

    def check_fields(self, fields: Sequence[str]) -> None:
        missing = [f for f in fields if f not in self.features]
        if missing:
            raise ValueError(f"tfds:{self.dataset} split {self.split!r}: no field "
                             f"{', '.join(map(repr, missing))}; its fields: "
                             f"{sorted(self.features)}")

    def rows(self, fields: Sequence[str], process_index: int = 0,
             process_count: int = 1) -> Iterator[dict]:
        """The examples' ``fields`` (text as str, numbers as Python scalars), in TFDS's order;
        records ``process_index::process_count`` only (a random-access source reads only
        those)."""
        self.check_fields(fields)
        if self.builder.info.file_format in self.tfds.core.FileFormat.with_random_access():
            source = self.builder.as_data_source(split=self.split)
            mine = range(process_index, len(source), process_count)
            examples = (row for start in range(0, len(mine), _CHUNK)
                        for row in source.__getitems__(list(mine[start:start + _CHUNK])))
        else:
            try:
                import tensorflow  # noqa: F401  (tf.data reads TFRecord / Riegeli)
            except ImportError:
                fmt = self.builder.info.file_format.value
                raise ImportError(
                    f"tfds:{self.dataset} is prepared as {fmt} in {self.builder.data_dir}, which "
                    f"only tf.data reads: install TensorFlow (pip install tensorflow-cpu), or "
                    f"prepare the dataset as ArrayRecord to read it without TensorFlow: tfds build "
                    f"{self.dataset} --file_format=array_record") from None
            dataset = self.builder.as_dataset(split=self.split, shuffle_files=False)
            examples = itertools.islice(self.tfds.as_numpy(dataset), process_index, None,
                                        process_count)
        for example in examples:
            yield {f: _python(example[f]) for f in fields}


def _python(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if hasattr(value, "item") else value
