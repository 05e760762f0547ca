"""`load`: one call from a format name (or a preprocessing artifact) and
files to a tf.data pipeline of (features, label) batches.

It sits above the readers and the preprocessing, which never import it.
"""

from __future__ import annotations

import tensorflow as tf

from aefs_keras.datasets.formats import (FORMATS, FRAPPE_FIELDS, MULTI_CATEGORICAL, LibsvmFormat, ReadReport,
                                         TextFormat)
from aefs_keras.datasets.preprocess import Preprocessing
from aefs_keras.datasets.readers import SHUFFLE_BLOCK, _check_paths, read_text, shuffle_rows
from aefs_keras.datasets.records import is_parquet, read_parquet, read_tfrecord
from aefs_keras.schema import list_padding


def load(format, paths, batch_size: int = 2048, strict: bool = False, shuffle: bool = False,
         seed: int = 0, schema=None, label: str = "label", split=None, split_mode: str = "random",
         split_seed: int = 0, lists_as_text: bool | None = None):
    """One entry point for every file format.

    Args:
        format: "criteo", "avazu", "kdd12", "frappe" (libsvm with Frappe's
            field ranges), a `TextFormat` (see `csv_format`; for ".parquet"
            files, its columns and kinds are what `read_parquet` reads), a
            `LibsvmFormat` (any field ranges), "tfrecord" (needs `schema`),
            or a path to a preprocessing artifact JSON (its format is used).
        paths: one file or several, read in order; ".gz" text is decompressed.
        batch_size: rows per batch (text: fewer where rows were skipped).
        strict: raise on the first bad row, naming file and line, instead
            of skipping and counting it.
        shuffle: shuffle rows within blocks of 100k rows, in a new order
            each epoch (seeded; `readers.shuffle_rows`). With list columns,
            whose batches are padded to different lengths, within a 100k-row
            buffer (`unbatch().shuffle()`, several times slower).
        schema, label: for "tfrecord".
        split, split_mode, split_seed: a deterministic part of the rows,
            e.g. split=(0.0, 0.8) for training and (0.8, 1.0) for testing
            (see `read_text`).
        lists_as_text: Parquet list<integer> columns as text, as a
            preprocessing artifact's vocabulary holds them (see
            `read_parquet`); by default, True when `format` is an artifact.

    Returns:
        (dataset of (features, label) batches, `ReadReport` or None).
    """
    if isinstance(format, str) and format.endswith(".json"):
        format = Preprocessing.load(format).format
        lists_as_text = True if lists_as_text is None else lists_as_text
    if format == "tfrecord":
        if schema is None:
            raise ValueError("format='tfrecord' needs `schema` (the artifact's schema).")
        return read_tfrecord(paths, schema, label, batch_size, shuffle=shuffle, seed=seed), None
    if isinstance(format, str) and format in ("libsvm", "frappe"):
        format = LibsvmFormat(tuple(FRAPPE_FIELDS))
    if isinstance(format, str):
        if format not in FORMATS:
            raise ValueError(f"`format` must be one of {sorted(FORMATS) + ['tfrecord']}, a TextFormat "
                             f"or an artifact path. Received: format={format!r}")
        format = FORMATS[format]
    if is_parquet(paths):  # a format inferred from a Parquet file (or its artifact): its columns
        if not isinstance(format, TextFormat):
            raise ValueError(f"Parquet files need a format with their columns (`infer_format`, an "
                             f"artifact or `csv_format`). Received: format={format!r}")
        paths = _check_paths(paths)
        ds = read_parquet(paths, format.columns, batch_size=batch_size, split=split, split_mode=split_mode,
                          split_seed=split_seed, list_separator=format.list_separator,
                          lists_as_text=bool(lists_as_text))
        report = ReadReport(paths)  # Parquet rows are typed: none is skipped
    else:
        ds, report = read_text(format, paths, batch_size=batch_size, strict=strict, split=split,
                               split_mode=split_mode, split_seed=split_seed)
    if shuffle:
        lists = isinstance(format, TextFormat) and any(k == MULTI_CATEGORICAL for _, k in format.columns)
        if lists:
            # List columns differ in length between batches: row by row, then
            # pad again with "" (the model's padding for string lists).
            ds = ds.unbatch().shuffle(SHUFFLE_BLOCK, seed=seed, reshuffle_each_iteration=True)
            ds = ds.padded_batch(batch_size, padding_values=_list_padding(ds.element_spec))
        else:
            ds = shuffle_rows(ds, batch_size, seed)
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds, report


def _list_padding(spec):
    """padded_batch's values: the model's list padding ("" or -1), 0 for
    the rest (scalars, never padded)."""
    def pad(t):
        value = list_padding(t.dtype.name) if t.dtype in (tf.string, tf.int64) else 0
        return tf.constant(value, t.dtype)

    return tf.nest.map_structure(pad, spec)
