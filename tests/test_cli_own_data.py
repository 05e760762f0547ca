"""A user's own CSV through the documented commands: errors, training, export."""

import json
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


def test_own_csv_with_mixed_resolution(clicks, tmp_path, capsys):
    # --selection mixed: a model without selection ranks the fields first; the
    # round(0.5 x 4) = 2 most important are kept on every row (3 at the
    # default share 0.75), and the saved model keeps them.
    code = cli.main(["train", "--train", str(clicks), "--selection", "mixed", "--k", "4", "--keep-share", "0.5",
                     "--epochs", "1",
                     "--importance-epochs", "2", "--batch-size", "512", "--hidden-units", "16", "--d-main", "8",
                     "--out", str(tmp_path / "models"), "--name", "mixed"])
    assert code == 0
    out = capsys.readouterr().out
    ranking = re.search(r"Validation AUC lost by shuffling each field: (.*)\n", out).group(1)
    drops = {name: float(v) for name, v in (part.split(" ") for part in ranking.split(", "))}
    assert set(drops) == {"user_id", "city", "price", "ad", "noise"}
    kept = re.search(r"Kept on every row: (.*)\n", out).group(1).split(", ")
    assert len(kept) == 2 and set(kept) <= {"user_id", "price", "city"}  # the planted fields, not ad or noise
    assert min(drops[k] for k in kept) >= max(v for n, v in drops.items() if n not in kept)
    model = keras.models.load_model(tmp_path / "models" / "mixed.keras")
    names = ["user_id", "city", "price", "ad", "noise"]
    assert tuple(names[i] for i in model.get_layer("selector").fixed_fields) == tuple(sorted(kept, key=names.index))
    # DeepFM's first-order part reads every field's weight (mixed resolution).
    assert type(model.get_layer("linear_embedding")).__name__ == "FieldEmbedding"
    shares = re.search(r"Share of test rows that kept each field \(k = 4 of 5\):\n  (.*)\n", out).group(1)
    assert all(f"{name} 1.00" in shares for name in kept)
    err = _error(capsys, ["train", "--train", str(clicks), "--selection", "mixed", "--importance-epochs", "0"])
    assert "--importance-epochs must be at least 1" in err
    err = _error(capsys, ["train", "--train", str(clicks), "--selection", "mixed", "--keep-share", "1.0"])
    assert "--keep-share must be in [0, 1). Received: --keep-share 1.0" in err
    err = _error(capsys, ["train", "--train", str(clicks), "--selection", "adafs", "--keep-share", "0.9"])
    assert "`keep_share` does not apply to selection='adafs'" in err


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


def _backup_meta(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_synth_preprocess_train_killed_resumed_and_export(tmp_path, capsys):
    """The 10^7-row job's command chain at 2*10^4 rows: synth, preprocess,
    `train` SIGKILLed after its first step-level backup and run again with
    the same command (it resumes, reusing the artifact), then `export`."""
    path = tmp_path / "synth.tsv.gz"
    assert cli.main(["synth", str(path), "--rows", "20000", "--max-values", "20000"]) == 0
    rate = float(re.search(r"click rate (0\.\d+)", capsys.readouterr().out).group(1))
    assert 0.15 < rate < 0.35
    from aefs_keras.datasets.readers import estimate_rows

    assert abs(estimate_rows([str(path)]) - 20_000) < 1_000  # preprocessing's ETA rests on this estimate
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
        # Killed once a whole backup is on disk (a kill while Keras writes
        # one is test_distributed's cut-off case).
        while first.poll() is None and _backup_meta(meta) is None and time.time() < deadline:
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
