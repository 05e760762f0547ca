"""The preprocessing artifact: fitted in one streaming pass over the
training files, saved as JSON, reused by training, evaluation and export.

It holds the schema (vocabularies with a minimum count, counted over list
elements for multi-valued columns; numeric bucket boundaries; mean and
standard deviation of numbers fed as values; hashing for fields above a
size) and the format it was read with. The schema is what the model's `FieldIds` layer carries into the
SavedModel, so a model never sees ids mapped two ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import numpy as np
import tensorflow as tf

from aefs_keras.datasets.formats import (DENSE_NUMERIC, FORMATS, LABEL, MULTI_CATEGORICAL, NUMERIC,
                                         STRING_KINDS, ReadReport, TextFormat)
from aefs_keras.datasets.records import is_parquet
from aefs_keras.datasets.readers import _check_paths, estimate_rows, read_text
from aefs_keras.progress import RateLine
from aefs_keras.schema import NORMALIZATIONS, Categorical, DenseNumeric, MultiCategorical, Numeric, Schema

ARTIFACT_VERSION = 2  # 2: with the sha256 of its content; 1 is still read
NUMERIC_TRANSFORMS = ("log_squared", "quantile")


# -- the fitting rules, shared by the streaming pass and in-memory data ------
def vocabulary(counts, min_count: int, max_size: int | None = None) -> list[str]:
    """The values seen at least `min_count` times, sorted; the empty string
    (a missing value), when seen at all, keeps its own id whatever its count.
    With `max_size`, only that many: "" and the most frequent values (ties
    by value). Everything else goes to the field's OOV id(s).

    >>> vocabulary({"a": 3, "b": 1, "": 1}, min_count=2)
    ['', 'a']
    >>> vocabulary({"a": 3, "b": 1}, min_count=2)
    ['a']
    >>> vocabulary({"a": 3, "b": 5, "c": 4, "": 1}, min_count=1, max_size=3)
    ['', 'b', 'c']
    """
    vocab = {v for v, c in counts.items() if c >= min_count or v == ""}
    if max_size is not None and len(vocab) > max_size:
        ranked = sorted(vocab - {""}, key=lambda v: (-counts[v], v))
        vocab = ({""} if "" in vocab else set()) | set(ranked[:max_size - ("" in vocab)])
    return sorted(vocab) or [""]  # a field needs one entry


def log_squared_boundaries(max_value: float) -> list[float]:
    """Boundaries equal to Criteo's integer transform: v <= 2 keeps its own
    bucket (from -2 up), v > 2 goes to floor(ln(v)^2), as in the winning
    Kaggle solution, expressed as `Numeric` boundaries so it runs in-graph.

    >>> [round(b, 2) for b in log_squared_boundaries(20.0)]
    [-1.5, -0.5, 0.5, 1.5, 2.5, 4.11, 5.65, 7.39, 9.36, 11.58, 14.09, 16.92]
    """
    top = int(math.floor(math.log(max(max_value, 3.0)) ** 2))
    low = [-1.5, -0.5, 0.5, 1.5, 2.5]  # -2 and below, -1, 0, 1, 2, then > 2
    high = [math.exp(math.sqrt(n)) for n in range(2, top + 1)]
    return low + high


def quantile_boundaries(values, buckets: int = 16) -> list[float]:
    """Boundaries of `buckets` equal-frequency buckets of the non-NaN values."""
    v = np.asarray(values, "float32")
    v = v[~np.isnan(v)]
    if v.size == 0:  # a field with no value seen: one boundary, all in one bucket
        return [0.0]
    qs = np.unique(np.quantile(v, np.linspace(0, 1, buckets + 1)[1:-1]).astype("float32"))
    return qs.tolist() or [0.0]


def _check_numeric(numeric):
    if numeric not in NUMERIC_TRANSFORMS:
        raise ValueError(f"`numeric` must be one of {NUMERIC_TRANSFORMS}. Received: numeric={numeric!r}")


def _numeric_field(name, numeric, maximum, sample, buckets):
    if numeric == "log_squared":
        return Numeric(name, boundaries=log_squared_boundaries(maximum if maximum > -math.inf else 3.0))
    return Numeric(name, boundaries=quantile_boundaries(sample, buckets))


def fit_schema(columns: dict, numeric_fields, min_count: int = 2, numeric: str = "log_squared",
               buckets: int = 16) -> Schema:
    """A schema from in-memory training columns, by the rules of
    `fit_preprocessing`: numeric columns (float, NaN missing) get bucket
    boundaries, the others a `vocabulary`.

    >>> fit_schema({"c": np.array(["x", "x", "y", ""], object)}, numeric_fields=()).field("c").vocabulary
    ('', 'x')
    """
    _check_numeric(numeric)
    fields = []
    for name, values in columns.items():
        if name in numeric_fields:
            x = np.asarray(values, "float32")
            finite = x[~np.isnan(x)]
            fields.append(_numeric_field(name, numeric, float(finite.max()) if finite.size else -math.inf,
                                         x, buckets))
        else:
            keys, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
            fields.append(Categorical(name, vocabulary=vocabulary(dict(zip(keys.tolist(), counts.tolist())),
                                                                  min_count)))
    return Schema(fields)


def _digest(content: dict) -> str:
    """sha256 of the artifact's content, independent of how the file is laid out."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass
class Preprocessing:
    """A fitted preprocessing artifact.

    Attributes:
        format: the `TextFormat` the files were read with.
        schema: the fields, fitted on the training files only.
        rows, skipped: rows fitted on, and bad rows skipped while fitting.
        options: how it was fitted (min_count, numeric transform, ...).
    """

    format: TextFormat
    schema: Schema
    rows: int
    skipped: int
    options: dict

    def to_json(self) -> str:
        content = {
            "artifact_version": ARTIFACT_VERSION,
            "format": {"name": self.format.name, "delimiter": self.format.delimiter,
                       "columns": [list(c) for c in self.format.columns], "header": self.format.header,
                       "positive_label": self.format.positive_label, "strip": self.format.strip,
                       "split_time": self.format.split_time, "list_separator": self.format.list_separator},
            "schema": self.schema.get_config(), "rows": self.rows, "skipped": self.skipped,
            "options": self.options,
        }
        # A changed vocabulary entry is still valid JSON: the digest catches it.
        return json.dumps({**content, "sha256": _digest(content)})

    def save(self, path: str) -> None:
        from aefs_keras.files import written_whole

        with written_whole(path) as tmp, open(tmp, "w") as f:  # never a half-written artifact
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> "Preprocessing":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is damaged: not a preprocessing artifact ({type(e).__name__}: {e}). "
                             "Delete it to fit it again.") from None
        version = d.get("artifact_version") if isinstance(d, dict) else None
        # Version 2 carries its digest; a version 1 artifact (written before) has none to check.
        if isinstance(d, dict) and ("sha256" in d or version == ARTIFACT_VERSION) and d.get("sha256") != _digest(
                {k: v for k, v in d.items() if k != "sha256"}):
            raise ValueError(f"{path} is damaged: its content does not match its sha256 digest (altered "
                             "after it was written). Delete it to fit it again.")
        if version not in (1, ARTIFACT_VERSION):
            raise ValueError(f"{path}: artifact_version {version!r} is not supported "
                             f"(this aefs-keras reads versions 1 and {ARTIFACT_VERSION})")
        try:
            fmt = d["format"]
            return cls(TextFormat(fmt["name"], fmt["delimiter"], tuple(tuple(c) for c in fmt["columns"]),
                                  fmt["header"], fmt.get("positive_label"), fmt.get("strip", False),
                                  fmt.get("split_time"), fmt.get("list_separator", "|")),
                       Schema.from_config(d["schema"]), d["rows"], d["skipped"], d["options"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path} is damaged: a preprocessing artifact with a missing or altered entry "
                             f"({type(e).__name__}: {e}). Delete it to fit it again.") from None


ENGINES = ("auto", "arrow", "tf")


def fit_preprocessing(fmt, paths, min_count: int = 2, numeric: str = "log_squared", buckets: int = 16,
                      hash_above: int | None = None, batch_size: int = 8192, sample: int = 100_000,
                      seed: int = 0, progress: bool = True, strict: bool = False,
                      engine: str = "auto", split=None, split_mode: str = "random",
                      split_seed: int = 0, max_vocab: int | None = None,
                      oov_buckets: int = 1, dense_normalization: str = "standard",
                      count_budget: int | None = None) -> Preprocessing:
    """One streaming pass over `paths`: vocabularies and numeric boundaries.

    Args:
        fmt: a format name ("criteo", "avazu", "avazu_time", "kdd12") or a
            `TextFormat`.
        paths: the training files.
        min_count: values seen fewer times share the field's OOV id. The
            empty string (a missing value), once seen, keeps its own id
            (see `vocabulary`).
        numeric: "log_squared" (Criteo's floor(ln(v)^2) for v > 2) or
            "quantile" (`buckets` equal-frequency buckets from a sample).
        hash_above: a field with more values than this (after min_count)
            is hashed into this many buckets instead.
        sample: reservoir size per numeric field for quantiles.
        progress: print rows/s while fitting.
        strict: raise on the first bad row instead of skipping it.
        engine: "arrow" (pyarrow's C++ CSV parser and value counts, about
            4x faster; `pip install 'aefs-keras[parquet]'`), "tf" (the
            TensorFlow reader) or "auto" (arrow when pyarrow is installed).
            Both give the same rows, bad-row report and vocabularies.
        split, split_mode, split_seed: fit on a part of the rows only (the
            training part of one file; see `read_text`); TensorFlow engine.
        max_vocab: keep at most this many values per field (the most
            frequent); the rest go to `oov_buckets` hashed ids. Bounds the
            served lookup tables however many values a field has.
        oov_buckets: hashed ids per vocabulary field for values not in its
            vocabulary (default 1: one OOV id).
        dense_normalization: for "dense_numeric" columns: "standard"
            (default; mean and standard deviation of the training rows),
            "log" or "none" (see `DenseNumeric`).
        count_budget: count at most this many values per field (arrow
            engine and Parquet), so that memory stays flat however many
            distinct values a long file has. Beyond it the least frequent
            are dropped (Space-Saving): a value seen more often than the
            field's final `floor` is never lost, and counts are at most
            that much too high. Fields where values were dropped are listed
            in `options["approximate_counts"]` with their floor and whether
            the chosen vocabulary is certainly the exact one. Default None:
            exact counts. Use it with `max_vocab` (at least 4x it).

    A "multi_categorical" column's vocabulary counts each list element
    (not the cell), and the field becomes a `MultiCategorical`.
    """
    from aefs_keras.datasets import arrow_scan  # pyarrow only when installed

    if isinstance(fmt, str):
        if fmt not in FORMATS:
            raise ValueError(f"`fmt` must be one of {sorted(FORMATS)} or a TextFormat. Received: fmt={fmt!r}")
        fmt = FORMATS[fmt]
    _check_numeric(numeric)
    for name, value, low in (("max_vocab", max_vocab, 1), ("oov_buckets", oov_buckets, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"`min_count` must be a positive integer. Received: min_count={min_count!r}")
    if count_budget is not None and (isinstance(count_budget, bool) or not isinstance(count_budget, int)
                                     or count_budget < max(1, max_vocab or 1, hash_above or 1)):
        raise ValueError("`count_budget` must be an integer of at least `max_vocab` and `hash_above` "
                         f"(when set). Received: count_budget={count_budget!r}")
    if dense_normalization not in NORMALIZATIONS:
        raise ValueError(f"`dense_normalization` must be one of {NORMALIZATIONS}. "
                         f"Received: dense_normalization={dense_normalization!r}")
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}. Received: engine={engine!r}")
    if engine == "arrow" and not arrow_scan.available():
        raise ImportError("engine='arrow' needs pyarrow: pip install 'aefs-keras[parquet]'")
    if split is not None and engine == "arrow":
        raise ValueError("`split` needs engine='tf' or 'auto'. Received: engine='arrow'")
    if engine == "auto":
        engine = "arrow" if arrow_scan.available() and split is None else "tf"
    paths = _check_paths(paths)
    if count_budget is not None and engine == "tf" and not is_parquet(paths):
        raise ValueError("`count_budget` needs the arrow engine (or Parquet files). Received: engine='tf'"
                         + (" (`split` needs the TensorFlow engine)" if split is not None else ""))
    rng = np.random.default_rng(seed)
    cat_names = [n for n, k in fmt.features if k in STRING_KINDS]
    maxima = {n: -math.inf for n, k in fmt.features if k == NUMERIC}
    reservoirs = {n: np.empty(0, "float32") for n in maxima}
    seen = {n: 0 for n in maxima}
    # count, sum, sum of squares (float64) of each dense column's values
    moments = {n: np.zeros(3) for n, k in fmt.features if k == DENSE_NUMERIC}

    def add_numeric(name, x):
        x = x[~np.isnan(x)]
        if name in moments:
            x = x.astype("float64")
            moments[name] += (x.size, x.sum(), np.square(x).sum())
            return
        if x.size:
            maxima[name] = max(maxima[name], float(x.max()))
            if numeric == "quantile":
                reservoirs[name], seen[name] = _reservoir(reservoirs[name], seen[name], x, sample, rng)

    share = 1.0 if split is None else float(split[1]) - float(split[0])
    # The ETA comes from an estimate of the rows (file sizes over the bytes
    # per line of the first lines), made at the first progress line.
    line = RateLine("preprocess", lambda: share * estimate_rows(paths), enabled=progress)
    show = line.update

    approximate: dict = {}  # fields whose count budget dropped values
    if is_parquet(paths):  # pyarrow reads the columns; no text engine applies
        counts, rows, report = _parquet_scan(fmt, paths, cat_names, [*maxima, *moments], add_numeric, show,
                                             batch_size, split, split_mode, split_seed, min_count, max_vocab,
                                             count_budget, approximate)
        engine = "parquet"
    elif engine == "arrow":
        report = ReadReport(paths)
        counts, rows = arrow_scan.scan(fmt, paths, report, strict, add_numeric, min_count=min_count,
                                       progress=show, max_size=max_vocab, count_budget=count_budget,
                                       approximate=approximate)
    else:
        counts, rows, report = _tf_scan(fmt, paths, batch_size, strict, cat_names, [*maxima, *moments],
                                        add_numeric, show,
                                        dict(split=split, split_mode=split_mode, split_seed=split_seed))
    line.done(f"{rows:,} rows in {line.seconds:.1f} s ({engine} engine); {report.total_skipped} bad rows skipped")
    if rows == 0:
        raise ValueError(f"No valid rows in {paths!r}:\n{report}")
    fields = []
    for name, kind in fmt.features:
        if kind == NUMERIC:
            fields.append(_numeric_field(name, numeric, maxima[name], reservoirs[name], buckets))
        elif kind == DENSE_NUMERIC:
            fields.append(_dense_field(name, dense_normalization, *moments[name]))
        elif kind in STRING_KINDS:
            vocab = vocabulary({v.decode("utf-8", "replace"): k for v, k in counts[name].items()}, min_count,
                               max_vocab)
            cls, extra = ((MultiCategorical, dict(separator=fmt.list_separator)) if kind == MULTI_CATEGORICAL
                          else (Categorical, {}))
            if not vocab and kind == MULTI_CATEGORICAL:  # every list was empty
                vocab = [""]
            if hash_above is not None and len(vocab) > hash_above:
                fields.append(cls(name, hash_buckets=hash_above, **extra))
            else:
                fields.append(cls(name, vocabulary=vocab, oov_buckets=oov_buckets, **extra))
    options = dict(min_count=min_count, numeric=numeric, buckets=buckets, hash_above=hash_above,
                   sample=sample, seed=seed, max_vocab=max_vocab, oov_buckets=oov_buckets,
                   dense_normalization=dense_normalization)
    if count_budget is not None:
        options.update(count_budget=count_budget, approximate_counts=approximate)
        if approximate and progress:  # the record itself is in options either way
            print(f"preprocess: the count budget ({count_budget:,} values) dropped rare values of "
                  f"{len(approximate)} field(s); the vocabulary is certainly the exact one for "
                  f"{sum(a['exact_set'] for a in approximate.values())} of them "
                  f"(options['approximate_counts'])", flush=True)
    return Preprocessing(fmt, Schema(fields), rows, report.total_skipped, options)


def _dense_field(name, normalization, n, total, squares):
    if normalization != "standard":
        return DenseNumeric(name, normalization=normalization)
    mean = total / n if n else 0.0
    var = squares / n - mean * mean if n else 0.0
    std = math.sqrt(var) if var > 1e-12 else 1.0  # a constant column: only centred
    return DenseNumeric(name, normalization="standard", mean=mean, std=std)


def _parquet_scan(fmt, paths, cat_names, float_names, add_numeric, show, batch_size, split, split_mode,
                  split_seed, min_count, max_vocab, count_budget=None, approximate=None):
    """The pass over Parquet files: value counts in Arrow (list columns over
    their elements, as `read_parquet` reads them), numbers as float32."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from aefs_keras.datasets.arrow_scan import _Counts, results
    from aefs_keras.datasets.records import arrow_list_values, arrow_text, parquet_batches

    kinds = dict(fmt.columns)
    label = [n for n, k in fmt.columns if k == LABEL][0]
    counts = {n: _Counts(count_budget) for n in cat_names}
    report = ReadReport(paths)
    rows = 0
    for path, rb in parquet_batches(paths, [*cat_names, *float_names, label], max(batch_size, 65_536), split,
                                    split_mode, split_seed):
        if rb.column(label).null_count:
            raise ValueError(f"{path}: the label column {label!r} has missing values")
        for name in cat_names:
            col = rb.column(name)
            if kinds[name] == MULTI_CATEGORICAL:  # the elements, as read_parquet reads them
                col = arrow_list_values(col, fmt.list_separator)[0]
            else:
                col = arrow_text(col)
            counts[name].add(pc.value_counts(pc.cast(col, pa.binary())))
        for name in float_names:
            add_numeric(name, np.asarray(rb.column(name).to_numpy(zero_copy_only=False), "float32"))
        rows += rb.num_rows
        report.rows[path] += rb.num_rows
        show(rows)
    # As the Arrow text engine: only values that can enter the vocabulary
    # become Python objects.
    return results(counts, min_count, max_vocab, approximate), rows, report


def _tf_scan(fmt, paths, batch_size, strict, cat_names, float_names, add_numeric, show, split):
    """The pass on the TensorFlow reader: counts live in a TensorFlow hash
    table keyed "field index|value" (one C++ update per batch)."""
    ds, report = read_text(fmt, paths, batch_size=batch_size, strict=strict, **split)
    table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)

    @tf.function(reduce_retracing=True)  # batches differ in size where rows were skipped
    def count(features):
        def values(name):
            x = features[name]
            if x.shape.rank == 2:  # a list column: its elements, less the "" padding
                x = tf.reshape(x, [-1])
                x = tf.boolean_mask(x, tf.strings.length(x) > 0)
            return x

        keys = tf.concat([tf.strings.join([f"{j}|", values(n)]) for j, n in enumerate(cat_names)], 0)
        unique, _, n = tf.unique_with_counts(keys, out_idx=tf.int64)
        table.insert(unique, table.lookup(unique) + n)

    rows = 0
    for features, label in ds:
        rows += int(label.shape[0])
        if cat_names:
            count(features)
        for name in float_names:
            add_numeric(name, features[name].numpy())
        show(rows)
    counts = {n: {} for n in cat_names}
    keys, values = table.export()
    for key, k in zip(keys.numpy().tolist(), values.numpy().tolist()):
        j, _, value = key.partition(b"|")
        counts[cat_names[int(j)]][value] = k
    return counts, rows, report


def _reservoir(res, seen, x, size, rng):
    # Algorithm R over a batch: a uniform sample of everything seen so far.
    take = min(size - len(res), len(x))
    res = np.concatenate([res, x[:take]])
    if take < len(x):
        j = rng.integers(0, seen + np.arange(take, len(x)) + 1)
        keep = j < size
        res[j[keep]] = x[take:][keep]
    return res, seen + len(x)
