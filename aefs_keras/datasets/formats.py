"""File formats: what the readers read, declared once.

A `TextFormat` lists a delimited file's columns and their kinds; a
`LibsvmFormat` lists libsvm field ranges. Plain Python: the readers
(`readers.py` for text, `records.py` for TFRecord and Parquet), the
preprocessing and `load()` all import from here, never the other way.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Sequence

from aefs_keras.schema import Categorical, Schema

LABEL, NUMERIC, CATEGORICAL, SKIP = "label", "numeric", "categorical", "skip"
# Multi-valued cells ("a|b|c") and numbers fed as values (`ak.MultiCategorical`,
# `ak.DenseNumeric`). The readers read the first like a categorical cell and
# split it; the second like a numeric one.
MULTI_CATEGORICAL, DENSE_NUMERIC = "multi_categorical", "dense_numeric"
STRING_KINDS = (CATEGORICAL, MULTI_CATEGORICAL)
FLOAT_KINDS = (NUMERIC, DENSE_NUMERIC)
KINDS = (LABEL, NUMERIC, CATEGORICAL, MULTI_CATEGORICAL, DENSE_NUMERIC, SKIP)
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
REASONS = {1: "wrong number of columns", 2: "non-numeric value in a numeric column", 3: "empty line",
           4: "bad libsvm token (expected index:value)", 5: "libsvm index outside its field's range",
           6: "bad time value (expected YYMMDDHH)"}
SPLIT_MODES = ("random", "sequential")
PARQUET_SUFFIXES = (".parquet", ".parq")


def check_split_mode(split_mode) -> str | None:
    """The time column of split_mode "time:COLUMN", None for "random" and
    "sequential"; any other value is an error naming it."""
    if isinstance(split_mode, str) and split_mode.startswith("time:") and len(split_mode) > 5:
        return split_mode[len("time:"):]
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"`split_mode` must be one of {SPLIT_MODES} or 'time:COLUMN'. "
                         f"Received: split_mode={split_mode!r}")
    return None


def time_cuts(sorted_times, split) -> tuple[float, float]:
    """(low, high) such that the rows of part `split` = (start, end) of a
    time split are those with low <= time < high: the start and end
    quantiles of all rows' times (-inf / +inf at the ends), so equal times
    stay in one part. The text and Parquet readers share it."""
    n = len(sorted_times)
    lo, hi = float(split[0]), float(split[1])
    low = float(sorted_times[min(int(lo * n), n - 1)]) if lo > 0.0 else -float("inf")
    high = float(sorted_times[min(int(hi * n), n - 1)]) if hi < 1.0 else float("inf")
    return low, high


@dataclasses.dataclass(frozen=True)
class TextFormat:
    """A delimited text format: its columns in order and how to read them.

    Args:
        name: format name.
        delimiter: one character.
        columns: (column name, kind) pairs; kind is "label", "numeric"
            (bucketised), "categorical", "multi_categorical" (a list of
            values in one cell, split at `list_separator`; read as a padded
            (batch, length) string tensor, "" padding), "dense_numeric" (a
            number fed as a value) or "skip".
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
        list_separator: splits a "multi_categorical" cell (default "|").
    """

    name: str
    delimiter: str
    columns: tuple
    header: str = "none"
    positive_label: str | None = None
    strip: bool = False
    split_time: str | None = None
    list_separator: str = "|"

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


def csv_format(columns: Sequence[tuple[str, str]], delimiter: str = ",", header: str = "auto",
               name: str = "csv", positive_label: str | None = None, strip: bool = True,
               list_separator: str = "|") -> TextFormat:
    """A generic delimited format from declared (column, kind) pairs; kinds
    as in `TextFormat`."""
    for col in columns:
        if len(col) != 2 or col[1] not in KINDS:
            raise ValueError(f"`columns` entries must be (name, kind) with kind in {sorted(KINDS)}. "
                             f"Received: {col!r}")
    if not isinstance(list_separator, str) or len(list_separator) != 1 or list_separator == delimiter:
        raise ValueError("`list_separator` must be one character other than the delimiter. "
                         f"Received: list_separator={list_separator!r}")
    if len(delimiter) != 1:
        raise ValueError(f"`delimiter` must be one character. Received: delimiter={delimiter!r}")
    if header not in ("none", "always", "auto"):
        raise ValueError(f"`header` must be 'none', 'always' or 'auto'. Received: header={header!r}")
    return TextFormat(name, delimiter, tuple(tuple(c) for c in columns), header, positive_label, strip,
                      list_separator=list_separator)
