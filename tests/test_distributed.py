"""Multi-worker training on 127.0.0.1 against one process, and SIGKILL resumption.

Both tests run examples/distributed/train.py in subprocesses and kill
whatever they started, whatever happens.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import aefs_keras as ak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "distributed", "train.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def _processes():
    procs = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _start(procs, args, log, env=ENV):
    out = open(log, "w")
    procs.append(subprocess.Popen([sys.executable, SCRIPT, *args], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True))
    return procs[-1]


def _wait(procs, timeout):
    deadline = time.time() + timeout
    for p in procs:
        p.wait(timeout=max(1, deadline - time.time()))


def test_strategy_arguments():
    with pytest.raises(ValueError, match="strategy='ring'"):
        ak.distributed.get_strategy("ring")
    if not os.environ.get("TF_CONFIG"):
        with pytest.raises(ValueError, match="TF_CONFIG"):
            ak.distributed.get_strategy("multi_worker")


def test_two_workers_match_one_process(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    with _processes() as procs:  # all three side by side: each run is deterministic on its own
        _start(procs, ["--out", str(tmp_path / "single"), "--rows", "10000"], tmp_path / "single.log")
        for i in range(2):
            env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            _start(procs, ["--strategy", "multi_worker", "--out", str(tmp_path / f"w{i}"), "--rows", "10000"],
                   tmp_path / f"w{i}.log", env)
        _wait(procs, 300)
    for p, log in zip(procs, ["single", "w0", "w1"]):
        assert p.returncode == 0, (tmp_path / f"{log}.log").read_text()[-3000:]
    single = json.loads((tmp_path / "single" / "result.json").read_text())
    multi = json.loads((tmp_path / "w0" / "result.json").read_text())
    assert (single["replicas"], multi["replicas"]) == (1, 2)
    # Same global batches, gradients summed over workers, synchronized batch
    # norm: the two runs differ only by float summation order (median
    # difference measured 2e-6 to 2e-5). Hard top-k is discontinuous: a
    # near-tie can flip for a few rows, so up to 2 % of rows may differ more.
    a = np.load(tmp_path / "single" / "predictions.npy")
    b = np.load(tmp_path / "w0" / "predictions.npy")
    close = np.abs(a - b) <= 1e-3
    assert close.mean() >= 0.98, f"{(~close).sum()} of {len(a)} predictions differ by more than 1e-3"
    assert np.median(np.abs(a - b)) < 1e-4
    assert abs(single["auc"] - multi["auc"]) < 2e-3


def _steps(path):
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_mid_epoch_resumes_from_the_backup(tmp_path):
    out, backup = tmp_path / "run", tmp_path / "backup"
    args = ["--out", str(out), "--backup-dir", str(backup), "--save-freq", "5", "--epochs", "3"]
    log = out / "steps.log"
    with _processes() as procs:
        first = _start(procs, [*args, "--step-delay", "0.05"], tmp_path / "first.log")
        deadline = time.time() + 240
        # Kill in the middle of epoch 1 (32 steps per epoch), after a backup in it.
        while time.time() < deadline and first.poll() is None:
            lines = [s for s in _steps(log) if s[0] != "begin"]
            if lines and int(lines[-1][0]) == 1 and int(lines[-1][1]) >= 12:
                break
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        # A kill while Keras writes a backup leaves the one before (check_backup).
        meta = ak.distributed.check_backup(str(backup))
        assert meta["epoch"] == 1 and meta["batch"] >= 4
        killed_at = len(_steps(log))
        second = _start(procs, args, tmp_path / "second.log")
        _wait([second], 300)
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]
    lines = _steps(log)
    begins = [i for i, s in enumerate(lines) if s[0] == "begin"]
    assert begins == [0, killed_at], "the second run logs one 'begin' where it started"
    # It resumed: restored weights (not the fresh initialisation) and epoch 1, not 0.
    assert lines[begins[1]][1] != lines[0][1]
    after = lines[begins[1] + 1:]
    assert after[0] == ["1", "0"] and after[-1] == ["2", "31"]
    assert {s[0] for s in after} == {"1", "2"}
    assert (out / "result.json").exists()
    assert not (backup / "latest.weights.h5").exists()  # deleted once training finished


def test_train_command_with_backup_and_export(tmp_path, capsys):
    from aefs_keras import cli

    code = cli.main(["train", "--rows", "3000", "--epochs", "2", "--batch-size", "512", "--backbone", "dnn",
                     "--selection", "aefs", "--d-main", "8", "--hidden-units", "16",
                     "--strategy", "default", "--backup-dir", str(tmp_path / "backup"), "--save-freq", "2",
                     "--export", str(tmp_path / "serving"), "--name", "ctr"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test AUC" in out and (tmp_path / "serving" / "ctr" / "1" / "saved_model.pb").exists()
    assert not (tmp_path / "backup" / "latest.weights.h5").exists()


def test_mirrored_strategy_on_two_logical_devices(tmp_path):
    # MirroredStrategy over two logical CPU devices in one process: the same
    # computation as one device when batch norm is synchronized.
    script = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np, aefs_keras as ak
data = ak.datasets.synthetic(num_rows=4000, num_categorical=6, num_numeric=2, vocabulary_size=100,
                             num_informative=3, num_interactions=1, seed=0)
x, y = data.train_arrays
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(256)
out = {}
for name, strategy in [("one", None), ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    def build():
        keras.utils.set_random_seed(0)
        return ak.default_compile(ak.build_model(data.schema, "deepfm", ak.AEFS(k=4, dropout=0.0),
                                                 hidden_units=[16], d_main=8))
    model, _ = ak.distributed.fit(build, ds, 1, strategy=strategy, verbose=0)
    out[name] = model.predict(data.test_arrays[0], verbose=0)[:, 0].tolist()
    out[name + "_replicas"] = model.distribute_strategy.num_replicas_in_sync
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mirrored_replicas"] == 2
    np.testing.assert_allclose(out["mirrored"], out["one"], atol=1e-4)


def test_a_backup_cut_off_while_written_falls_back_or_starts_over(tmp_path, capsys):
    """A kill while Keras writes the backup can leave an empty metadata
    file. The previous backup (kept beside it) is used; without one,
    training starts over. Either way a line says so and nothing crashes."""
    import keras
    import tensorflow as tf

    from aefs_keras.distributed import check_backup

    schema = ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=5) for i in range(3)])
    rng = np.random.default_rng(0)
    x = {f"c{i}": rng.integers(0, 5, 64) for i in range(3)}
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 2, 64).astype("float32"))).batch(8)

    def build():
        keras.utils.set_random_seed(0)
        return ak.default_compile(ak.build_model(schema, "dnn", hidden_units=[4], d_main=4))

    class Stop(keras.callbacks.Callback):  # the "kill": after the backups of steps 2 and 4
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:
                raise KeyboardInterrupt

    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        ak.distributed.fit(build, ds, epochs=2, backup_dir=str(backup), save_freq=2, callbacks=[Stop()],
                           verbose=0)
    meta = backup / "training_metadata.json"
    # Keras' "batch" is the 0-based index of the last batch before the save: 1 for step 2, 3 for step 4.
    assert json.loads(meta.read_text())["batch"] == 3
    assert json.loads((backup / "training_metadata.json.bkp").read_text())["batch"] == 1
    meta.write_text("")  # cut off
    assert check_backup(str(backup)) == {"epoch": 0, "batch": 1}  # the one before
    assert "resuming from the one before it" in capsys.readouterr().out
    model, history = ak.distributed.fit(build, ds, epochs=2, backup_dir=str(backup), save_freq=2, verbose=0)
    out = capsys.readouterr().out
    assert "Resuming from the backup" in out and "after step 2 of epoch 1" in out, out
    assert len(history.history["loss"]) == 2, (out, history.history)
    assert not backup.exists() or not os.listdir(backup)
    # No earlier backup: the unreadable files go and training starts over.
    backup.mkdir(exist_ok=True)
    meta.write_text("")
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF")
    assert check_backup(str(backup)) is None
    assert "training starts over" in capsys.readouterr().out and not os.listdir(backup)
