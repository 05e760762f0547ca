"""Text readers: (features, label) tf.data pipelines over text files of any size.

`read_text` reads any declared format (`formats.py`: Criteo, Avazu, KDD Cup
2012 track 2, CSV/TSV with declared columns, libsvm); `read_libsvm` is the
libsvm shortcut. `load()` (loader.py) dispatches to these and to
records.py. Text is parsed with TensorFlow ops in batches (parallel,
prefetched, never a whole file in memory). Every bad row is either skipped and counted, with
the first line numbers kept per file (`ReadReport`), or, with `strict=True`,
an error naming the file and line.

Features come out raw (strings for categorical fields, float32 with NaN for
missing numbers, a padded (batch, length) string tensor for a
multi-valued column): the model's `FieldIds` maps them with the schema of the
preprocessing artifact (`aefs_keras.datasets.preprocess`), so training,
evaluation and serving map ids one way only.
"""

from __future__ import annotations

import gzip
import itertools
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from aefs_keras.datasets.formats import (_NUMBER, FLOAT_KINDS, LABEL, MULTI_CATEGORICAL, REASONS, STRING_KINDS,
                                         LibsvmFormat, ReadReport, TextFormat, check_split_mode, libsvm_schema,
                                         time_cuts)
from aefs_keras.datasets.infer import _open  # bytes, gzip checked by its magic
from aefs_keras.schema import Schema, split_list_cells

def _first_line(path, keep_end=False):
    """The first line as text. Read as bytes and decoded alone: decoding
    the file as a text stream fails at the first bad UTF-8 byte of its first
    block, which may lie lines further on."""
    try:
        with _open(path) as f:
            line = f.readline().decode("utf-8", "surrogateescape")
            return line if keep_end else line.rstrip("\r\n")
    except (OSError, EOFError) as e:
        if str(path).endswith(".gz"):
            raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None
        raise ValueError(f"Cannot read {path}: {e}") from e


TIME = "__split_time__"  # the time column's value, while a time split filters rows


def _parse_batch(fmt: TextFormat, crlf: bool = False, time_column: str | None = None):
    n_cols = len(fmt.columns)
    kinds = [k for _, k in fmt.columns]
    label_col = [i for i, k in enumerate(kinds) if k == LABEL]
    if len(label_col) != 1:
        raise ValueError(f"Format {fmt.name!r} must have exactly one label column. Received: {fmt.columns}")
    label_col = label_col[0]
    numeric_label = fmt.positive_label is None
    # Whole column blocks per op (one regex, one to_number, one mask), not one op per column.
    num_idx = [i for i, k in enumerate(kinds) if k in FLOAT_KINDS] + ([label_col] if numeric_label else [])
    cat_idx = [i for i, k in enumerate(kinds) if k in STRING_KINDS]
    multi = {n for n, k in fmt.columns if k == MULTI_CATEGORICAL}
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
        if time_column is not None:  # a row without a number there has no place in a time split
            text = tf.strings.strip(cells[:, fmt.names.index(time_column)])
            good = tf.strings.regex_full_match(text, _NUMBER)
            ok &= good
            when = tf.strings.to_number(tf.where(good, text, "0"), tf.float64)
        # Every output is masked with the final `ok`, so all have the same rows.
        features = {}
        if time_column is not None:
            features[TIME] = tf.boolean_mask(when, ok)
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
                elif name in multi:
                    features[name] = split_list_cells(cats[:, j], fmt.list_separator).to_tensor(
                        default_value="", shape=[None, None])
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


_TIME_VALUES = {}


def _sorted_times(fmt, paths, column):
    """`column`'s values over every valid row of `paths`, sorted (one pass,
    cached per process by file, size and mtime)."""
    key = (column, tuple((p, os.path.getsize(p), os.path.getmtime(p)) for p in paths), fmt.delimiter)
    if key not in _TIME_VALUES:
        ds, _ = read_text(fmt, paths, batch_size=65_536, _time_column=column)
        parts = [features[TIME].numpy() for features, _ in ds]
        values = np.sort(np.concatenate(parts)) if parts else np.empty(0)
        if not values.size:
            raise ValueError(f"split by time: no row of {paths} has a number in column {column!r}")
        _TIME_VALUES.clear()  # one file set at a time: 8 bytes a row
        _TIME_VALUES[key] = values
    return _TIME_VALUES[key]


def estimate_rows(paths, sample_lines: int = 2000) -> int:
    """About how many lines `paths` hold, from each file's size and the
    bytes per line of its first `sample_lines` lines (compressed bytes for
    ".gz"); for progress and ETA only, never for splits."""
    total = 0.0
    for path in paths:
        size = os.path.getsize(path)
        with open(path, "rb") as raw:
            if str(path).endswith(".gz"):
                f = gzip.GzipFile(fileobj=raw)
                lines = sum(1 for _ in itertools.islice(f, sample_lines))
                # The compressed bytes read so far (gzip reads ahead in blocks,
                # so small files are estimated from their size alone).
                used = raw.tell()
            else:
                lines = sum(1 for _ in itertools.islice(raw, sample_lines))
                used = raw.tell()
        if lines:
            total += lines * size / max(used, 1) if lines == sample_lines else lines
    return int(total)


def _check_paths(paths):
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("`paths` is empty")
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"`paths` has a file that does not exist: {p!r}")
    return [str(p) for p in paths]


def read_text(fmt, paths, batch_size=2048, strict=False, report=None, split=None, split_mode="random",
              split_seed=0, num_parallel_calls=tf.data.AUTOTUNE, _time_column=None):
    """Streams text files (plain or .gz) as (features, label) batches.

    Args:
        fmt: a `TextFormat` or `LibsvmFormat`.
        split: None (every row) or (start, end) fractions: the rows whose
            position falls in [start, end). "random" places each row by a
            hash of (file, line, split_seed); "sequential" by its order in
            the files (time order when the files are); "time:COLUMN" by the
            value of a column holding numbers (epoch seconds, YYYYMMDD,
            YYMMDDHH ...): the rows between the start and end quantiles of
            that column over all rows, so the earliest rows train and the
            latest test (rows with equal times stay together, so the parts'
            sizes are about, not exactly, the fractions; the column's values
            are read in a first pass, once per process). All are the same
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
        _time_column = check_split_mode(split_mode)
        if _time_column is not None:
            if not isinstance(fmt, TextFormat) or _time_column not in fmt.names:
                raise ValueError(f"split_mode={split_mode!r}: no column {_time_column!r} in the files' columns "
                                 f"({', '.join(getattr(fmt, 'names', []))})")
            cut_lo, cut_hi = time_cuts(_sorted_times(fmt, paths, _time_column), (lo, hi))
        elif split_mode == "sequential":
            counts = [_count_lines(p) for p in paths]
            offsets = np.cumsum([0] + counts[:-1]).tolist()
            total = float(sum(counts))

    def select(i, n, lines):
        if split is None or _time_column is not None:
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
        parse = _parse_libsvm(fmt) if isinstance(fmt, LibsvmFormat) else _parse_batch(fmt, crlf, _time_column)
        skip = 1 if fmt.header == "always" or (fmt.header == "auto" and _first_line(path) == header) else 0
        def parse_batch(first, lines):
            n = first + tf.range(tf.size(lines, out_type=tf.int64))
            features, label, bad_lines, bad_codes = parse(*select(i, n, lines))
            if split is not None and _time_column is not None:
                when = features.pop(TIME)
                keep = (when >= cut_lo) & (when < cut_hi)
                features = {k: tf.boolean_mask(v, keep) for k, v in features.items()}
                label = tf.boolean_mask(label, keep)
            return first, features, label, bad_lines, bad_codes

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


SHUFFLE_BLOCK = 100_000


def shuffle_rows(ds, batch_size: int, seed: int = 0, block: int = SHUFFLE_BLOCK):
    """Batches of rows -> batches of `batch_size` rows shuffled within
    consecutive blocks of `block` rows, in a new order each epoch (seeded).

    Each block is permuted with one gather per feature. `unbatch().shuffle()`
    moved every row through tf.data on its own and held its buffer as 100k
    rows of separate tensors; with it the 10^6-row job (benchmarks/job.py)
    trained at 8,023 rows/s and peaked at 2.0 GB, with this at 11,586 and
    1.3 GB (docs/data.md, "The shuffled reader"). The batches' rows must have one
    shape (no padded list columns: those take `unbatch().shuffle()`, or, as
    TFRecord does, are shuffled as serialized records before parsing).
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def permute(batch, pair):
        order = tf.argsort(tf.random.stateless_uniform([tf.shape(tf.nest.flatten(batch)[0])[0]], seed=pair))
        return tf.nest.map_structure(lambda t: tf.gather(t, order), batch)

    return tf.data.Dataset.zip((ds.rebatch(block), seeds)).map(permute).rebatch(batch_size)


def read_libsvm(paths, field_ranges: Sequence[tuple[str, int, int]], batch_size: int = 2048,
                shuffle: bool = False, seed: int = 0) -> tuple[tf.data.Dataset, Schema]:
    """Streams libsvm files (one index per field, e.g. `FRAPPE_FIELDS`) as
    batches of (features dict, label), and returns the fields' schema.

    `read_text` with a `LibsvmFormat`, strict: a line whose token count or
    index ranges do not match `field_ranges` stops the pipeline with an
    error naming the file and line.

    Args:
        paths: one file or several (".gz" files are decompressed).
        field_ranges: (name, first index, last index) per field, in order.
        batch_size: rows per batch.
        shuffle: shuffle rows within blocks of 100k rows, anew each epoch
            (`shuffle_rows`), seeded.
        seed: shuffle seed.
    """
    schema = libsvm_schema(field_ranges)
    ds, _ = read_text(LibsvmFormat(tuple(tuple(r) for r in field_ranges)), paths, batch_size=batch_size,
                      strict=True)
    if shuffle:
        ds = shuffle_rows(ds, batch_size, seed)
    return ds.prefetch(tf.data.AUTOTUNE), schema
