"""Property-based fuzzing of every input surface (hypothesis), in process.

Each case ends in a result, a counted and reported skip, or a ValueError
that names the input: never a crash, a hang, TensorFlow's own traceback or
a silently wrong answer. The default run tries a few dozen cases per
surface (under a minute in all); `python benchmarks/fuzz.py --cases N`
runs N per surface and reports what it found (docs/reliability.md).
"""

import gzip
import json
import math
import os
import pathlib
import re
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import aefs_keras as ak
from aefs_keras.datasets.infer import infer_format

CASES = int(os.environ.get("AEFS_FUZZ_CASES", "25"))
# No shrinking in the default run: a failure is reported as found, at once.
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=os.environ.get("AEFS_FUZZ_RANDOM") is None,
                suppress_health_check=list(HealthCheck), database=None,
                phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("AEFS_FUZZ_SHRINK") else []))
NUMBER = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
HEADER = b"label,c,n,t"
FORMAT = ak.datasets.csv_format([("label", "label"), ("c", "categorical"), ("n", "numeric"),
                                 ("t", "multi_categorical")], header="always")

# -- text files ---------------------------------------------------------
_byte = st.integers(0, 255).filter(lambda b: b != 0x0A).map(lambda b: bytes([b]))  # any byte but "\n"
_junk = st.lists(_byte, max_size=40).map(b"".join)
_text_cell = st.one_of(
    st.text(st.characters(exclude_characters="\n,|"), max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from([b"a", b"\x00", b"\xff", b"\"", b" ", b"\r", b"\xc3", b"\t"]), max_size=6).map(b"".join),
    st.just(b"x" * 5000),
)
_number_cell = st.one_of(
    st.sampled_from([b"1e400", b"-1e400", b"nan", b"inf", b"-0", b"0.5", b"", b" 7 ", b".5", b"5.", b"1e-50",
                     b"9" * 60, b"--1", b"1e", b"0x10", b"\xff1"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: repr(v).encode()),
    st.integers(-10**6, 10**6).map(lambda v: str(v).encode()),
)
_label_cell = st.sampled_from([b"0", b"1", b"2", b"", b"yes", b" 1", b"-1", b"0.0"])
_list_cell = st.lists(st.sampled_from([b"a", b"b", b"", b" c ", b"\xff"]), max_size=4).map(b"|".join)
_good_line = st.tuples(_label_cell, _text_cell, _number_cell, _list_cell).map(b",".join)
_line = st.one_of(_good_line, _good_line, _good_line, _junk, st.just(b""), st.just(b"1,a,2"))


def _expected(line):
    """The row the reader must produce from a data line, or None (skipped)."""
    cells = line.split(b",")
    if not line.strip() or len(cells) != 4:
        return None
    label, c, n, t = (cell.strip() for cell in cells)
    if not NUMBER.fullmatch(label) or (n and not NUMBER.fullmatch(n)):
        return None
    with np.errstate(over="ignore"):  # 1e400 is inf, as TensorFlow reads it
        number = np.float32(float(n)) if n else np.float32("nan")
    return (float(float(label) > 0), c, number,
            [v.strip() for v in cells[3].split(b"|") if v.strip()])


def _rows(ds):
    out = []
    for features, label in ds:
        tags = features["t"].numpy()
        for i in range(len(label)):
            out.append((float(label[i]), features["c"][i].numpy(), np.float32(features["n"][i].numpy()),
                        [v for v in tags[i].tolist() if v != b""]))
    return out


def _same(got, want):
    return (got[0] == want[0] and got[1] == want[1] and got[3] == want[3]
            and (got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2]))))


@FUZZ
@given(lines=st.lists(_line, max_size=30), end=st.sampled_from([b"\n", b""]))
def test_text_reader_accounts_for_every_line(tmp_path_factory, lines, end):
    path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    body = b"\n".join(lines) + (end if lines else b"")
    path.write_bytes(HEADER + b"\n" + body)
    data_lines = body.split(b"\n") if body else []
    if data_lines and data_lines[-1] == b"":
        data_lines.pop()  # the file's final newline ends the last line
    ds, report = ak.datasets.load(FORMAT, str(path), batch_size=7)
    got = _rows(ds)
    want = [w for w in (_expected(l) for l in data_lines) if w is not None]
    assert len(got) + report.total_skipped == len(data_lines), report
    assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want)), (got, want)
    # The pre-training scan (Python) counts the same bad rows as the reader (TensorFlow).
    try:
        fmt, why = infer_format(str(path), categorical="c", numeric="n", multi_categorical="t")
    except ValueError as e:  # most sampled labels are not numbers: the file is refused, by name
        assert str(path) in str(e) and "--label" in str(e), e
        return
    assert why.bad_rows.lines == len(data_lines) and why.bad_rows.bad_rows == report.total_skipped


@FUZZ
@given(lines=st.lists(_good_line, min_size=1, max_size=40), cut=st.floats(0, 1))
def test_cut_gzip_is_named_or_read_whole(tmp_path_factory, lines, cut):
    data = gzip.compress(HEADER + b"\n" + b"\n".join(lines) + b"\n")
    path = tmp_path_factory.mktemp("fuzz") / "f.csv.gz"
    path.write_bytes(data[:int(cut * len(data))])
    try:
        ds, report = ak.datasets.load(FORMAT, str(path), batch_size=5)
        got = _rows(ds)
    except ValueError as e:
        assert str(path) in str(e) and ("gzip" in str(e) or "empty" in str(e)), e
        return
    except tf.errors.OpError as e:  # raised by our accounting step inside the pipeline
        assert str(path) in str(e) and "gzip" in str(e), e
        return
    assert int(cut * len(data)) == len(data)  # only the whole file reads without an error
    assert len(got) + report.total_skipped == len(lines)


@FUZZ
@given(content=st.binary(max_size=300))
def test_own_file_kinds_on_random_bytes(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "r.csv"
    path.write_bytes(b"label,a,b\n" + content)
    try:
        fmt, why = infer_format(str(path))
    except ValueError as e:
        assert str(path) in str(e) or "--label" in str(e), e
        return
    ds, report = ak.datasets.load(fmt, str(path), batch_size=4)
    rows = sum(int(tf.size(label)) for _, label in ds)
    assert rows + report.total_skipped == why.bad_rows.lines
    assert why.bad_rows.bad_rows == report.total_skipped
