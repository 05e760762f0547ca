"""Streaming readers: (features, label) tf.data pipelines over files of any size.

One entry point, `load(format, paths, ...)`, for Criteo, Avazu, KDD Cup 2012
track 2, generic CSV/TSV with declared columns, and TFRecord of tf.Example.
Text is parsed with TensorFlow ops in batches (parallel, prefetched, never
a whole file in memory). Every bad row is either skipped and counted, with
the first line numbers kept per file (`ReadReport`), or, with `strict=True`,
an error naming the file and line.

Features come out raw (strings for categorical fields, float32 with NaN for
missing numbers): the model's `FieldIds` maps them with the schema of the
preprocessing artifact (`aefs_keras.datasets.preprocess`), so training,
evaluation and serving map ids one way only.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
import threading
from typing import Sequence

import numpy as np
import tensorflow as tf

LABEL, NUMERIC, CATEGORICAL, SKIP = "label", "numeric", "categorical", "skip"
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
REASONS = {1: "wrong number of columns", 2: "non-numeric value in a numeric column", 3: "empty line",
           4: "bad libsvm token (expected index:value)", 5: "libsvm index outside its field's range",
           6: "bad time value (expected YYMMDDHH)"}
SPLIT_MODES = ("random", "sequential")


@dataclasses.dataclass(frozen=True)
class TextFormat:
    """A delimited text format: its columns in order and how to read them.

    Args:
        name: format name.
        delimiter: one character.
        columns: (column name, kind) pairs; kind is "label", "numeric",
            "categorical" or "skip".
        header: "none", "always" (first line of every file), or "auto"
            (skipped where the first line equals the column names).
        positive_label: when set, the label is 1 where the label cell
            equals it (text labels such as census' "50000+."); otherwise the
            label cell must be a number and the label is (number > 0).
        strip: strip spaces around categorical cells (", "-separated files).
        split_time: a categorical column holding YYMMDDHH (Avazu's `hour`)
            to replace by two categorical fields, `<column>_of_day` ("00"
            to "23") and `weekday` ("0" Monday to "6" Sunday); a value that
            is not a valid date and hour makes the row bad.
    """

    name: str
    delimiter: str
    columns: tuple
    header: str = "none"
    positive_label: str | None = None
    strip: bool = False
    split_time: str | None = None

    @property
    def names(self):
        return [c for c, _ in self.columns]

    @property
    def features(self) -> list[tuple[str, str]]:
        """(name, kind) of the features the reader yields, in order (the
        split time column becomes its two fields in its place)."""
        out = []
        for name, kind in self.columns:
            if kind in (LABEL, SKIP):
                continue
            if name == self.split_time:
                out += [(f"{name}_of_day", CATEGORICAL), ("weekday", CATEGORICAL)]
            else:
                out.append((name, kind))
        return out

    def kind(self, name):
        return dict(self.columns)[name]


@dataclasses.dataclass(frozen=True)
class LibsvmFormat:
    """libsvm / libFM lines `label idx:value ...` with one index per field,
    in field order, inside each field's declared [first, last] range.
    Features are the per-field ids (index - first), int64."""

    field_ranges: tuple
    name: str = "libsvm"
    header: str = "none"

    @property
    def names(self):
        return [r[0] for r in self.field_ranges]


CRITEO = TextFormat(
    "criteo", "\t",
    (("label", LABEL),) + tuple((f"I{i}", NUMERIC) for i in range(1, 14))
    + tuple((f"C{i}", CATEGORICAL) for i in range(1, 27)))

_AVAZU_CATEGORICAL = ("hour C1 banner_pos site_id site_domain site_category app_id app_domain app_category "
                      "device_id device_ip device_model device_type device_conn_type C14 C15 C16 C17 C18 C19 "
                      "C20 C21").split()
AVAZU = TextFormat("avazu", ",", (("id", SKIP), ("click", LABEL))
                   + tuple((c, CATEGORICAL) for c in _AVAZU_CATEGORICAL), header="auto")
# Avazu with `hour` split into hour of day and weekday (the 10 days of the
# file share few `hour` tokens with any later test day; these two generalise).
AVAZU_TIME = dataclasses.replace(AVAZU, name="avazu_time", split_time="hour")

# KDD Cup 2012 track 2, training.txt: one line per (ad, query, user)
# impression group. The label is Click > 0 (at least one click among the
# group's impressions); Impression is kept out of the features.
KDD12 = TextFormat(
    "kdd12", "\t",
    (("Click", LABEL), ("Impression", SKIP))
    + tuple((c, CATEGORICAL) for c in ("DisplayURL", "AdID", "AdvertiserID", "Depth", "Position", "QueryID",
                                       "KeywordID", "TitleID", "DescriptionID", "UserID")))

FORMATS = {"criteo": CRITEO, "avazu": AVAZU, "avazu_time": AVAZU_TIME, "kdd12": KDD12}


class ReadReport:
    """Rows read and skipped per file, with the first bad line numbers.

    Filled while the pipeline runs; `str(report)` summarises it.
    """

    def __init__(self, paths, keep=5):
        self.paths = list(paths)
        self.keep = keep
        self.rows = {p: 0 for p in self.paths}
        self.skipped = {p: 0 for p in self.paths}
        self.first_bad = {p: [] for p in self.paths}
        self._last_line = {}
        self._lock = threading.Lock()

    def _record(self, file_index, first_line, n_good, bad_lines, bad_codes):
        path = self.paths[int(file_index)]
        with self._lock:
            # Count one pass over the data: a batch starting at or before the
            # last one seen in this file belongs to a later epoch.
            if first_line <= self._last_line.get(path, 0):
                return
            self._last_line[path] = int(first_line)
            self.rows[path] += int(n_good)
            self.skipped[path] += len(bad_lines)
            room = self.keep - len(self.first_bad[path])
            for line, code in list(zip(bad_lines.tolist(), bad_codes.tolist()))[:max(room, 0)]:
                self.first_bad[path].append((int(line), REASONS[int(code)]))
            self.first_bad[path].sort()

    @property
    def total_skipped(self):
        return sum(self.skipped.values())

    def __str__(self):
        lines = []
        for p in self.paths:
            s = f"{p}: {self.rows[p]} rows read, {self.skipped[p]} skipped"
            if self.first_bad[p]:
                s += "; first bad lines: " + ", ".join(f"{n} ({why})" for n, why in self.first_bad[p])
            lines.append(s)
        return "\n".join(lines)


def _open_text(path):
    if str(path).endswith(".gz"):
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                raise ValueError(f"{path} ends in .gz but is not a gzip file (bad magic bytes)")
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _first_line(path, keep_end=False):
    try:
        with _open_text(path) as f:
            line = f.readline()
            return line if keep_end else line.rstrip("\r\n")
    except (OSError, EOFError) as e:
        raise ValueError(f"Cannot read {path}: {e}") from e


def _parse_batch(fmt: TextFormat, crlf: bool = False):
    n_cols = len(fmt.columns)
    kinds = [k for _, k in fmt.columns]
    label_col = [i for i, k in enumerate(kinds) if k == LABEL]
    if len(label_col) != 1:
        raise ValueError(f"Format {fmt.name!r} must have exactly one label column. Received: {fmt.columns}")
    label_col = label_col[0]
    numeric_label = fmt.positive_label is None
    # Whole column blocks per op (one regex, one to_number, one mask), not one op per column.
    num_idx = [i for i, k in enumerate(kinds) if k == NUMERIC] + ([label_col] if numeric_label else [])
    cat_idx = [i for i, k in enumerate(kinds) if k == CATEGORICAL]
    num_names = [fmt.columns[i][0] for i in num_idx]
    cat_names = [fmt.columns[i][0] for i in cat_idx]
    if fmt.split_time is not None and fmt.split_time not in cat_names:
        raise ValueError(f"`split_time` must name a categorical column of format {fmt.name!r}. "
                         f"Received: split_time={fmt.split_time!r}")

    def parse(line_numbers, lines):
        if crlf:
            lines = tf.strings.regex_replace(lines, "\r$", "")
        parts = tf.strings.split(lines, sep=fmt.delimiter)
        empty = tf.equal(tf.strings.length(tf.strings.strip(lines)), 0)
        cols_ok = tf.equal(parts.row_lengths(), n_cols)
        cells = parts.to_tensor(default_value="", shape=[None, n_cols])
        ok = cols_ok & ~empty
        time_ok = tf.ones_like(ok)
        if cat_idx:
            cats = tf.gather(cells, cat_idx, axis=1)
            if fmt.strip:
                cats = tf.strings.strip(cats)
            if fmt.split_time is not None:
                of_day, weekday, time_ok = _split_time(cats[:, cat_names.index(fmt.split_time)])
                ok &= time_ok
        if num_idx:
            text = tf.strings.strip(tf.gather(cells, num_idx, axis=1))
            blank = tf.equal(text, "")
            good = tf.strings.regex_full_match(text, _NUMBER)
            if numeric_label:  # a label cannot be missing
                allowed = tf.concat([good[:, :-1] | blank[:, :-1], good[:, -1:]], axis=1)
            else:
                allowed = good | blank
            ok &= tf.reduce_all(allowed, axis=1)
            numbers = tf.where(good, tf.strings.to_number(tf.where(good, text, "0"), tf.float32), float("nan"))
        # Every output is masked with the final `ok`, so all have the same rows.
        features = {}
        if num_idx:
            numbers = tf.boolean_mask(numbers, ok)
        for j, name in enumerate(num_names[:len(num_names) - int(numeric_label)]):
            features[name] = numbers[:, j]
        if cat_idx:
            cats = tf.boolean_mask(cats, ok)
            for j, name in enumerate(cat_names):
                if name == fmt.split_time:
                    features[f"{name}_of_day"] = tf.boolean_mask(of_day, ok)
                    features["weekday"] = tf.boolean_mask(weekday, ok)
                else:
                    features[name] = cats[:, j]
        if numeric_label:
            label = tf.cast(numbers[:, -1] > 0, tf.float32)
        else:
            text = tf.strings.strip(tf.boolean_mask(cells[:, label_col], ok))
            label = tf.cast(tf.equal(text, fmt.positive_label), tf.float32)
        code = tf.where(empty, 3, tf.where(~cols_ok, 1, tf.where(time_ok, 2, 6)))
        bad = ~ok
        return features, label, tf.boolean_mask(line_numbers, bad), tf.boolean_mask(code, bad)

    return parse


def _split_time(text):
    """YYMMDDHH strings -> (hour of day "HH", weekday "0".."6" with Monday
    0, valid mask). Years are 20YY."""
    digits = tf.strings.regex_full_match(text, r"\d{8}")
    safe = tf.where(digits, text, "00010100")
    num = lambda a, n: tf.strings.to_number(tf.strings.substr(safe, a, n), tf.int64)  # noqa: E731
    year, month, day, hour = 2000 + num(0, 2), num(2, 2), num(4, 2), num(6, 2)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = tf.constant([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], tf.int64)
    in_month = tf.gather(month_days, tf.clip_by_value(month - 1, 0, 11)) + tf.cast(leap & (month == 2), tf.int64)
    valid = digits & (month >= 1) & (month <= 12) & (day >= 1) & (day <= in_month) & (hour <= 23)
    # Days since 1970-01-01 of a proleptic Gregorian date (era-based formula).
    y = year - tf.cast(month <= 2, tf.int64)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (3 with Monday = 0)
    return tf.strings.substr(safe, 6, 2), tf.strings.as_string(weekday), valid


def _line_batches(path, batch_size, skip, errors):
    """(first line number, lines) batches of a text file, plain or gzip.

    Python's buffered reader hands whole batches of lines to TensorFlow
    (three times faster here than TextLineDataset one line at a time), and
    Python's gzip raises on a truncated stream where TensorFlow's GZIP reader
    ends it silently. The error is not raised inside the generator (an
    exception there could stall the pipeline): it is stored in `errors` and
    signalled by a batch whose first line is -1, which the accounting step
    turns into an error naming the file.
    """

    def batches():
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                for _ in range(skip):
                    f.readline()
                first = 1 + skip
                while True:
                    block = list(itertools.islice(f, batch_size))
                    if not block:
                        return
                    yield first, np.array([b.rstrip(b"\n") for b in block], dtype=object)
                    first += len(block)
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            errors[path] = f"{path}: corrupt or truncated gzip file ({e})"
            yield -1, np.array([], dtype=object)

    return tf.data.Dataset.from_generator(
        batches, output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([None], tf.string)))


def _parse_libsvm(fmt: LibsvmFormat):
    names = fmt.names
    n_fields = len(names)
    starts = tf.constant([r[1] for r in fmt.field_ranges], tf.int64)
    ends = tf.constant([r[2] for r in fmt.field_ranges], tf.int64)

    def parse(line_numbers, lines):
        lines = tf.strings.strip(lines)
        empty = tf.equal(tf.strings.length(lines), 0)
        tokens = tf.strings.split(lines)
        count_ok = tf.equal(tokens.row_lengths(), n_fields + 1)
        cells = tokens.to_tensor(default_value="", shape=[None, n_fields + 1])
        label_ok = tf.strings.regex_full_match(cells[:, 0], _NUMBER)
        pairs = cells[:, 1:]
        token_ok = tf.reduce_all(tf.strings.regex_full_match(pairs, r"\d+:" + _NUMBER), axis=1)
        index_text = tf.strings.regex_replace(pairs, ":.*$", "")
        index = tf.strings.to_number(tf.where(tf.strings.regex_full_match(index_text, r"\d+"), index_text, "-1"),
                                     tf.int64)
        range_ok = tf.reduce_all((index >= starts) & (index <= ends), axis=1)
        form_ok = count_ok & label_ok & token_ok
        ok = form_ok & range_ok & ~empty
        code = tf.where(empty, 3, tf.where(~count_ok, 1, tf.where(~(label_ok & token_ok), 4, 5)))
        ids = tf.boolean_mask(index - starts, ok)
        label_value = tf.strings.to_number(tf.where(label_ok, cells[:, 0], "0"), tf.float32)
        label = tf.cast(tf.boolean_mask(label_value, ok) > 0, tf.float32)
        features = {n: ids[:, j] for j, n in enumerate(names)}
        bad = ~ok
        return features, label, tf.boolean_mask(line_numbers, bad), tf.boolean_mask(code, bad)

    return parse


def _count_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    count, last = 0, b"\n"
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")  # a last line without its newline still counts


def _check_paths(paths):
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("`paths` is empty")
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"`paths` has a file that does not exist: {p!r}")
    return [str(p) for p in paths]


def read_text(fmt, paths, batch_size=2048, strict=False, report=None, split=None, split_mode="random",
              split_seed=0, num_parallel_calls=tf.data.AUTOTUNE):
    """Streams text files (plain or .gz) as (features, label) batches.

    Args:
        fmt: a `TextFormat` or `LibsvmFormat`.
        split: None (every row) or (start, end) fractions: the rows whose
            position falls in [start, end). "random" places each row by a
            hash of (file, line, split_seed); "sequential" by its order in
            the files (time order when the files are). Both are the same
            in every run, so (0, 0.8) and (0.8, 1.0) never share a row.

    Returns (dataset, report). Batches hold up to `batch_size` rows (fewer
    where bad rows were skipped or rows fall outside the split).
    """
    paths = _check_paths(paths)
    report = report or ReadReport(paths)
    header = fmt.delimiter.join(fmt.names) if isinstance(fmt, TextFormat) else None
    if split is not None:
        lo, hi = (float(v) for v in split)
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"`split` must be (start, end) with 0 <= start < end <= 1. Received: split={split!r}")
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"`split_mode` must be one of {SPLIT_MODES}. Received: split_mode={split_mode!r}")
        if split_mode == "sequential":
            counts = [_count_lines(p) for p in paths]
            offsets = np.cumsum([0] + counts[:-1]).tolist()
            total = float(sum(counts))

    def select(i, n, lines):
        if split is None:
            return n, lines
        if split_mode == "random":
            key = tf.strings.join([str(split_seed), str(i), tf.strings.as_string(n)], ":")
            u = tf.cast(tf.strings.to_hash_bucket_fast(key, 1_000_000), tf.float64) / 1e6
        else:
            u = tf.cast(offsets[i] + n - 1, tf.float64) / total
        keep = (u >= lo) & (u < hi)
        return tf.boolean_mask(n, keep), tf.boolean_mask(lines, keep)

    errors = {}

    def record(file_index, first_line, n_good, bad_lines, bad_codes):
        if int(first_line.numpy()) == -1:
            raise ValueError(errors.get(paths[int(file_index)], f"{paths[int(file_index)]}: read error"))
        if strict and len(bad_lines.numpy()):
            line, code = int(bad_lines.numpy()[0]), int(bad_codes.numpy()[0])
            raise ValueError(f"{paths[int(file_index)]}:{line}: {REASONS[code]}")
        report._record(file_index.numpy(), int(first_line.numpy()), n_good.numpy(), bad_lines.numpy(),
                       bad_codes.numpy())
        return np.int64(0)

    def one_file(i, path):
        # Windows line ends: strip the "\r" only where the file has them.
        crlf = _first_line(path, keep_end=True).endswith("\r\n")
        parse = _parse_libsvm(fmt) if isinstance(fmt, LibsvmFormat) else _parse_batch(fmt, crlf)
        skip = 1 if fmt.header == "always" or (fmt.header == "auto" and _first_line(path) == header) else 0
        def parse_batch(first, lines):
            n = first + tf.range(tf.size(lines, out_type=tf.int64))
            return (first, *parse(*select(i, n, lines)))

        ds = _line_batches(path, batch_size, skip, errors).map(parse_batch, num_parallel_calls=num_parallel_calls)

        def account(first_line, features, label, bad_lines, bad_codes):
            done = tf.py_function(record, [tf.constant(i, tf.int64), first_line,
                                           tf.size(label, out_type=tf.int64), bad_lines, bad_codes], tf.int64)
            with tf.control_dependencies([done]):
                label = tf.identity(label)
            return features, label

        return ds.map(account)

    for p in paths:  # fail early and clearly on a file that is not what it says
        if p.endswith(".gz"):
            _first_line(p)
    # Files one after the other, in order (sequential splits rely on it).
    ds = one_file(0, paths[0])
    for i, p in enumerate(paths[1:], 1):
        ds = ds.concatenate(one_file(i, p))
    return ds.prefetch(tf.data.AUTOTUNE), report


def csv_format(columns: Sequence[tuple[str, str]], delimiter: str = ",", header: str = "auto",
               name: str = "csv", positive_label: str | None = None, strip: bool = True) -> TextFormat:
    """A generic delimited format from declared (column, kind) pairs."""
    kinds = {LABEL, NUMERIC, CATEGORICAL, SKIP}
    for col in columns:
        if len(col) != 2 or col[1] not in kinds:
            raise ValueError(f"`columns` entries must be (name, kind) with kind in {sorted(kinds)}. "
                             f"Received: {col!r}")
    if len(delimiter) != 1:
        raise ValueError(f"`delimiter` must be one character. Received: delimiter={delimiter!r}")
    if header not in ("none", "always", "auto"):
        raise ValueError(f"`header` must be 'none', 'always' or 'auto'. Received: header={header!r}")
    return TextFormat(name, delimiter, tuple(tuple(c) for c in columns), header, positive_label, strip)


def read_tfrecord(paths, schema, label: str = "label", batch_size: int = 2048):
    """Streams TFRecord files of tf.Example (GZIP if they end in .gz) with
    the schema's raw features and a float label."""
    from aefs_keras.schema import example_feature_spec

    paths = _check_paths(paths)
    spec = {**example_feature_spec(schema), label: tf.io.FixedLenFeature([], tf.float32)}
    compression = "GZIP" if paths[0].endswith(".gz") else None
    ds = tf.data.TFRecordDataset(paths, compression_type=compression).batch(batch_size)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        y = parsed.pop(label)
        return parsed, y

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
    Nulls become NaN (numeric) or "" (categorical)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet needs pyarrow: pip install 'aefs-keras[parquet]'") from e
    paths = _check_paths(paths)
    fmt = csv_format(columns, name="parquet")
    label_name = [n for n, k in fmt.columns if k == LABEL][0]
    wanted = [(n, k) for n, k in fmt.columns if k != SKIP]

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
                    if k == CATEGORICAL:
                        out[n] = np.array(["" if v is None else str(v) for v in col.to_pylist()], dtype=object)
                    else:
                        out[n] = np.array([np.nan if v is None else float(v) for v in col.to_pylist()],
                                          dtype="float32")
                y = out.pop(label_name)
                if np.isnan(y).any():
                    raise ValueError(f"{path}: the label column {label_name!r} has missing values")
                yield out, (y > 0).astype("float32")

    spec = ({n: tf.TensorSpec([None], tf.string if k == CATEGORICAL else tf.float32)
             for n, k in wanted if k != LABEL}, tf.TensorSpec([None], tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(tf.data.AUTOTUNE)
