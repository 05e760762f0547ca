"""Files written whole and files found damaged (aefs_keras.files)."""

import json
import os

import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras.files import written_whole


def _model():
    schema = ak.Schema([ak.Categorical("u", vocabulary=["a", "b", "c"]), ak.Categorical("i", vocabulary_size=5)])
    return ak.default_compile(ak.build_model(schema, "deepfm", "aefs", k=1, d_main=4, hidden_units=[8]))


def test_keras_save_round_trip_and_damaged_copies_name_the_file(tmp_path):
    model = _model()
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert os.listdir(tmp_path) == ["m.keras"]  # no temporary file left
    x = {"u": np.array(["a", "c"]), "i": np.array([1, 4])}
    np.testing.assert_array_equal(ak.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))
    data = open(path, "rb").read()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    for name, content in [("cut", data[: len(data) // 2]), ("flip", bytes(flipped)), ("empty", b"")]:
        bad = tmp_path / f"{name}.keras"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{bad} is damaged: not a complete \.keras file"):
            ak.load_model(str(bad))


def test_written_whole_keeps_the_previous_file_on_error_and_cleans_leftovers(tmp_path, capsys):
    path = tmp_path / "a.json"
    path.write_text("old")
    with pytest.raises(OSError):
        with written_whole(str(path)) as tmp, open(tmp, "w") as f:
            f.write("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    # What a killed writer (a pid no longer running) left is removed and reported.
    (tmp_path / ".a.json.partial-999999999").write_text("half")
    with written_whole(str(path)) as tmp, open(tmp, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["a.json"]
    assert "interrupted write" in capsys.readouterr().err


def test_damaged_artifact_names_the_file(tmp_path):
    from aefs_keras.datasets.preprocess import Preprocessing

    for name, content in [("cut", b'{"artifact_version": 1, "form'), ("bytes", b"\xff\xfe{}"),
                          ("keys", json.dumps({"artifact_version": 1}).encode())]:
        bad = tmp_path / f"{name}.json"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{bad} is damaged"):
            Preprocessing.load(str(bad))
