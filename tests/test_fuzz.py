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
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import aefs_keras as ak
from aefs_keras.datasets.infer import infer_format

CASES = int(os.environ.get("AEFS_FUZZ_CASES", "8"))
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
    for features, label in ds.as_numpy_iterator():
        c, n, tags = features["c"], features["n"], features["t"]
        for i in range(len(label)):
            out.append((float(label[i]), c[i], np.float32(n[i]), [v for v in tags[i].tolist() if v != b""]))
    return out


def _same(got, want):
    return (got[0] == want[0] and got[1] == want[1] and got[3] == want[3]
            and (got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2]))))


@FUZZ
@given(lines=st.lists(_line, max_size=30), end=st.sampled_from([b"\n", b""]))
# Found: a bad UTF-8 byte within the first 8 KB lost the whole file (the header was read as text).
@example(lines=[b"0," + b"x" * 5000 + b",1,a", b"\x80"], end=b"\n")
# Found: one non-numeric label among the sampled rows refused the file.
@example(lines=[b" 1, a\r,591,|\xff| c ", b"", b"1,a,2", b"yes,\r\x00,-344,b", b"1,a,2"], end=b"")
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
@example(lines=[b"0," + b"x" * 300 + b",1,a"] * 3, cut=0.2)  # found: a cut header said "Cannot read"
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


# -- saved files: the artifact and the .keras model ----------------------
SCHEMA = ak.Schema([ak.Categorical("c", vocabulary=["a", "b", "c"]), ak.Categorical("i", vocabulary_size=5),
                    ak.Numeric("n", boundaries=[0.0, 1.0]), ak.MultiCategorical("t", vocabulary=["x", "y"])])
X = {"c": np.array(["a", "zz", "b"]), "i": np.array([1, 7, -3]), "n": np.array([0.5, np.nan, 3.0], "float32"),
     "t": np.array([["x", ""], ["y", "x"], ["", ""]])}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    model = ak.default_compile(ak.build_model(SCHEMA, "deepfm", "aefs", k=2, d_main=4, hidden_units=[8]))
    model.fit(X, np.array([0, 1, 1]), epochs=1, verbose=0)
    model.save(tmp / "m.keras")
    csv_path = tmp / "d.csv"
    csv_path.write_text("label,c,n\n" + "".join(f"{i % 2},v{i % 7},{i / 3:.2f}\n" for i in range(60)))
    fmt, _ = infer_format(str(csv_path))
    pp = ak.datasets.fit_preprocessing(fmt, [str(csv_path)], progress=False)
    pp.save(str(tmp / "a.json"))
    export = ak.export(model, str(tmp / "serving"), "m")
    return model, tmp, export


_mutation = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4)),
)


def _mutate(data, mutation):
    kind, arg = mutation
    if kind == "cut":
        return data[:int(arg * len(data))]
    data = bytearray(data)
    for where, xor in arg:
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= xor
    return bytes(data)


@FUZZ
@given(mutation=_mutation)
@example(mutation=("flip", [(0.999, 98)]))  # found: a member name's control character split the line
def test_a_damaged_keras_file_is_named_or_loads_the_same_model(files, mutation):
    model, tmp, _ = files
    data = (tmp / "m.keras").read_bytes()
    bad = tmp / "bad.keras"
    bad.write_bytes(_mutate(data, mutation))
    try:
        loaded = ak.load_model(str(bad))
    except (ValueError, FileNotFoundError) as e:
        assert str(bad) in str(e) and len(str(e).splitlines()) == 1, e
        return
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


@FUZZ
@given(mutation=_mutation)
@example(mutation=("flip", [(0.875, 1), (0.9140625, 1)]))  # found: a flip in the digest's key unchecked it
def test_a_damaged_artifact_is_named_or_reads_the_same(files, mutation):
    _, tmp, _ = files
    good = ak.datasets.Preprocessing.load(str(tmp / "a.json"))
    bad = tmp / "bad.json"
    bad.write_bytes(_mutate((tmp / "a.json").read_bytes(), mutation))
    try:
        got = ak.datasets.Preprocessing.load(str(bad))
    except ValueError as e:
        assert str(bad) in str(e), e
        return
    assert got.to_json() == good.to_json()


# -- the exported signatures, loaded with TensorFlow alone ---------------
_strings = st.one_of(st.text(max_size=8), st.just(""), st.just("é" * 10), st.just("x" * (1 << 20)))
_ids = st.one_of(st.integers(-5, 10), st.sampled_from([-(2**63), 2**63 - 1, 2**40]))
_floats = st.one_of(st.floats(width=32), st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38]))
_VALUES = {"c": _strings, "i": _ids, "n": _floats, "t": _strings}
_RIGHT = {"c": tf.string, "i": tf.int64, "n": tf.float32, "t": tf.string}


@st.composite
def _request(draw):
    rows = draw(st.sampled_from([0, 1, 3]))
    features, valid = {}, True
    for name, dtype in _RIGHT.items():
        mode = draw(st.sampled_from(["right"] * 6 + ["dtype", "rank", "missing"]))
        values = [draw(_VALUES[name]) for _ in range(rows * (2 if name == "t" else 1))]
        if mode == "missing":
            valid = False
            continue
        shape = [rows, 2] if name == "t" else [rows]
        if mode == "rank":
            valid = False
            shape = [rows * (2 if name == "t" else 1)] if name == "t" else [rows, 1]
        if mode == "dtype":
            other = draw(st.sampled_from([tf.int32, tf.float64, tf.string, tf.int64, tf.float32]))
            valid = valid and other == dtype
            dtype = other
        tensor = tf.constant(np.zeros(shape, dtype.as_numpy_dtype) if dtype != tf.string else
                             np.full(shape, b"a", dtype=object), dtype=dtype)
        if dtype == _RIGHT[name] and values:
            tensor = tf.reshape(tf.constant(values, dtype=dtype), shape)
        features[name] = tensor
    if draw(st.booleans()) and draw(st.booleans()):
        features["extra"] = tf.constant([1.0] * rows)
        valid = False
    return features, valid and rows >= 0


@FUZZ
@given(request=_request())
def test_served_signature_answers_or_refuses(files, request):
    model, _, export = files
    fn = _signature(export)
    features, valid = request
    try:
        out = fn(**features)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
        assert not valid, (features, e)
        return
    assert valid, features
    p = out["probability"].numpy()
    rows = int(features["c"].shape[0])
    assert p.shape == (rows, 1) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    if rows:  # the served answer is the Keras model's
        np.testing.assert_allclose(p, model.predict({k: v.numpy() for k, v in features.items()}, verbose=0),
                                   atol=1e-5)


_SIGNATURES = {}


def _signature(export, key="serving_default"):
    if (export, key) not in _SIGNATURES:
        _SIGNATURES[(export, key)] = tf.saved_model.load(export).signatures[key]
    return _SIGNATURES[(export, key)]


@FUZZ
@given(records=st.lists(st.one_of(st.binary(max_size=40), st.just(b"")), max_size=4),
       n=st.lists(_floats, max_size=4))
@example(records=[b"", b"\n\x83\xebQN"], n=[0.0])  # found: TensorFlow's undecodable error message
def test_regress_signature_answers_or_refuses(files, records, n):
    _, _, export = files
    fn = _signature(export, "regress")
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "n": tf.train.Feature(float_list=tf.train.FloatList(value=[v]))})).SerializeToString() for v in n]
    batch = records + examples
    try:
        out = fn(inputs=tf.constant(batch, tf.string))["outputs"].numpy()
    except (tf.errors.InvalidArgumentError, UnicodeDecodeError) as e:
        # Only bytes that are no tf.Example are refused. (TensorFlow's Python
        # runtime fails to decode its own error message when it quotes bytes
        # that are not UTF-8, and raises UnicodeDecodeError: docs/reliability.md.)
        assert records and any(r for r in records), e
        return
    assert out.shape == (len(batch),) and np.all(np.isfinite(out))


# -- the REST client's request path (examples/serving/client.py) --------
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "serving"))
import client  # noqa: E402

def _nested(inner):
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3))


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=5),
                     _nested, max_leaves=8)
_cell = {"c": st.one_of(st.text(max_size=4), _json), "i": st.one_of(st.integers(-3, 9), _json),
         "n": st.one_of(st.floats(allow_nan=False, width=32), st.integers(-3, 3), _json),
         "t": st.one_of(st.lists(st.text(max_size=3), min_size=2, max_size=2), _json)}


@st.composite
def _body(draw):
    names = draw(st.lists(st.sampled_from(["c", "i", "n", "t", "zz"]), unique=True, min_size=3, max_size=5))
    rows = draw(st.integers(0, 3))
    if draw(st.booleans()):
        return {"instances": [{n: draw(_cell.get(n, _json)) for n in names} for _ in range(rows)]}
    if draw(st.booleans()):
        return {"inputs": {n: [draw(_cell.get(n, _json)) for _ in range(rows)] for n in names}}
    return draw(_json)


@FUZZ
@given(body=_body())
@example(body=None)  # found: TypeError, not a named error
@example(body={"inputs": {"c": [], "i": [], "n": [], "t": []}})  # found: the list input lost its rank
@example(body={"instances": [{"c": "a", "i": 2**70, "n": 1.0, "t": ["x", "y"]}]})  # found: OverflowError
@example(body={"instances": [{"c": "a", "i": 1, "n": 1.0, "t": "x"}]})  # found: one value for a list input
def test_rest_client_takes_or_names_the_problem(files, body):
    _, _, export = files
    fn = _signature(export)
    specs = fn.structured_input_signature[1]
    dtypes = {name: spec.dtype.name for name, spec in specs.items()}
    try:
        tensors = client.request_to_tensors(body, dtypes, {n: spec.shape.rank for n, spec in specs.items()})
    except ValueError as e:
        assert str(e), body
        return
    # What the client lets through, the model answers.
    out = fn(**{k: client.to_tensor(v, dtypes[k]) for k, v in tensors.items()})
    assert np.all(np.isfinite(out["probability"].numpy()))


# -- Parquet and TFRecord inputs ----------------------------------------
@st.composite
def _parquet_table(draw):
    pa = pytest.importorskip("pyarrow")
    rows = draw(st.integers(0, 6))
    col = lambda strategy: [draw(strategy) for _ in range(rows)]  # noqa: E731
    label_type = draw(st.sampled_from(["int", "float", "str", "null"]))
    label = {"int": (col(st.integers(0, 2)), pa.int64()), "float": (col(st.floats(0, 1)), pa.float64()),
             "str": (col(st.sampled_from(["0", "1", "x"])), pa.string()),
             "null": (col(st.one_of(st.none(), st.integers(0, 1))), pa.int64())}[label_type]
    kinds = {
        "str": lambda: (col(st.one_of(st.none(), st.text(max_size=4))), pa.string()),
        "int": lambda: (col(st.one_of(st.none(), st.integers(-5, 5))), pa.int64()),
        "float": lambda: (col(st.one_of(st.none(), st.floats(width=32))), pa.float32()),
        "bool": lambda: (col(st.booleans()), pa.bool_()),
        "nulls": lambda: ([None] * rows, pa.string()),
        "list": lambda: (col(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=3))),
                         pa.list_(pa.string())),
        "int_list": lambda: (col(st.lists(st.integers(0, 9), max_size=3)), pa.list_(pa.int64())),
        "nested": lambda: (col(st.lists(st.lists(st.text(max_size=2), max_size=2), max_size=2)),
                           pa.list_(pa.list_(pa.string()))),
        "struct": lambda: (col(st.fixed_dictionaries({"a": st.integers(0, 3)})), pa.struct([("a", pa.int64())])),
    }
    columns = {"label": label}
    for name in ("c", "n", "l"):
        columns[name] = kinds[draw(st.sampled_from(sorted(kinds)))]()
    return pa.table({n: pa.array(v, t) for n, (v, t) in columns.items()})


def _found_parquet_tables():
    import pyarrow as pa

    nested = pa.table({"label": pa.array([1, 0, None], pa.int64()), "c": pa.array([None] * 3, pa.string()),
                       "n": pa.array(["1.5", "x", None]),
                       "l": pa.array([[["a"]], [], None], pa.list_(pa.list_(pa.string())))})
    return [nested, nested.slice(0, 2)]  # found: Arrow's cast errors from inside the pipeline


@FUZZ
@given(table=_parquet_table())
@example(table=_found_parquet_tables()[0])
@example(table=_found_parquet_tables()[1])
def test_parquet_reads_every_row_or_names_the_column(tmp_path_factory, table):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path_factory.mktemp("fuzz") / "f.parquet"
    pq.write_table(table, path)
    try:
        fmt, _ = infer_format(str(path))
        ds, _ = ak.datasets.load(fmt, str(path), batch_size=4)
        rows = sum(int(tf.size(label)) for _, label in ds)
    except ValueError as e:
        assert str(path) in str(e) or "--label" in str(e), e
        return
    except tf.errors.OpError as e:  # our ValueError raised inside the pipeline, named
        assert str(path) in str(e), e
        return
    assert rows == table.num_rows


@FUZZ
@given(records=st.lists(st.one_of(
    st.binary(max_size=30),
    st.fixed_dictionaries({"c": st.sampled_from(["bytes", "int", "float", "missing"]),
                           "n": st.sampled_from(["bytes", "int", "float", "missing"]),
                           "label": st.sampled_from(["float", "missing", "int"])})), max_size=5),
    raw=st.booleans())
@example(records=[b"\xd9\x81\xf3"], raw=True)  # found: read as 0 rows, silently
@example(records=[b"`\xd2\xb0\xf9$6[\x8c"], raw=False)  # found: TensorFlow's undecodable parse error
@example(records=[b"\x80\x00"], raw=False)  # the same, in TensorFlow's other wording
def test_tfrecord_reads_or_names_the_problem(tmp_path_factory, records, raw):
    path = str(tmp_path_factory.mktemp("fuzz") / "f.tfrecord")
    schema = ak.Schema([ak.Categorical("c", vocabulary=["a", "b"]), ak.Numeric("n", boundaries=[0.0])])
    value = {"bytes": lambda: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"])),
             "int": lambda: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
             "float": lambda: tf.train.Feature(float_list=tf.train.FloatList(value=[0.5]))}
    if raw:  # not TFRecord framing at all
        open(path, "wb").write(b"".join(r for r in records if isinstance(r, bytes)) or b"\x00" * 13)
    else:
        with tf.io.TFRecordWriter(path) as w:
            for r in records:
                if isinstance(r, bytes):
                    w.write(r)  # framed, but no tf.Example inside
                else:
                    w.write(tf.train.Example(features=tf.train.Features(feature={
                        k: value[v]() for k, v in r.items() if v != "missing"})).SerializeToString())
    try:
        ds, _ = ak.datasets.load("tfrecord", path, schema=schema)
        rows = sum(int(tf.size(label)) for _, label in ds)
    except UnicodeDecodeError as e:  # TensorFlow's own message about a record that is no tf.Example,
        assert re.search(rb"ParseExample|Could not parse example", e.object)  # which its Python runtime
        return  # cannot decode (docs/reliability.md)
    except ValueError as e:
        assert path in str(e), e
        return
    except tf.errors.InvalidArgumentError as e:  # TensorFlow's parser names the feature, not the file
        assert re.search(r"Key: (c|n|label)|Could not parse example|Name: <unknown>", str(e)), e
        return
    assert not raw  # bytes without TFRecord framing are never read as rows
    assert rows == len(records)
