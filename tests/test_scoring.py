"""`aefs-keras predict MODEL FILE --out OUT` (aefs_keras.scoring)."""

import csv

import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras import cli

SCHEMA = ak.Schema([ak.Categorical("user", vocabulary=[f"u{i}" for i in range(10)]),
                    ak.Numeric("price", boundaries=[1.0, 5.0]),
                    ak.MultiCategorical("tags", vocabulary=["a", "b", "c"]),
                    ak.Categorical("city", vocabulary=["x", "y"])])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("score")
    model = ak.default_compile(ak.build_model(SCHEMA, "deepfm", "aefs", k=2, d_main=4, hidden_units=[8]))
    rng = np.random.default_rng(0)
    x = {"user": np.array([f"u{i}" for i in rng.integers(0, 12, 256)]), "price": rng.gamma(2, 2, 256),
         "tags": [list(rng.choice(["a", "b", "c", "d"], rng.integers(0, 3))) for _ in range(256)],
         "city": rng.choice(["x", "y"], 256)}
    model.fit(x, rng.integers(0, 2, 256), epochs=1, batch_size=64, verbose=0)
    path = tmp / "m.keras"
    model.save(path)
    return model, path, tmp


def _file(tmp):
    lines = ["label,user,price,tags,city,extra"]
    good = [("u1", "2.5", "a|b", "x"), ("u11", "", "", "y"), ("u3", "7", "c", "z"), (" u2 ", "0.5", "a| c", "x")]
    for i, (u, p, t, c) in enumerate(good * 5):
        lines.append(f"{i % 2},{u},{p},{t},{c},whatever")
    lines.insert(3, "1,u1,cheap,a,x,w")  # line 4: a non-number in a numeric column
    lines.insert(7, "0,u1,2.0")  # line 8: too few columns
    path = tmp / "held.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, good * 5


def test_predict_scores_every_good_row_and_reports_the_rest(saved, capsys):
    model, keras_path, tmp = saved
    path, good = _file(tmp)
    out = tmp / "scores.csv"
    assert cli.main(["predict", str(keras_path), str(path), "--out", str(out), "--batch-size", "7"]) == 0
    printed = capsys.readouterr().out
    assert "22 data lines, 20 scored, 2 skipped" in printed
    assert "non-number in numeric column 'price': 1 (first at line 4)" in printed
    assert "wrong number of columns: 1 (first at line 8)" in printed
    rows = list(csv.DictReader(open(out)))
    assert len(rows) + 2 == 22  # rows written + rows reported = data lines
    assert [int(r["line"]) for r in rows] == [n for n in range(2, 24) if n not in (4, 8)]
    x = {"user": np.array([u.strip() for u, *_ in good]),
         "price": np.array([float(p) if p else np.nan for _, p, _, _ in good], "float32"),
         "tags": [[v.strip() for v in t.split("|") if v.strip()] for _, _, t, _ in good],
         "city": np.array([c for *_, c in good])}
    want = model.predict(x, verbose=0).ravel()
    np.testing.assert_allclose([float(r["probability"]) for r in rows], want, rtol=1e-5)
    for r in rows:
        kept = r["kept_fields"].split("|")
        assert len(kept) == 2 and set(kept) <= set(SCHEMA.names)


def test_predict_writes_parquet_and_stops_under_strict(saved, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    _, keras_path, tmp = saved
    path, _ = _file(tmp)
    out = tmp / "scores.parquet"
    assert cli.main(["predict", str(keras_path), str(path), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 20 and table.column_names == ["line", "probability", "kept_fields"]
    capsys.readouterr()
    assert cli.main(["predict", str(keras_path), str(path), "--out", str(tmp / "s.csv"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "held.csv:4: non-number in numeric column 'price'" in err
    assert not (tmp / "s.csv").exists()  # nothing half-written
    missing = tmp / "missing.csv"
    missing.write_text("label,user,price\n1,u1,2\n")
    assert cli.main(["predict", str(keras_path), str(missing), "--out", str(tmp / "m.csv")]) == 2
    assert "lacks the model's feature column(s) ['tags', 'city']" in capsys.readouterr().err
