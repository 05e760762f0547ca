"""A user's own CSV through the documented commands: errors, training, export."""

import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from aefs_keras import cli


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """20,000 rows with a header: an id, two categoricals, two numbers (one
    with blanks); the label depends on user_id, price and city."""
    rng = np.random.default_rng(0)
    n = 20_000
    user, city, price = rng.integers(0, 300, n), rng.integers(0, 20, n), rng.gamma(2, 5, n)
    ad, noise = rng.integers(0, 500, n), rng.integers(0, 50, n)
    logit = rng.normal(size=300)[user] + 0.08 * (price - 10) + 0.8 * (city % 3 == 0) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    path = tmp_path_factory.mktemp("own") / "clicks.csv"
    with open(path, "w") as f:
        f.write("label,user_id,city,price,ad,noise\n")
        for i in range(n):
            f.write(f"{y[i]},{user[i]},c{city[i]},{price[i]:.2f},a{ad[i]},{'' if i % 7 == 0 else noise[i]}\n")
    return path


def _error(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_bad_input_is_one_clear_line(clicks, tmp_path, capsys):
    err = _error(capsys, ["train", "--train", str(clicks), "--label", "click"])
    assert "--label: column(s) ['click'] not in the header" in err and "label, user_id, city" in err
    err = _error(capsys, ["train", "--train", str(clicks), "--numeric", "price,colour"])
    assert "--numeric: column(s) ['colour']" in err
    err = _error(capsys, ["train", "--train", str(tmp_path / "nope.csv")])
    assert err.endswith("No such file: " + str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text(clicks.read_text().replace("\n1,", "\n1,17,x,", 1))  # one row with too many cells
    line = 1 + next(i for i, l in enumerate(bad.read_text().splitlines()) if l.count(",") != 5)
    err = _error(capsys, ["train", "--train", str(bad), "--strict", "--epochs", "1"])
    assert f"bad.csv:{line}: wrong number of columns" in err
    cut = tmp_path / "cut.csv"
    cut.write_text(clicks.read_text()[:-3])  # a last line without its newline
    err = _error(capsys, ["train", "--train", str(cut), "--strict"])
    assert "cut.csv: the last line has no newline" in err and "truncated" in err
    err = _error(capsys, ["train", "--train", str(clicks), "--selection", "adafs", "--warmup-steps", "5"])
    assert "`warmup_steps` does not apply to selection='adafs'" in err


def test_own_csv_trains_reports_by_name_saves_and_exports(clicks, tmp_path, capsys):
    code = cli.main(["train", "--train", str(clicks), "--selection", "aefs", "--k", "3", "--epochs", "3",
                     "--batch-size", "512", "--hidden-units", "16", "--d-main", "8",
                     "--out", str(tmp_path / "models"), "--export", str(tmp_path / "serving"), "--name", "clicks"])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"user_id\s+categorical\s+\(digits, but the name ends in 'id'\)", out)
    assert re.search(r"price\s+numeric", out) and re.search(r"city\s+categorical", out)
    auc = float(re.search(r"test AUC (0\.\d+)  log-loss 0\.\d+  \(([\d,]+) rows; exact\)", out).group(1))
    assert auc > 0.6  # the planted signal is learnt
    shares = re.search(r"Share of test rows that kept each field \(k = 3 of 5\):\n  (.*)\n", out).group(1)
    named = dict(s.rsplit(" ", 1) for s in shares.split(", "))
    assert set(named) == {"user_id", "city", "price", "ad", "noise"}
    assert sum(float(v) for v in named.values()) == pytest.approx(3, abs=0.03)
    model = keras.models.load_model(tmp_path / "models" / "clicks.keras")
    assert model.get_layer("selector").k == 3
    assert (tmp_path / "serving" / "clicks" / "1" / "saved_model.pb").exists()


def test_preprocess_own_csv(clicks, tmp_path, capsys):
    import aefs_keras as ak

    artifact = tmp_path / "artifact.json"
    assert cli.main(["preprocess", str(clicks), "--out", str(artifact), "--categorical", "noise"]) == 0
    pp = ak.datasets.Preprocessing.load(str(artifact))
    assert pp.rows == 20_000 and pp.schema.names == ["user_id", "city", "price", "ad", "noise"]
    assert pp.schema.field("noise").vocabulary[0] == ""  # blank cells keep their own id
    # Bounded vocabularies: the 40 most frequent users, the long tail hashed into 8 ids.
    bounded = tmp_path / "bounded.json"
    assert cli.main(["preprocess", str(clicks), "--out", str(bounded), "--max-vocab", "40",
                     "--oov-buckets", "8"]) == 0
    user = ak.datasets.Preprocessing.load(str(bounded)).schema.field("user_id")
    assert len(user.vocabulary) == 40 and user.oov_buckets == 8 and user.size == 48
    # The served graph stays core TensorFlow with hashed OOV ids.
    from tensorflow.python.framework import op_def_registry

    schema = ak.datasets.Preprocessing.load(str(bounded)).schema
    model = ak.build_model(schema, "dnn", hidden_units=[4], d_main=4)
    path = ak.export(model, str(tmp_path / "serving"), "bounded")
    ops = ak.saved_model_ops(path)
    assert "StringToHashBucketFast" in ops and not [op for op in ops if op_def_registry.get(op) is None]


def test_synth_preprocess_train_killed_resumed_and_export(tmp_path, capsys):
    """The 10^7-row job's command chain at 2*10^4 rows: synth, preprocess,
    `train` SIGKILLed after its first step-level backup and run again with
    the same command (it resumes, reusing the artifact), then `export`."""
    path = tmp_path / "synth.tsv.gz"
    assert cli.main(["synth", str(path), "--rows", "20000", "--max-values", "20000"]) == 0
    rate = float(re.search(r"click rate (0\.\d+)", capsys.readouterr().out).group(1))
    assert 0.15 < rate < 0.35
    artifact = tmp_path / "synth.json"
    assert cli.main(["preprocess", "criteo", str(path), "--out", str(artifact)]) == 0
    assert "(0 bad rows skipped)" in capsys.readouterr().out  # every row is valid Criteo
    backup = tmp_path / "backup"
    command = [sys.executable, "-m", "aefs_keras.cli", "train", "--format", "criteo", "--train", str(path),
               "--artifact", str(artifact), "--selection", "aefs", "--epochs", "2", "--patience", "5",
               "--batch-size", "256", "--hidden-units", "16", "--d-main", "8", "--backup-dir", str(backup),
               "--save-freq", "10", "--out", str(tmp_path / "models"), "--name", "synth"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        meta = backup / "training_metadata.json"
        deadline = time.time() + 300
        while first.poll() is None and not meta.exists() and time.time() < deadline:
            time.sleep(0.01)
        killed = first.poll() is None
        if killed:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert killed, "training ended before its first backup: " + (tmp_path / "first.log").read_text()[-2000:]
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout
    assert f"Using the preprocessing artifact {artifact}" in out
    assert re.search(r"Resuming from the backup in .*backup: the weights after step \d+ of epoch 1", out), out
    auc = float(re.search(r"test AUC (0\.\d+)", out).group(1))
    assert auc > 0.6, out  # the planted label model is learnt
    assert not (backup / "latest.weights.h5").exists()  # deleted once training finished
    assert cli.main(["export", str(tmp_path / "models" / "synth.keras"), str(tmp_path / "serving"), "synth"]) == 0
    assert (tmp_path / "serving" / "synth" / "1" / "saved_model.pb").exists()


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
                     "--epochs", "6", "--batch-size", "128", "--hidden-units", "16", "--d-main", "8",
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


def test_progress_lines_in_a_log_have_rate_and_eta(monkeypatch, capsys):
    """In a log file (not a terminal): a plain line every 10 s with the
    rate and, against an estimated total, the share done and the time left."""
    from aefs_keras import progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(progress.sys.stdout, "isatty", lambda: False, raising=False)
    calls = []
    line = progress.RateLine("preprocess", lambda: calls.append(1) or 1_000_000)
    clock[0] = 105.0
    line.update(50_000)  # 5 s: no line yet
    clock[0] = 120.0
    line.update(200_000)  # 20 s: 10,000 rows/s, 800,000 left
    clock[0] = 125.0
    line.update(250_000)  # 5 s since the last line: none
    line.done("250,000 rows")
    out = capsys.readouterr().out
    assert out == ("preprocess: 200,000 rows, 10,000 rows/s, about 20 % of about 1,000,000; about 80 s left\n"
                   "preprocess: 250,000 rows\n")
    assert calls == [1]  # the estimate is made once, at the first line
    assert progress.duration(59) == "59 s" and progress.duration(600) == "10 min" and progress.duration(9000) == "2.5 h"


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
                     "--epochs", "6", "--batch-size", "128", "--hidden-units", "16", "--d-main", "8",
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
