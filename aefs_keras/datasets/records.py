"""TFRecord (tf.Example) and Parquet: reading and writing raw features."""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from aefs_keras.datasets.formats import (CATEGORICAL, LABEL, MULTI_CATEGORICAL, PARQUET_SUFFIXES, SKIP,
                                         check_split_mode, csv_format, time_cuts)
from aefs_keras.datasets.readers import SHUFFLE_BLOCK, _check_paths, shuffle_rows
from aefs_keras.schema import dense_features, example_feature_spec


def read_tfrecord(paths, schema, label: str = "label", batch_size: int = 2048, shuffle: bool = False,
                  seed: int = 0):
    """Streams TFRecord files of tf.Example (GZIP if they end in .gz) with
    the schema's raw features and a float label. A multi-valued field is
    a list feature of any length (VarLen), padded per batch. `shuffle`
    shuffles the serialized records within blocks of 100k, anew each epoch
    (`readers.shuffle_rows`), before they are parsed."""
    paths = _check_paths(paths)
    spec = {**example_feature_spec(schema), label: tf.io.FixedLenFeature([], tf.float32)}
    compression = "GZIP" if paths[0].endswith(".gz") else None
    for path in paths:  # a file that is no TFRecord file is named here, not mid-training
        try:
            found = sum(1 for _ in tf.data.TFRecordDataset(path, compression_type=compression).take(1))
            if not found and os.path.getsize(path) > (20 if compression else 0):  # an empty gzip stream is 20 bytes
                raise tf.errors.DataLossError(None, None, f"{os.path.getsize(path)} bytes but not one complete record")
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            text = (e.message or type(e).__name__).splitlines()[0]
            text = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:.*$", "", text)  # TF's node and op decorations
            raise ValueError(f"{path} is not a readable TFRecord file{' (GZIP)' if compression else ''}: "
                             f"{text}") from None
    ds = tf.data.TFRecordDataset(paths, compression_type=compression)
    ds = shuffle_rows(ds.batch(SHUFFLE_BLOCK), batch_size, seed) if shuffle else ds.batch(batch_size)

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


def is_parquet(paths) -> bool:
    """True when every path is a Parquet file (by its suffix); mixing
    Parquet with text files is an error."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    flags = [str(p).endswith(PARQUET_SUFFIXES) for p in paths]
    if any(flags) and not all(flags):
        raise ValueError(f"`paths` mixes Parquet and text files: {[str(p) for p in paths]}")
    return bool(flags) and all(flags)


def _mix64(x):
    """splitmix64's finaliser on uint64 (numpy): a fixed hash, so a row's
    part of a split is the same in every pass and every run."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def parquet_split_mask(file_index, first_row, n, split, split_mode, split_seed, total_rows):
    """Which of rows first_row .. first_row + n - 1 of file `file_index`
    fall in `split` = (start, end): by a seeded hash of (seed, file, row)
    ("random") or by position among all `total_rows` ("sequential", where
    `first_row` counts from the start of the first file)."""
    if split is None:
        return np.ones(n, bool)
    lo, hi = float(split[0]), float(split[1])
    rows = np.arange(first_row, first_row + n, dtype=np.uint64)
    if split_mode == "sequential":
        u = rows.astype("float64") / float(total_rows)
    else:
        with np.errstate(over="ignore"):
            key = _mix64(rows ^ _mix64(np.uint64(file_index) + np.uint64(split_seed) * np.uint64(1_000_003)))
        u = (key >> np.uint64(11)).astype("float64") / float(1 << 53)
    return (u >= lo) & (u < hi)


def arrow_text(col):
    """A column's values as the category text both the Parquet reader and
    the preprocessing use (Arrow's cast: "true", "1.5"), nulls as ""."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.cast(col, pa.string()), "")


def arrow_list_values(col, separator, integers=False):
    """The values of a list column (or of text split at `separator`) and
    the row each comes from: nulls dropped; strings stripped and empty ones
    dropped, as the text reader splits cells."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        col = pc.split_pattern(arrow_text(col), separator)
    values, parent = pc.list_flatten(col), pc.list_parent_indices(col)
    if integers:
        keep = pc.is_valid(values)
    else:
        values = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
        keep = pc.and_(pc.is_valid(values), pc.not_equal(pc.fill_null(values, ""), ""))
    return values.filter(keep), parent.filter(keep)


def parquet_batches(paths, names, batch_size, split=None, split_mode="random", split_seed=0):
    """(path, pyarrow RecordBatch) of the wanted columns, rows outside
    `split` left out; a missing column is an error naming the file."""
    import pyarrow.parquet as pq

    time_column = check_split_mode(split_mode) if split is not None else None
    if time_column is not None:  # the split's quantiles of that column over every file, as in read_text
        values = []
        for path in paths:
            if time_column not in pq.ParquetFile(path).schema_arrow.names:
                raise ValueError(f"split_mode={split_mode!r}: {path} has no column {time_column!r}")
            col = pq.read_table(path, columns=[time_column]).column(0)
            if col.null_count:
                raise ValueError(f"split by time: column {time_column!r} of {path} has missing values")
            values.append(np.asarray(col.to_numpy(), "float64"))
        low, high = time_cuts(np.sort(np.concatenate(values)), split)
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths) if split_mode == "sequential" else 0
    before = 0
    columns = list(names) + ([time_column] if time_column is not None and time_column not in names else [])
    for i, path in enumerate(paths):
        f = pq.ParquetFile(path)
        missing = [n for n in names if n not in f.schema_arrow.names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        row = before if split_mode == "sequential" else 0
        for rb in f.iter_batches(batch_size=batch_size, columns=columns):
            if time_column is not None:
                when = np.asarray(rb.column(time_column).to_numpy(), "float64")
                keep = (when >= low) & (when < high)
                rb = rb.select(list(names))
            else:
                keep = parquet_split_mask(i, row, rb.num_rows, split, split_mode, split_seed, total)
            row += rb.num_rows
            if not keep.all():
                rb = rb.filter(keep)
            if rb.num_rows:
                yield path, rb
        before += f.metadata.num_rows


def _check_arrow_type(path, name, kind, t):
    """ValueError naming the file and column when no field kind reads `t`."""
    import pyarrow as pa

    def is_list(x):
        return pa.types.is_list(x) or pa.types.is_large_list(x)

    scalar = not (is_list(t) or pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_union(t)
                  or pa.types.is_fixed_size_list(t) or pa.types.is_dictionary(t))
    number = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t) \
        or pa.types.is_decimal(t)
    if kind == MULTI_CATEGORICAL:
        ok = (is_list(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
                              or pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type))) \
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
        what = "a list of strings or integers, or text"
    elif kind == CATEGORICAL:
        ok, what = scalar, "one value per row"
    else:
        ok, what = number, "numbers"
    if not ok:
        raise ValueError(f"{path}: column {name!r} is {t}, where its kind ({kind}) reads {what}; "
                         "--ignore it or give it another kind")


def read_parquet(paths, columns: Sequence[tuple[str, str]], batch_size: int = 2048, split=None,
                 split_mode: str = "random", split_seed: int = 0, list_separator: str = "|",
                 lists_as_text: bool = False):
    """Streams Parquet files (pyarrow, the `parquet` extra) as (features,
    label) batches; `columns` are (name, kind) pairs as in `csv_format`.
    Nulls become NaN (numeric) or "" (categorical).

    A "multi_categorical" column is a Parquet list column (list<string> or
    list<integer>; null elements and a null list are dropped) or a text
    column split at "|"; it comes out as the model takes it, a (batch,
    length) tensor padded with "" (strings) or -1 (integers). With
    `lists_as_text`, integer lists come out as their text too (padded with
    ""), as a preprocessing artifact counts them: its vocabulary is text.

    `split` = (start, end) keeps the rows whose position falls there, as in
    `read_text`: by a seeded hash of (file, row) ("random", the default) or
    by order across the files ("sequential")."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet needs pyarrow: pip install 'aefs-keras[parquet]'") from e
    paths = _check_paths(paths)
    fmt = csv_format(columns, name="parquet", list_separator=list_separator)
    label_name = [n for n, k in fmt.columns if k == LABEL][0]
    wanted = [(n, k) for n, k in fmt.columns if k != SKIP]
    first = pq.ParquetFile(paths[0]).schema_arrow

    def is_list(t):
        return pa.types.is_list(t) or pa.types.is_large_list(t)

    # The first file decides a list column's dtype (integer ids or strings).
    for n, k in wanted:  # types no kind reads are named before any batch
        if n not in first.names:
            raise ValueError(f"{paths[0]}: no column {n!r} (columns: {', '.join(first.names)})")
        _check_arrow_type(paths[0], n, k, first.field(n).type)
    for path in paths:  # a missing label is known from the files' statistics, before any batch
        meta = pq.ParquetFile(path).metadata
        j = meta.schema.to_arrow_schema().get_field_index(label_name)
        nulls = sum((meta.row_group(g).column(j).statistics.null_count or 0)
                    for g in range(meta.num_row_groups)
                    if j >= 0 and meta.row_group(g).column(j).statistics is not None)
        if nulls:
            raise ValueError(f"{path}: the label column {label_name!r} has {nulls:,} missing value(s)")
    int_lists = {n for n, k in wanted if k == MULTI_CATEGORICAL and n in first.names
                 and is_list(first.field(n).type) and pa.types.is_integer(first.field(n).type.value_type)}
    as_ids = set() if lists_as_text else int_lists

    def pad(path, name, col):
        """A list column (or text split at the separator) -> (rows, longest)
        padded array, in Arrow and numpy (no Python object per value)."""
        if not is_list(col.type):
            if name in int_lists:
                raise ValueError(f"{path}: column {name!r} is {col.type}, not a list of integers as in {paths[0]}")
        elif (name in int_lists) != pa.types.is_integer(col.type.value_type):
            raise ValueError(f"{path}: column {name!r} is {col.type}, unlike in {paths[0]}")
        values, parent = arrow_list_values(col, fmt.list_separator, integers=name in as_ids)
        values = values.to_numpy(zero_copy_only=False)
        parent = np.asarray(parent.to_numpy(zero_copy_only=False), "int64")
        lengths = np.bincount(parent, minlength=len(col))
        starts = np.cumsum(lengths) - lengths
        out = np.full((len(col), max(int(lengths.max(initial=0)), 1)), -1 if name in as_ids else "",
                      dtype="int64" if name in as_ids else object)
        out[parent, np.arange(len(parent)) - starts[parent]] = values
        return out

    def batches():
        for path, rb in parquet_batches(paths, [n for n, _ in wanted], batch_size, split, split_mode,
                                        split_seed):
            out = {}
            for n, k in wanted:
                col = rb.column(n)
                if path != paths[0]:
                    _check_arrow_type(path, n, k, col.type)
                if k == MULTI_CATEGORICAL:
                    out[n] = pad(path, n, col)
                elif k == CATEGORICAL:  # Arrow's text for any type, as the preprocessing counted it
                    out[n] = arrow_text(col).to_numpy(zero_copy_only=False)
                else:  # nulls become NaN
                    out[n] = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), "float32")
            y = out.pop(label_name)
            if np.isnan(y).any():
                raise ValueError(f"{path}: the label column {label_name!r} has missing values")
            yield out, (y > 0).astype("float32")

    def spec(n, k):
        if k == MULTI_CATEGORICAL:
            return tf.TensorSpec([None, None], tf.int64 if n in as_ids else tf.string)
        return tf.TensorSpec([None], tf.string if k == CATEGORICAL else tf.float32)

    signature = ({n: spec(n, k) for n, k in wanted if k != LABEL}, tf.TensorSpec([None], tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(tf.data.AUTOTUNE)
