"""A user's own files with lists, values, Parquet and a time column,
through the documented commands (apart from test_cli_own_data.py so that
the two run side by side)."""

import re

import keras
import numpy as np
import pytest

from aefs_keras import cli
from test_cli_own_data import _error


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """6,000 rows: a list of tags per row ("t3|t17|..."; some empty) that
    carries the label (the share of tags below t10), a price fed as a value
    that carries some too, and a noise id."""
    rng = np.random.default_rng(1)
    n = 6_000
    rows, labels = [], []
    for i in range(n):
        tags = rng.choice(40, size=rng.integers(0, 6), replace=False)
        price = rng.gamma(2, 5)
        logit = 5.0 * (np.mean(tags < 10) if len(tags) else 0.0) + 0.1 * (price - 10) - 1.0
        labels.append(int(rng.random() < 1 / (1 + np.exp(-logit))))
        rows.append(f"{labels[-1]},u{rng.integers(0, 50)},{'|'.join(f't{t}' for t in tags)},{price:.3f}")
    path = tmp_path_factory.mktemp("tagged") / "tagged.csv"
    path.write_text("label,user,tags,price\n" + "\n".join(rows) + "\n")
    return path


def test_own_csv_with_lists_and_values(tagged, tmp_path, capsys):
    """--multi-categorical and --dense-numeric: vocabularies over list elements
    (both engines alike), training with AEFS, export with lists served."""
    import aefs_keras as ak
    import tensorflow as tf

    # Lists are never inferred, but pointed out.
    assert cli.main(["preprocess", str(tagged), "--out", str(tmp_path / "plain.json")]) == 0
    fmt, why = ak.datasets.infer_format(str(tagged))
    assert dict(fmt.features)["tags"] == "categorical" and "hint" in why["tags"] and "--multi-categorical tags" in why["tags"]
    err = _error(capsys, ["train", "--train", str(tagged), "--multi-categorical", "tags", "--dense-numeric", "tags"])
    assert "--multi-categorical and --dense-numeric both name column(s) ['tags']" in err

    flags = ["--multi-categorical", "tags", "--dense-numeric", "price"]
    schemas = []
    for engine in ("tf", "arrow"):
        artifact = tmp_path / f"{engine}.json"
        assert cli.main(["preprocess", str(tagged), "--out", str(artifact), "--engine", engine, *flags]) == 0
        schemas.append(ak.datasets.Preprocessing.load(str(artifact)).schema)
    assert schemas[0].get_config() == schemas[1].get_config()
    tags, price = schemas[0].field("tags"), schemas[0].field("price")
    assert isinstance(tags, ak.MultiCategorical) and set(tags.vocabulary) == {f"t{t}" for t in range(40)}
    assert isinstance(price, ak.DenseNumeric) and price.normalization == "standard"
    assert price.mean == pytest.approx(10, abs=0.5) and price.std == pytest.approx(7.07, abs=0.5)

    code = cli.main(["train", "--train", str(tagged), *flags, "--selection", "aefs", "--k", "2",
                     "--epochs", "3", "--batch-size", "128", "--hidden-units", "16", "--d-main", "8",
                     "--out", str(tmp_path / "models"), "--export", str(tmp_path / "serving"), "--name", "tagged"])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"tags\s+multi_categorical\s+\(--multi-categorical, split at '\|'\)", out)
    assert re.search(r"price\s+dense_numeric\s+\(--dense-numeric\)", out)
    assert re.search(r"evaluate: [\d,]+ test rows in [\d.]+ s", out)
    assert re.search(r"Exported to .*tagged.1 in [\d.]+ s \([\d.,]+ MB\)", out)
    auc = float(re.search(r"test AUC (0\.\d+)", out).group(1))
    assert auc > 0.68, out  # price alone gives 0.63, the planted logit 0.80
    shares = re.search(r"Share of test rows that kept each field \(k = 2 of 3\):\n  (.*)\n", out).group(1)
    named = {k: float(v) for k, v in (s.rsplit(" ", 1) for s in shares.split(", "))}
    assert named["tags"] > 0.5, named
    # The export takes lists as TF Serving sends them: (rows, length) strings, "" padding; an empty list.
    model = keras.models.load_model(tmp_path / "models" / "tagged.keras")
    serve = tf.saved_model.load(str(tmp_path / "serving" / "tagged" / "1")).signatures["serving_default"]
    x = {"user": tf.constant(["u1", "u7", "never-seen"]),
         "tags": tf.constant([["t1", "t3", "t30"], ["", "", ""], ["t2", "unseen-tag", ""]]),
         "price": tf.constant([3.0, float("nan"), 12.5])}
    np.testing.assert_allclose(serve(**x)["probability"].numpy(), model.predict(x, verbose=0), atol=1e-6)


def test_own_parquet_file_with_a_list_column(tagged, tmp_path, capsys):
    """The same rows as a Parquet file: kinds from the column types (the
    tags a list<string> column, found without a flag), a seeded split of
    the one file, training with AEFS and an export."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    import aefs_keras as ak

    lines = tagged.read_text().splitlines()[1:]
    cells = [line.split(",") for line in lines]
    path = tmp_path / "tagged.parquet"
    pq.write_table(pa.table({
        "label": pa.array([int(c[0]) for c in cells], pa.int8()),
        "user": [c[1] for c in cells],
        "tags": pa.array([c[2].split("|") if c[2] else [] for c in cells], pa.list_(pa.string())),
        "price": pa.array([float(c[3]) for c in cells], pa.float32()),
    }), path)
    artifact = tmp_path / "artifact.json"
    code = cli.main(["train", "--train", str(path), "--dense-numeric", "price", "--selection", "aefs", "--k", "2",
                     "--epochs", "3", "--batch-size", "128", "--hidden-units", "16", "--d-main", "8",
                     "--artifact", str(artifact), "--out", str(tmp_path / "models"),
                     "--export", str(tmp_path / "serving"), "--name", "tagged"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"tags\s+multi_categorical\s+\(a Parquet list column \(list<.*string>\)\)", out), out
    assert re.search(r"user\s+categorical\s+\(a string column\)", out)
    pp = ak.datasets.Preprocessing.load(str(artifact))
    assert isinstance(pp.schema.field("tags"), ak.MultiCategorical) and 4500 < pp.rows < 5100  # ~80 % of 6,000
    test_rows = int(re.search(r"\(([\d,]+) rows; exact\)", out).group(1).replace(",", ""))
    assert 500 < test_rows < 700  # ~10 %
    auc = float(re.search(r"test AUC (0\.\d+)", out).group(1))
    assert auc > 0.68, out  # as from the CSV
    assert (tmp_path / "serving" / "tagged" / "1" / "saved_model.pb").exists()
    # The split is a fixed function of (seed, file, row): the parts never share a row.
    from aefs_keras.datasets.records import parquet_split_mask

    parts = [parquet_split_mask(0, 0, 6000, s, "random", 0, 6000) for s in ((0, 0.8), (0.8, 0.9), (0.9, 1.0))]
    assert (sum(p.astype(int) for p in parts) == 1).all()


def test_split_by_a_time_column(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 3000
    ts = rng.permutation(n) + 1_700_000_000  # epoch seconds, rows not in time order
    user = rng.integers(0, 20, n)
    y = (rng.random(n) < np.where(user < 10, 0.7, 0.2)).astype(int)
    path = tmp_path / "events.csv"
    path.write_text("label,ts,user_id\n" + "\n".join(f"{y[i]},{ts[i]},{user[i]}" for i in range(n)) + "\n")
    err = _error(capsys, ["train", "--train", str(path), "--split-mode", "time"])
    assert err.endswith("--split-mode time needs --time-column COLUMN")
    err = _error(capsys, ["train", "--train", str(path), "--split-mode", "time", "--time-column", "when"])
    assert "--time-column: column 'when' is not in the files' columns (label, ts, user_id)" in err
    assert cli.main(["train", "--train", str(path), "--split-mode", "time", "--time-column", "ts", "--ignore", "ts",
                     "--epochs", "1", "--batch-size", "256", "--hidden-units", "8", "--d-main", "4",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert int(re.search(r"\(([\d,]+) rows; exact\)", out).group(1)) == 300  # the latest 10 % by ts
    assert float(re.search(r"test AUC (0\.\d+)", out).group(1)) > 0.7
