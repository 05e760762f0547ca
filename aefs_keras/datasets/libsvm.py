"""libsvm / libFM files with one active index per field (Frappe, iPinYou).

Each line is `label idx:value idx:value ...` with exactly one index per
declared field, fields in declaration order; a field's ids are the index
minus the start of its range. Labels > 0 become 1, others 0.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from aefs_keras.schema import Categorical, Schema

# (name, first index, last index) of the widely used Frappe_x1 files.
FRAPPE_FIELDS = (
    ("user", 0, 956), ("item", 957, 5038), ("daytime", 5039, 5045),
    ("weekday", 5046, 5052), ("isweekend", 5053, 5054), ("homework", 5055, 5057),
    ("cost", 5058, 5059), ("weather", 5060, 5068), ("country", 5069, 5148),
    ("city", 5149, 5381),
)


def libsvm_schema(field_ranges: Sequence[tuple[str, int, int]]) -> Schema:
    """One categorical field per (name, first, last) index range."""
    fields = []
    previous_end = -1
    for name, first, last in field_ranges:
        if not first <= last or first <= previous_end:
            raise ValueError(
                "`field_ranges` must be ascending, non-overlapping (name, first, last) "
                f"ranges. Received: {(name, first, last)!r}"
            )
        previous_end = last
        fields.append(Categorical(name, vocabulary_size=last - first + 1))
    return Schema(fields)


def read_libsvm(
    paths: str | Sequence[str],
    field_ranges: Sequence[tuple[str, int, int]],
    batch_size: int = 2048,
    shuffle: bool = False,
    seed: int = 0,
) -> tuple[tf.data.Dataset, Schema]:
    """Streams libsvm files as batches of (features dict, label).

    A line whose token count or index ranges do not match `field_ranges`
    fails the pipeline with an InvalidArgumentError naming the problem.

    Args:
        paths: one file or several (".gz" files are decompressed).
        field_ranges: (name, first index, last index) per field, in order.
        batch_size: rows per batch.
        shuffle: shuffle rows (buffer of 100k rows), seeded.
        seed: shuffle seed.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for p in paths:
        if not os.path.exists(p):
            raise ValueError(f"`paths` has a file that does not exist: {p!r}")
    schema = libsvm_schema(field_ranges)
    names = [r[0] for r in field_ranges]
    starts = tf.constant([r[1] for r in field_ranges], tf.int64)
    ends = tf.constant([r[2] for r in field_ranges], tf.int64)
    num_fields = len(field_ranges)

    def parse(lines):
        tokens = tf.strings.split(tf.strings.strip(lines))  # ragged (B, 1 + F)
        tf.debugging.assert_equal(
            tokens.row_lengths(), tf.cast(num_fields + 1, tf.int64),
            message=f"libsvm line must have a label and {num_fields} idx:value tokens",
        )
        dense = tokens.to_tensor()
        label = tf.cast(tf.strings.to_number(dense[:, 0]) > 0, tf.float32)
        index = tf.strings.to_number(
            tf.strings.split(dense[:, 1:], ":").to_tensor()[..., 0], tf.int64
        )
        tf.debugging.assert_equal(
            tf.reduce_all((index >= starts) & (index <= ends)), True,
            message="libsvm index outside its field's declared range",
        )
        ids = index - starts
        return {n: ids[:, i] for i, n in enumerate(names)}, label

    def lines(path):
        compression = "GZIP" if str(path).endswith(".gz") else None
        return tf.data.TextLineDataset(path, compression_type=compression)

    ds = tf.data.Dataset.from_tensor_slices(paths).flat_map(lines)
    ds = ds.filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    if shuffle:
        ds = ds.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), schema
