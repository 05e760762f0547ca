"""Faults at every write: a full disk (RLIMIT_FSIZE) and SIGKILL during the
preprocessing artifact write, the `.keras` save, the export and a training
backup. Afterwards the previous good file is intact (or there is none), no
half-written file is read, and the next run says what it found."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = textwrap.dedent('''
    import json, os, resource, sys, time
    import numpy as np
    import aefs_keras as ak
    from aefs_keras.datasets.formats import csv_format
    from aefs_keras.datasets.preprocess import Preprocessing

    tmp = sys.argv[1]
    schema = ak.Schema([ak.Categorical("c", vocabulary=[f"v{i}" for i in range(2000)]),
                        ak.Categorical("i", vocabulary_size=50)])
    rng = np.random.default_rng(0)
    x = {"c": np.array([f"v{i}" for i in rng.integers(0, 2000, 256)]), "i": rng.integers(0, 50, 256)}
    y = rng.integers(0, 2, 256).astype("float32")

    def build():
        return ak.default_compile(ak.build_model(schema, "deepfm", "aefs", k=1, d_main=4, hidden_units=[8]))

    artifact = Preprocessing(csv_format([("label", "label"), ("c", "categorical")]), schema, 256, 0, {})
''')


def _child(script, tmp, wait_for=None):
    """Run `script` in a fresh process; with `wait_for`, SIGKILL it once it
    prints that line, and return what it printed before."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SETUP + textwrap.dedent(script), str(tmp)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    if wait_for is None:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        return out
    lines = []
    deadline = time.time() + 600
    for line in proc.stdout:  # bounded: the child pauses forever at the fault point
        lines.append(line)
        if line.strip() == wait_for:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    return "".join(lines)


def _digest(path):
    if os.path.isdir(path):
        return {os.path.relpath(os.path.join(d, f), path): _digest(os.path.join(d, f))
                for d, _, files in os.walk(path) for f in files}
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_full_disk_leaves_every_previous_file_intact(tmp_path):
    out = _child('''
        model = build()
        model.save(f"{tmp}/m.keras")
        artifact.save(f"{tmp}/a.json")
        ak.export(model, f"{tmp}/serving", "m", version=1)
        print("GOOD", flush=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # every file the writes need is larger
        results = {}
        for what, write in [("keras", lambda: model.save(f"{tmp}/m.keras")),
                            ("artifact", lambda: artifact.save(f"{tmp}/a.json")),
                            ("export", lambda: ak.export(model, f"{tmp}/serving", "m", version=1, overwrite=True)),
                            ("backup", lambda: ak.distributed.fit(build, ak.datasets.to_dataset(x, y, 32), 1,
                                                                  backup_dir=f"{tmp}/backup", save_freq=2,
                                                                  verbose=0))]:
            try:
                write()
                results[what] = "written"
            except Exception as e:  # the figure is which error, if any
                results[what] = type(e).__name__
        print(json.dumps(results))
    ''', tmp_path)
    results = json.loads(out.strip().splitlines()[-1])
    assert all(v != "written" for v in results.values()), results  # each write met the full disk
    # The previous files are whole and read back; nothing half-written is left beside them.
    import aefs_keras as ak

    x = {"c": np.array(["v1", "v2"]), "i": np.array([1, 2])}
    assert ak.load_model(str(tmp_path / "m.keras")).predict(x, verbose=0).shape == (2, 1)
    assert ak.datasets.Preprocessing.load(str(tmp_path / "a.json")).rows == 256
    assert sorted(os.listdir(tmp_path / "serving" / "m")) == ["1"]
    import tensorflow as tf

    tf.saved_model.load(str(tmp_path / "serving" / "m" / "1"))
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]
    # The backup the full disk cut: a next run resumes from a whole one or starts over, and finishes.
    state = ak.distributed.check_backup(str(tmp_path / "backup"))
    assert state is None or {"epoch", "batch"} <= set(state)
    schema = ak.Schema([ak.Categorical("c", vocabulary=[f"v{i}" for i in range(2000)]),
                        ak.Categorical("i", vocabulary_size=50)])
    build = lambda: ak.default_compile(ak.build_model(schema, "deepfm", "aefs", k=1, d_main=4,  # noqa: E731
                                                      hidden_units=[8]))
    ds = ak.datasets.to_dataset({"c": np.array(["v1"] * 64), "i": np.arange(64) % 50}, np.arange(64) % 2, 32)
    ak.distributed.fit(build, ds, 1, backup_dir=str(tmp_path / "backup"), save_freq=2, verbose=0)


def test_sigkill_during_the_keras_save_and_the_artifact_write(tmp_path, capsys):
    import aefs_keras as ak

    for what, write in [("keras", 'model.save(f"{tmp}/m.keras")'), ("artifact", 'artifact.save(f"{tmp}/a.json")')]:
        out = _child(f'''
            model = build() if {what == "keras"} else None  # the artifact child needs no model
            {write}
            print("GOOD", flush=True)
            import aefs_keras.files as files
            def pause(fd):  # the new file is written, not yet moved into place
                print("PAUSED", flush=True)
                time.sleep(600)
            files.os.fsync = pause
            {write}
        ''', tmp_path, wait_for="PAUSED")
        assert "GOOD" in out
    before = {name: _digest(tmp_path / name) for name in ("m.keras", "a.json")}
    left = sorted(f for f in os.listdir(tmp_path) if ".partial-" in f)
    assert len(left) == 2  # the killed writes' temporary files, under names no reader opens
    model = ak.load_model(str(tmp_path / "m.keras"))  # the previous file, whole
    artifact = ak.datasets.Preprocessing.load(str(tmp_path / "a.json"))
    assert {n: _digest(tmp_path / n) for n in before} == before
    model.save(str(tmp_path / "m.keras"))  # the next write says what it found and cleans up
    artifact.save(str(tmp_path / "a.json"))
    err = capsys.readouterr().err
    assert err.count("what an interrupted write of") == 2
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]


def test_sigkill_during_an_export_and_an_overwrite(tmp_path, capsys):
    import aefs_keras as ak

    out = _child('''
        model = build()
        ak.export(model, f"{tmp}/serving", "m", version=1)
        print("GOOD", flush=True)
        import aefs_keras.serving as serving
        write = serving._write_saved_model
        def write_then_pause(*args, **kwargs):  # version 2 written under its temporary name
            write(*args, **kwargs)
            print("PAUSED", flush=True)
            time.sleep(600)
        serving._write_saved_model = write_then_pause
        ak.export(model, f"{tmp}/serving", "m", version=2)
    ''', tmp_path, wait_for="PAUSED")
    assert "GOOD" in out
    model_dir = tmp_path / "serving" / "m"
    assert [d for d in os.listdir(model_dir) if d.isdigit()] == ["1"]  # TF Serving sees version 1 only
    _child('''
        model = build()
        rename = os.rename
        calls = []
        def pause_between(a, b):  # version 1 moved aside, the new one not yet in place
            calls.append(a)
            rename(a, b)
            if len(calls) == 1:
                print("PAUSED", flush=True)
                time.sleep(600)
        import aefs_keras.serving as serving
        serving.os.rename = pause_between
        ak.export(model, f"{tmp}/serving", "m", version=1, overwrite=True)
    ''', tmp_path, wait_for="PAUSED")
    assert not (model_dir / "1").exists()
    x = {"c": np.array(["v1"]), "i": np.array([1])}
    schema = ak.Schema([ak.Categorical("c", vocabulary=[f"v{i}" for i in range(2000)]),
                        ak.Categorical("i", vocabulary_size=50)])
    fresh = ak.build_model(schema, "deepfm", "aefs", k=1, d_main=4, hidden_units=[8])
    ak.export(fresh, str(tmp_path / "serving"), "m", version=3)
    err = capsys.readouterr().err
    assert "Restored" in err and "Removed" in err
    assert sorted(d for d in os.listdir(model_dir)) == ["1", "3"]  # version 1 back, nothing else left
    import tensorflow as tf

    tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"](
        c=tf.constant(x["c"]), i=tf.constant(x["i"]))
