"""TFRecord (tf.Example) and Parquet: reading and writing raw features."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from aefs_keras.datasets.formats import CATEGORICAL, LABEL, MULTI_CATEGORICAL, SKIP, csv_format
from aefs_keras.datasets.readers import _check_paths
from aefs_keras.schema import dense_features, example_feature_spec


def read_tfrecord(paths, schema, label: str = "label", batch_size: int = 2048):
    """Streams TFRecord files of tf.Example (GZIP if they end in .gz) with
    the schema's raw features and a float label. A multi-valued field is
    a list feature of any length (VarLen), padded per batch."""
    paths = _check_paths(paths)
    spec = {**example_feature_spec(schema), label: tf.io.FixedLenFeature([], tf.float32)}
    compression = "GZIP" if paths[0].endswith(".gz") else None
    ds = tf.data.TFRecordDataset(paths, compression_type=compression).batch(batch_size)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        y = parsed.pop(label)
        return dense_features(parsed, schema), y

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def write_tfrecord_shards(dataset, directory: str, rows_per_shard: int = 1_000_000,
                          label: str = "label", compress: bool = True) -> list[str]:
    """Writes (features, label) batches of raw values as tf.Example shards,
    for fast re-reading with `load("tfrecord", ...)`. Each shard is written
    under a temporary name and renamed when complete."""
    if not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise ValueError(f"`rows_per_shard` must be a positive integer. Received: {rows_per_shard!r}")
    os.makedirs(directory, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compress else "")
    suffix = ".tfrecord.gz" if compress else ".tfrecord"
    paths, writer, in_shard, tmp = [], None, 0, None

    def close():
        if writer is not None:
            writer.close()
            final = tmp[: -len(".tmp")]
            os.replace(tmp, final)
            paths.append(final)

    for features, y in dataset.as_numpy_iterator():
        for i in range(len(y)):
            if writer is None or in_shard == rows_per_shard:
                close()
                tmp = os.path.join(directory, f"part-{len(paths):05d}{suffix}.tmp")
                writer, in_shard = tf.io.TFRecordWriter(tmp, options), 0
            feats = {}
            for name, v in features.items():
                v = v[i]
                if isinstance(v, bytes):
                    feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
                elif np.issubdtype(type(v), np.integer):
                    feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
                else:
                    feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
            feats[label] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(y[i])]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
            in_shard += 1
    close()
    return paths


def read_parquet(paths, columns: Sequence[tuple[str, str]], batch_size: int = 2048):
    """Streams Parquet files (pyarrow, the `parquet` extra) as (features,
    label) batches; `columns` are (name, kind) pairs as in `csv_format`.
    Nulls become NaN (numeric) or "" (categorical).

    A "multi_categorical" column is a Parquet list column (list<string> or
    list<integer>; null elements and a null list are dropped) or a text
    column split at "|"; it comes out as the model takes it, a (batch,
    length) tensor padded with "" (strings) or -1 (integers)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet needs pyarrow: pip install 'aefs-keras[parquet]'") from e
    paths = _check_paths(paths)
    fmt = csv_format(columns, name="parquet")
    label_name = [n for n, k in fmt.columns if k == LABEL][0]
    wanted = [(n, k) for n, k in fmt.columns if k != SKIP]
    first = pq.ParquetFile(paths[0]).schema_arrow

    def is_list(t):
        return pa.types.is_list(t) or pa.types.is_large_list(t)

    # The first file decides a list column's dtype (integer ids or strings).
    int_lists = {n for n, k in wanted if k == MULTI_CATEGORICAL and n in first.names
                 and is_list(first.field(n).type) and pa.types.is_integer(first.field(n).type.value_type)}

    def pad(path, name, col):
        if not is_list(col.type):
            if name in int_lists:
                raise ValueError(f"{path}: column {name!r} is {col.type}, not a list of integers as in {paths[0]}")
            text = ["" if v is None else str(v) for v in col.to_pylist()]
            lists = [[p.strip() for p in t.split(fmt.list_separator) if p.strip()] for t in text]
        else:
            lists = [[v for v in (row or []) if v is not None] for row in col.to_pylist()]
            if name not in int_lists:
                lists = [[str(v) for v in row if str(v)] for row in lists]
            elif any(not isinstance(v, int) for row in lists for v in row):
                raise ValueError(f"{path}: column {name!r} is {col.type}, not a list of integers as in {paths[0]}")
        width = max([len(r) for r in lists] + [1])
        fill = -1 if name in int_lists else ""
        out = np.full((len(lists), width), fill, dtype="int64" if name in int_lists else object)
        for i, row in enumerate(lists):
            out[i, :len(row)] = row
        return out

    def batches():
        for path in paths:
            f = pq.ParquetFile(path)
            missing = [n for n, _ in wanted if n not in f.schema_arrow.names]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}")
            for rb in f.iter_batches(batch_size=batch_size, columns=[n for n, _ in wanted]):
                out = {}
                for n, k in wanted:
                    col = rb.column(n)
                    if k == MULTI_CATEGORICAL:
                        out[n] = pad(path, n, col)
                    elif k == CATEGORICAL:
                        out[n] = np.array(["" if v is None else str(v) for v in col.to_pylist()], dtype=object)
                    else:
                        out[n] = np.array([np.nan if v is None else float(v) for v in col.to_pylist()],
                                          dtype="float32")
                y = out.pop(label_name)
                if np.isnan(y).any():
                    raise ValueError(f"{path}: the label column {label_name!r} has missing values")
                yield out, (y > 0).astype("float32")

    def spec(n, k):
        if k == MULTI_CATEGORICAL:
            return tf.TensorSpec([None, None], tf.int64 if n in int_lists else tf.string)
        return tf.TensorSpec([None], tf.string if k == CATEGORICAL else tf.float32)

    signature = ({n: spec(n, k) for n, k in wanted if k != LABEL}, tf.TensorSpec([None], tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(tf.data.AUTOTUNE)
