"""A user's own delimited file: its format read off the header and a sample.

`infer_format` checks every named column against the header before any
work, and decides each column's kind from the first rows: a column whose
non-empty values are all numbers is numeric, unless its name ends in "id"
(ids are categories even when they are digits); anything else is
categorical. `--categorical` / `--numeric` (or the arguments of the same
names) override that; `--multi-categorical` declares a column of lists
("a|b|c", split at `--list-separator`) and `--dense-numeric` a number fed
as a value rather than bucketised. The decision is printed so that a user
can check it; a categorical column whose cells often hold the list
separator is pointed out, since lists are never inferred.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import re
from typing import Sequence

from aefs_keras.datasets.formats import _NUMBER as NUMBER_PATTERN
from aefs_keras.datasets.formats import (CATEGORICAL, DENSE_NUMERIC, LABEL, MULTI_CATEGORICAL, NUMERIC,
                                         PARQUET_SUFFIXES, SKIP, TextFormat)

_NUMBER = re.compile(rf"^\s*{NUMBER_PATTERN}\s*$")  # the readers' rule for a number
_MISSING = {""}  # as the reader: a blank numeric cell is missing; "NA" is not a number


def _open(path):
    """The file as bytes (gzip decompressed for ".gz")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    if path.endswith(".gz"):
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                raise ValueError(f"{path} ends in .gz but is not a gzip file (bad magic bytes)")
        return gzip.open(path, "rb")
    return open(path, "rb")


def text_lines(path):
    """(header text, iterator of (line number, text)) of a delimited file,
    by the readers' rules: lines end at "\n" only (a trailing "\r" is
    dropped when the header line ends in "\r\n"), and bytes that are not UTF-8 are kept, as surrogates
    (`cell.encode("utf-8", "surrogateescape")` gives them back), so that one
    bad byte costs no line. A cut-off gzip stream is a ValueError naming
    the file and the line it stopped at."""
    f = _open(path)
    try:
        first = f.readline()
    except (OSError, EOFError) as e:
        f.close()
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None
    crlf = first.endswith(b"\r\n")  # as the reader: "\r" is a line end only in a CRLF file

    def decode(raw):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        return (raw[:-1] if crlf and raw.endswith(b"\r") else raw).decode("utf-8", "surrogateescape")

    def lines():
        number = 1
        try:
            with f:
                for raw in f:
                    number += 1
                    yield number, decode(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip file after line {number} ({e})") from None

    return decode(first), lines()


def split_cells(text, sep):
    """A line's cells as the readers split it: at every `sep`, no quoting."""
    return text.split(sep)


def _delimiter(path, first_line, delimiter):
    if delimiter:
        if len(delimiter) != 1:
            raise ValueError(f"`delimiter` must be one character. Received: delimiter={delimiter!r}")
        return delimiter
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith(".tsv"):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def _names(value):
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v.strip()]


def _text_header(path, delimiter, sample_rows):
    """The header, the delimiter and up to `sample_rows` well-formed rows."""
    first, lines = text_lines(path)
    if not first.strip():
        raise ValueError(f"{path}: the first line is empty; a header row with the column names is needed")
    sep = _delimiter(path, first, delimiter)
    header = next(csv.reader([first], delimiter=sep))  # names may be quoted
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise ValueError(f"{path}: the header repeats column(s) {dup}")
    rows = []
    for _, text in lines:
        if len(rows) >= sample_rows:
            break
        row = split_cells(text, sep)
        if len(row) == len(header):
            rows.append(row)
    lines.close()
    return header, sep, rows


class BadRowScan:
    """What one pass over a text file found before training: bad rows by
    cause and column, each with its first line and value, as the readers
    will skip them. `str()` is the report `train` prints once."""

    def __init__(self, path, limit):
        self.path, self.limit = path, limit
        self.lines = 0  # data lines seen
        self.complete = True  # False when the scan stopped at `limit`
        self.bad_rows = 0
        self.by_cause = {}  # cause -> [count, first line, first value]

    def add(self, cause, line, value=None):
        entry = self.by_cause.setdefault(cause, [0, line, value])
        entry[0] += 1

    def __str__(self):
        if not self.bad_rows:
            return ""
        scope = "" if self.complete else f" (in its first {self.lines:,} data lines; the rest is counted while read)"
        parts = [f"{cause}: {n:,} (first at line {line}" + (f", {value!r})" if value is not None else ")")
                 for cause, (n, line, value) in sorted(self.by_cause.items(), key=lambda kv: -kv[1][0])]
        return (f"Bad rows in {self.path}{scope}: {self.bad_rows:,} of {self.lines:,} will be skipped "
                "(--strict makes the first one an error):\n  " + "\n  ".join(parts))


class Why(dict):
    """Feature -> how its kind was decided; `bad_rows` is the file's
    `BadRowScan` (None for Parquet)."""

    bad_rows = None


def _scan(path, sep, header, checked, limit):
    """One pass over a text file's data lines (up to `limit`).

    `checked` maps the columns that may have to hold numbers to whether a
    blank cell is allowed there. Returns the `BadRowScan` with the empty
    lines and wrong column counts filled in, the rows with non-numbers
    grouped by which checked columns hold them ({columns: [count, line,
    {column: value}]}), and per checked column up to 1,001 distinct numbers.
    """
    index = {name: header.index(name) for name in checked}
    groups, distinct = {}, {name: set() for name in checked}
    scan = BadRowScan(path, limit)
    _, lines = text_lines(path)
    with contextlib.closing(lines):
        for line, text in lines:
            if scan.lines >= limit:
                scan.complete = False
                break
            scan.lines += 1
            row = split_cells(text, sep)
            if not text.strip():
                scan.add("empty line", line)
                continue
            if len(row) != len(header):
                scan.add("wrong number of columns", line, f"{len(row)} columns, not {len(header)}")
                continue
            bad = None
            for name, blank_ok in checked.items():
                v = row[index[name]].strip()
                if blank_ok and v in _MISSING:
                    continue
                if _NUMBER.match(v):
                    if len(distinct[name]) <= 1000:
                        distinct[name].add(v)
                    continue
                if bad is None:
                    bad = {}
                bad[name] = v
            if bad:
                entry = groups.setdefault(frozenset(bad), [0, line, bad])
                entry[0] += 1
    return scan, groups, distinct


def _check_whole_file(path, sep, header, kinds, why, guessed, label, time_column, limit, strict):
    """Settle the guessed numeric columns on the whole file (up to `limit`
    lines) and count its bad rows into `why.bad_rows`."""
    if time_column is not None and time_column not in header:
        time_column = None  # named in the error of the split, not here
    checked = {n: True for n, k in kinds.items() if k in (NUMERIC, DENSE_NUMERIC)}
    checked[label] = False  # a label cannot be missing, nor a time
    if time_column is not None:
        checked[time_column] = False
    scan, groups, distinct = _scan(path, sep, header, checked, limit)
    for name in guessed:
        rows = [(line, values[name], n) for cols, (n, line, values) in groups.items() if name in cols]
        if not rows:
            continue
        line, value, _ = min(rows)
        count = sum(n for _, _, n in rows)
        if len(distinct[name]) <= 1000:
            kinds[name] = CATEGORICAL
            why[name] = (f"numbers, but line {line} holds {value!r}: read as categories "
                         f"({len(distinct[name])} distinct numbers; --numeric {name} would skip such rows)")
        else:
            why[name] = (f"numbers except in {count:,} row(s), first line {line} holding {value!r}: those rows "
                         f"are skipped; --categorical {name} keeps them")
    numbers = {n for n, k in kinds.items() if k in (NUMERIC, DENSE_NUMERIC)} | {label, time_column}
    why.bad_rows = _finish_scan(scan, groups, [h for h in header if h in numbers], label, strict)


def _finish_scan(scan, groups, numbers, label, strict):
    """Count the rows the readers will skip once the kinds are known
    (`numbers`: the columns that must hold numbers); under `strict`, raise
    at the first one, naming its column and value."""
    firsts = []
    for columns, (n, line, values) in groups.items():
        hit = [c for c in numbers if c in columns]
        if not hit:
            continue
        name = hit[0]
        cause = "non-number in the label" if name == label else f"non-number in numeric column {name!r}"
        entry = scan.by_cause.setdefault(cause, [0, line, values[name]])
        entry[0] += n
        if line < entry[1]:
            entry[1], entry[2] = line, values[name]
        firsts.append((line, name, values[name]))
    if strict:
        if firsts:
            line, name, value = min(firsts)
            hint = "" if name == label else f" (--categorical {name} reads it as a category)"
            raise ValueError(f"{scan.path}:{line}: column {name!r} holds {value!r}, not a number{hint}")
        if scan.by_cause:
            cause, (_, line, value) = min(scan.by_cause.items(), key=lambda kv: kv[1][1])
            raise ValueError(f"{scan.path}:{line}: {cause}" + (f" ({value})" if value else ""))
    scan.bad_rows = sum(n for n, _, _ in scan.by_cause.values())
    return scan


def _parquet_header(path):
    """The column names and Arrow types of a Parquet file (its schema; no
    rows are read)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet needs pyarrow: pip install 'aefs-keras[parquet]'") from e
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises several kinds for a bad file)
        raise ValueError(f"{path} is not a readable Parquet file ({e})") from e
    return list(schema.names), {n: schema.field(n).type for n in schema.names}


def _parquet_kind(name, t):
    """A Parquet column's kind from its Arrow type."""
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if not (pa.types.is_string(inner) or pa.types.is_large_string(inner) or pa.types.is_integer(inner)
                or pa.types.is_null(inner)):
            return SKIP, f"left out: a Parquet list of {inner}, which no field kind reads"
        return MULTI_CATEGORICAL, f"a Parquet list column ({t})"
    if pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_union(t):
        return SKIP, f"left out: a Parquet {t} column, which no field kind reads"
    if pa.types.is_integer(t):
        if name.lower().endswith("id"):
            return CATEGORICAL, f"{t}, but the name ends in 'id'"
        return NUMERIC, f"an {t} column"
    if pa.types.is_floating(t):
        return NUMERIC, f"a {t} column"
    return CATEGORICAL, f"a {t} column"


def infer_format(path: str, label: str = "label", columns: Sequence[str] | str | None = None,
                 ignore: Sequence[str] | str = (), categorical: Sequence[str] | str = (),
                 numeric: Sequence[str] | str = (), delimiter: str | None = None,
                 sample_rows: int = 2000, multi_categorical: Sequence[str] | str = (),
                 dense_numeric: Sequence[str] | str = (),
                 list_separator: str = "|", scan_rows: int = 1_000_000, strict: bool = False,
                 time_column: str | None = None) -> tuple[TextFormat, "Why"]:
    """The `TextFormat` of a delimited file with a header row.

    Args:
        path: the (first) file; ".gz" is decompressed. A ".parquet" file's
            kinds come from its column types: a list column is
            multi-categorical, integers numeric (categorical when the name
            ends in "id"), floats numeric, anything else categorical.
        label: the label column (numbers; > 0 is a click).
        columns: feature columns to use (default: all but `label` and `ignore`).
        ignore: columns to leave out.
        categorical, numeric: columns whose kind is given, not inferred.
        multi_categorical: columns holding lists of values, split at
            `list_separator` (`ak.MultiCategorical`).
        dense_numeric: numeric columns fed as values (`ak.DenseNumeric`).
        delimiter: one character (default: from the extension, ".tsv" tab
            and ".csv" comma, else the more frequent of the two in the header).
        sample_rows: rows whose cells decide each column's kind first.
        scan_rows: data lines of a text file then read whole (default
            10^6): a column whose sample held only numbers but which holds
            a non-number further on becomes categorical when it has at most
            1,000 distinct numbers (a year, a code), else stays numeric and
            `why` names the line and value whose rows will be skipped. The
            same pass counts the rows the readers will skip.
        strict: raise at the first bad row, naming its line, column and value.
        time_column: a column that must hold a number on every row.

    Returns:
        (format, why): `why` maps each feature to how its kind was decided;
        `why.bad_rows` is the `BadRowScan` of a text file (None for Parquet).

    Raises:
        ValueError naming a column that is not in the header (and listing
        the header), or a column given two kinds.

    `why` says "hint: ..." for a categorical column where a quarter or more
    of the sampled cells hold `list_separator`.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "clicks.csv")
    >>> _ = open(path, "w").write("label,user_id,price,city\\n1,17,9.5,Oslo\\n0,18,3.25,Rome\\n")
    >>> fmt, why = infer_format(path)
    >>> fmt.features
    [('user_id', 'categorical'), ('price', 'numeric'), ('city', 'categorical')]
    """
    if str(path).endswith(PARQUET_SUFFIXES):  # kinds from the column types, not from a sample
        (header, types), sep, rows = _parquet_header(path), ",", []
    else:
        (header, sep, rows), types = _text_header(path, delimiter, sample_rows), None

    def check(flag, names):
        unknown = [n for n in names if n not in header]
        if unknown:
            raise ValueError(f"{flag}: column(s) {unknown} not in the header of {path}. "
                             f"The header has: {', '.join(header)}")

    check("--label", [label])
    ignore, categorical, numeric = _names(ignore), _names(categorical), _names(numeric)
    multi, dense = _names(multi_categorical), _names(dense_numeric)
    given = (("--categorical", categorical), ("--numeric", numeric), ("--multi-categorical", multi),
             ("--dense-numeric", dense))
    for flag, names in (("--columns", _names(columns)), ("--ignore", ignore), *given):
        check(flag, names)
    for i, (flag, names) in enumerate(given):
        for other, other_names in given[i + 1:]:
            both = sorted(set(names) & set(other_names))
            if both:
                raise ValueError(f"{flag} and {other} both name column(s) {both}")
    if not isinstance(list_separator, str) or len(list_separator) != 1 or list_separator == sep:
        raise ValueError("--list-separator must be one character other than the delimiter. "
                         f"Received: {list_separator!r}")
    features = _names(columns) or [h for h in header if h != label and h not in ignore]
    if label in features:
        raise ValueError(f"--columns: the label column {label!r} cannot also be a feature")
    if not features:
        raise ValueError(f"{path}: no feature columns left (header: {', '.join(header)})")
    kinds, why, guessed = {}, Why(), []
    for j, name in enumerate(header):
        if name == label or name not in features:
            continue
        values = [r[j].strip() for r in rows]
        present = [v for v in values if v not in _MISSING]
        if types is not None and name not in (*multi, *dense, *categorical, *numeric):
            kinds[name], why[name] = _parquet_kind(name, types[name])
        elif name in multi:
            kinds[name], why[name] = MULTI_CATEGORICAL, f"--multi-categorical, split at {list_separator!r}"
        elif name in dense:
            kinds[name], why[name] = DENSE_NUMERIC, "--dense-numeric"
        elif name in categorical:
            kinds[name], why[name] = CATEGORICAL, "--categorical"
        elif name in numeric:
            kinds[name], why[name] = NUMERIC, "--numeric"
        elif present and all(_NUMBER.match(v) for v in present):
            if name.lower().endswith("id"):
                kinds[name], why[name] = CATEGORICAL, "digits, but the name ends in 'id'"
            else:
                kinds[name], why[name] = NUMERIC, "every sampled value is a number"
                guessed.append(name)
        else:
            kinds[name], why[name] = CATEGORICAL, "has non-numeric values" if present else "no values sampled"
            lists = sum(list_separator in v for v in present)
            if present and lists >= 0.25 * len(present):
                why[name] += (f"; hint: {lists} of {len(present)} sampled cells hold {list_separator!r}: "
                              f"--multi-categorical {name} reads them as lists")
    if types is not None:
        import pyarrow as pa

        t = types[label]
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise ValueError(f"--label {label!r}: must be a number or boolean column (> 0 is a click); "
                             f"{path} has {t}")
    label_values = [r[header.index(label)].strip() for r in rows]
    bad = [v for v in label_values if not _NUMBER.match(v)]
    if bad and len(bad) * 2 > len(label_values):  # a few are bad rows, counted by the scan
        raise ValueError(f"--label {label!r}: values must be numbers (> 0 is a click); "
                         f"{path} has e.g. {bad[0]!r}")
    if types is None:
        _check_whole_file(path, sep, header, kinds, why, guessed, label, time_column, scan_rows, strict)
    spec = tuple((h, LABEL if h == label else kinds.get(h, SKIP)) for h in header)
    name = os.path.basename(path).split(".")[0] or "csv"
    return TextFormat(name, sep, spec, header="always", strip=True, list_separator=list_separator), why


def check_last_lines(paths: Sequence[str], strict: bool = False) -> list[str]:
    """Plain text files whose last line has no newline at the end: a file
    cut off while being written looks like that. Each is reported (printed
    and returned), or with `strict` is an error. (A cut ".gz" stream is an
    error of the reader, naming the file.)"""
    cut = []
    for path in paths:
        if str(path).endswith((".gz", *PARQUET_SUFFIXES)):
            continue
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                continue
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                cut.append(path)
    for path in cut:
        message = f"{path}: the last line has no newline at its end; the file may be truncated"
        if strict:
            raise ValueError(message + " (an error with --strict)")
        print(f"warning: {message}")
    return cut
