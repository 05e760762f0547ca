"""The preprocessing pass on pyarrow's C++ CSV parser (the `parquet` extra).

`fit_preprocessing(engine="arrow")` reads text files in blocks of whole
lines and, per block, lets pyarrow split and type the columns and count
each categorical value (`value_counts`), so no Python object is made per
cell. Bad rows follow exactly the TensorFlow reader's rules and codes
(same `ReadReport` counts and line numbers): blank lines (only spaces or
tabs), a wrong number of columns, a non-numeric number, a bad YYMMDDHH.
The artifact it fits equals the TensorFlow engine's (vocabularies, counts,
log-squared boundaries; quantile samples differ once a field has more
values than `sample`).
"""

from __future__ import annotations

import gzip
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from aefs_keras.datasets.formats import (_NUMBER, FLOAT_KINDS, LABEL, MULTI_CATEGORICAL, REASONS, STRING_KINDS,
                                         ReadReport, TextFormat)
from aefs_keras.datasets.readers import _first_line

_BLANK = re.compile(rb"(?m)^[ \t\r\f\v]*$")
_LONE_CR = re.compile(rb"\r(?!\n)")


def available() -> bool:
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def _blocks(path, skip, block_bytes):
    """(first line number, bytes of whole lines) blocks of a text file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for _ in range(skip):
                f.readline()
            line, carry = 1 + skip, b""
            while True:
                chunk = f.read(block_bytes)
                if not chunk:
                    if carry:
                        yield line, carry + b"\n"  # a last line without its newline
                    return
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                carry = data[cut:]
                yield line, data[:cut]
                line += data.count(b"\n", 0, cut)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e


def _weekday_and_valid(text):
    """numpy twin of readers._split_time on an arrow string array."""
    import pyarrow.compute as pc

    digits = np.asarray(pc.fill_null(pc.match_substring_regex(text, r"^\d{8}$"), False))
    safe = pc.if_else(digits, text, "00010100")

    def num(a, b):
        return np.asarray(pc.cast(pc.utf8_slice_codeunits(safe, a, b), "int64"))

    year, month, day, hour = 2000 + num(0, 2), num(2, 4), num(4, 6), num(6, 8)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    in_month = month_days[np.clip(month - 1, 0, 11)] + (leap & (month == 2))
    valid = digits & (month >= 1) & (month <= 12) & (day >= 1) & (day <= in_month) & (hour <= 23)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return pc.utf8_slice_codeunits(safe, 6, 8), (days + 3) % 7, valid


def _parsed(parser, path, skip, block_bytes, crlf):
    """(first line, parsed `_Block`) per block; the next block is parsed in
    a background thread while the caller counts the current one."""
    with ThreadPoolExecutor(1) as ex:
        pending = None
        for first, data in _blocks(path, skip, block_bytes):
            if not crlf and b"\r" in data:
                # pyarrow ends a line at "\r"; the TensorFlow reader keeps it in the cell.
                raise ValueError(f"{path}: a carriage return inside a line near line {first}; "
                                 "read this file with engine='tf'")
            if crlf and _LONE_CR.search(data):
                raise ValueError(f"{path}: a lone carriage return near line {first}; read this file with "
                                 "engine='tf'")
            n_lines = data.count(b"\n")
            job = ex.submit(lambda d=data, f=first, n=n_lines: parser.fast(d, f, n) or parser.slow(d, f, n))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (first, job)
        if pending is not None:
            yield pending[0], pending[1].result()


class _Counts:
    """Value counts of one categorical field, merged every few blocks.

    With `budget`, at most `budget` values (plus "") stay counted, so that
    memory does not grow with the distinct values of a long file. This is
    the Space-Saving rule applied at each merge: when more values are
    counted, the most frequent `budget` stay (ties by value), the largest
    count dropped becomes the `floor`, and a value first counted after
    that starts from the floor. Every count kept is then at least the true
    count and at most `err` above it, and a value that was dropped was
    seen at most `floor` times: no value seen more often is lost.
    Without a budget (the default), counts are exact.
    """

    def __init__(self, budget: int | None = None):
        self.parts, self.pending = [], 0
        self.budget, self.floor = budget, 0
        self.table = None  # columns v, c, e (count, its error bound)

    def add(self, vc):
        self.parts.append(vc)
        self.pending += len(vc)
        if len(self.parts) >= 16 or (self.budget is not None and self.pending > self.budget):
            self._merge()

    def _merge(self):
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.parts:
            return
        values = [p.field(0) for p in self.parts]
        counts = [pc.cast(p.field(1), pa.int64()) for p in self.parts]
        zeros = pa.array(np.zeros(self.pending, "int64"))
        parts = pa.table({"v": pa.chunked_array(values, values[0].type),
                          "c": pa.chunked_array(counts, pa.int64()), "e": zeros, "o": zeros})
        if self.table is not None:
            old = self.table.append_column("o", pa.array(np.ones(len(self.table), "int64")))
            parts = pa.concat_tables([old, parts.cast(old.schema)])
        g = parts.group_by("v").aggregate([("c", "sum"), ("e", "sum"), ("o", "max")])
        # Values not counted before start from the floor (Space-Saving).
        new = pc.multiply(pc.subtract(1, g.column("o_max")), self.floor)
        table = pa.table({"v": g.column("v"), "c": pc.add(g.column("c_sum"), new),
                          "e": pc.add(g.column("e_sum"), new)})
        self.parts, self.pending = [], 0
        if self.budget is not None and len(table) > self.budget + 1:
            empty = pc.equal(table.column("v"), b"")
            rest = table.filter(pc.invert(empty))
            order = pc.sort_indices(rest, sort_keys=[("c", "descending"), ("v", "ascending")])
            if len(rest) > self.budget:
                self.floor = max(self.floor, rest.column("c")[order[self.budget].as_py()].as_py())
                table = pa.concat_tables([rest.take(order[:self.budget]), table.filter(empty)])
        self.table = table.combine_chunks()

    def result(self, min_count: int, max_size: int | None = None) -> dict[bytes, int]:
        import pyarrow as pa
        import pyarrow.compute as pc

        self._merge()
        if self.table is None:
            return {}
        table = self.table
        # Only values that can make the vocabulary become Python objects (the
        # empty string does whatever its count: `preprocess.vocabulary`).
        table = table.filter(pc.or_(pc.greater_equal(table.column("c"), min_count),
                                    pc.equal(table.column("v"), b"")))
        self.exact_set = True
        if max_size is not None and len(table) > max_size:
            # The max_size most frequent (ties by value, as `vocabulary`
            # ranks them) plus "", chosen in Arrow: a field with millions
            # of values never becomes a Python dict of millions.
            order = pc.sort_indices(table, sort_keys=[("c", "descending"), ("v", "ascending")])
            chosen, left = table.take(order[:max_size]), table.take(order[max_size:])
            if self.floor:
                # The chosen set is certainly the true top max_size when the
                # least a chosen value can have been seen beats the most any
                # other value can have been.
                low = pc.min(pc.subtract(chosen.column("c"), chosen.column("e"))).as_py()
                self.exact_set = low >= min_count and low > max(self.floor, pc.max(left.column("c")).as_py() or 0)
            table = pa.concat_tables([chosen, table.filter(pc.equal(table.column("v"), b""))])
        elif self.floor:
            self.exact_set = self.floor < min_count  # what was dropped could not qualify
        return dict(zip(table.column("v").to_pylist(), table.column("c").to_pylist()))


class _Block:
    """One parsed block: the table of rows that split into the right number
    of columns, their line numbers, bad rows so far, numeric values."""

    def __init__(self, table, lines, bad_lines, bad_codes, ok, values):
        self.table, self.lines, self.ok, self.values = table, lines, ok, values
        self.bad_lines, self.bad_codes = bad_lines, bad_codes


class _Parser:
    def __init__(self, fmt: TextFormat):
        import pyarrow as pa

        self.fmt = fmt
        self.names = fmt.names
        self.label = [n for n, k in fmt.columns if k == LABEL][0]
        self.numeric = [n for n, k in fmt.columns if k in FLOAT_KINDS]
        # Numbers checked and converted: the numeric fields, and a numeric label.
        self.num_cols = self.numeric + ([self.label] if fmt.positive_label is None else [])
        self.number = f"^{_NUMBER}$"
        self.binary = {n: pa.binary() for n in self.names}

    def _read(self, data, types, threads, handler):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(column_names=self.names, use_threads=threads,
                                          block_size=(1 << 20) if threads else len(data) + 1),
            parse_options=pcsv.ParseOptions(delimiter=self.fmt.delimiter, quote_char=False, escape_char=False,
                                            ignore_empty_lines=True, invalid_row_handler=handler),
            convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""], check_utf8=False,
                                                strings_can_be_null=False))

    def fast(self, data, first, n_lines):
        """The common case, parallel and typed by pyarrow; None where the
        block needs the exact line-by-line rules of `slow` (a blank line, a
        wrong number of columns, a cell pyarrow and the TensorFlow reader
        might read differently: an unparsable, NaN or infinite number, a
        missing label)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data:
            return None
        called = []
        types = {**self.binary, **{n: pa.float32() for n in self.num_cols}}
        try:
            table = self._read(data, types, True, lambda row: called.append(row) or "skip")
        except pa.ArrowInvalid:
            return None
        if called or table.num_rows != n_lines:
            return None
        values = {}
        for n in self.num_cols:
            col = table.column(n)
            if pc.any(pc.or_(pc.is_nan(col), pc.is_inf(col))).as_py():
                return None
            values[n] = col.to_numpy()  # nulls (blank cells) become NaN
        if self.fmt.positive_label is None:
            if table.column(self.label).null_count:
                return None
        else:
            text = pc.utf8_trim_whitespace(pc.cast(table.column(self.label), pa.string(), safe=False))
            if pc.any(pc.equal(text, "")).as_py():  # maybe a whitespace-only line
                return None
        lines = np.arange(first, first + n_lines)
        return _Block(table, lines, [], [], np.ones(n_lines, bool), values)

    def slow(self, data, first, n_lines):
        """Line-exact: blank lines (code 3) and wrong column counts (1) by
        line number, then numbers checked with the reader's regex (2)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        lines = np.arange(first, first + n_lines)
        bad_lines, bad_codes = [], []
        blank = [data.count(b"\n", 0, m.start()) for m in _BLANK.finditer(data) if m.start() < len(data)]
        if blank:  # removed before parsing
            bad_lines += lines[blank].tolist()
            bad_codes += [3] * len(blank)
            lines = np.delete(lines, blank)
            data = b"".join(l for l in data.splitlines(keepends=True) if l.strip(b" \t\r\f\v\n"))
        wrong = []

        def handler(row):
            wrong.append(row.number - 1)
            return "skip"

        table = self._read(data, self.binary, False, handler)
        if wrong:
            bad_lines += lines[wrong].tolist()
            bad_codes += [1] * len(wrong)
            lines = np.delete(lines, wrong)
        ok = np.ones(table.num_rows, bool)
        values = {}
        for n in self.num_cols:
            text = pc.utf8_trim_whitespace(pc.cast(table.column(n), pa.string(), safe=False))
            good = np.asarray(pc.match_substring_regex(text, self.number).combine_chunks())
            blank_cell = np.asarray(pc.equal(text, "").combine_chunks())
            ok &= good | (blank_cell & (n != self.label))
            values[n] = np.asarray(pc.cast(pc.if_else(good, text, None), pa.float32()).combine_chunks()
                                   .to_numpy(zero_copy_only=False), "float32")
        return _Block(table, lines, bad_lines, bad_codes, ok, values)


def scan(fmt: TextFormat, paths: list[str], report: ReadReport, strict: bool,
         on_numeric: Callable[[str, np.ndarray], None], min_count: int = 1, block_bytes: int = 1 << 24,
         progress: Callable[[int], None] | None = None,
         max_size: int | None = None, count_budget: int | None = None,
         approximate: dict | None = None) -> tuple[dict[str, dict[bytes, int]], int]:
    """One pass: returns ({categorical feature: {value: count}} for values
    seen at least `min_count` times, at most the `max_size` most frequent
    plus "", rows) and calls `on_numeric(name, float32 values with NaN)`
    per block. With `count_budget`, each field counts at most that many
    values (`_Counts`); the fields where that dropped values are written
    to `approximate` as {name: {"floor": ..., "exact_set": ...}}."""

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return _scan(pool, fmt, paths, report, strict, on_numeric, min_count, block_bytes, progress, max_size,
                     count_budget, approximate)


def _scan(pool, fmt, paths, report, strict, on_numeric, min_count, block_bytes, progress, max_size=None,
          count_budget=None, approximate=None):
    import pyarrow as pa
    import pyarrow.compute as pc

    parser = _Parser(fmt)
    header = fmt.delimiter.join(fmt.names)
    categorical = [n for n, k in fmt.columns if k in STRING_KINDS]
    multi = {n for n, k in fmt.columns if k == MULTI_CATEGORICAL}
    counts = {n: _Counts(count_budget) for n, k in fmt.features if k in STRING_KINDS}
    rows = 0
    for file_index, path in enumerate(paths):
        skip = 1 if fmt.header == "always" or (fmt.header == "auto" and _first_line(path) == header) else 0
        crlf = _first_line(path, keep_end=True).endswith("\r\n")
        for first, block in _parsed(parser, path, skip, block_bytes, crlf):
            table, lines, ok = block.table, block.lines, block.ok
            bad_lines, bad_codes = block.bad_lines, block.bad_codes
            time_ok = np.ones_like(ok)
            if fmt.split_time is not None:
                text = pc.cast(table.column(fmt.split_time), pa.string(), safe=False).combine_chunks()
                if fmt.strip:
                    text = pc.utf8_trim_whitespace(text)
                of_day, weekday, time_ok = _weekday_and_valid(text)
            ok &= time_ok
            bad_rows = np.flatnonzero(~ok)
            if bad_rows.size:
                bad_lines += lines[bad_rows].tolist()
                bad_codes += np.where(time_ok[bad_rows], 2, 6).tolist()
            if strict and bad_lines:
                i = int(np.argmin(bad_lines))
                raise ValueError(f"{path}:{bad_lines[i]}: {REASONS[bad_codes[i]]}")
            keep = pa.array(ok)
            n_good = int(ok.sum())
            todo = []
            for n in categorical:
                col = table.column(n).combine_chunks()
                if n == fmt.split_time:
                    todo.append((counts[f"{n}_of_day"], pc.cast(of_day.filter(keep), pa.binary())))
                    wd = pa.array(weekday[ok].astype(str).astype(object), pa.string())
                    todo.append((counts["weekday"], pc.cast(wd, pa.binary())))
                    continue
                if bad_rows.size:
                    col = col.filter(keep)
                if n in multi:  # count the list's elements, as the reader splits them
                    col = pc.list_flatten(pc.split_pattern(col, fmt.list_separator))
                    col = pc.utf8_trim_whitespace(pc.cast(col, pa.string(), safe=False))
                    col = pc.cast(col.filter(pc.not_equal(col, "")), pa.binary())
                elif fmt.strip:
                    col = pc.cast(pc.utf8_trim_whitespace(pc.cast(col, pa.string(), safe=False)), pa.binary())
                todo.append((counts[n], col))
            # Columns counted side by side: pyarrow releases the GIL.
            list(pool.map(lambda item: item[0].add(pc.value_counts(item[1])), todo))
            for n in parser.numeric:
                on_numeric(n, block.values[n][ok])
            order = np.argsort(bad_lines, kind="stable")
            report._record(file_index, first, n_good, np.array(bad_lines, "int64")[order],
                           np.array(bad_codes, "int64")[order])
            rows += n_good
            if progress is not None:
                progress(rows)
    return results(counts, min_count, max_size, approximate), rows


def results(counts: dict, min_count: int, max_size: int | None, approximate: dict | None):
    """Each field's counts (`_Counts.result`); fields whose budget dropped
    values are recorded in `approximate`."""
    out = {}
    for name, c in counts.items():
        out[name] = c.result(min_count, max_size)
        if c.floor and approximate is not None:
            approximate[name] = {"floor": int(c.floor), "exact_set": bool(c.exact_set)}
    return out
