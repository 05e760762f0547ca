"""The main job, `aefs-keras demo`, end to end on a tiny setting."""

import os
import re

import keras
import numpy as np

import aefs_keras as ak


def ak_train(rows):
    return ak.datasets.synthetic(num_rows=rows, seed=0, batch_size=512).train


def test_demo_prints_table_and_served_selection_and_saves(tmp_path, capsys):
    from aefs_keras import cli

    code = cli.main(["demo", "--rows", "3000", "--epochs", "1", "--batch-size", "512",
                     "--hidden-units", "8", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"^none\s+0\.\d{4}\s+0\.\d{4}\s+1287\s", out, re.M)  # 39 x 33 values read
    assert re.search(r"^aefs\s+0\.\d{4}\s+0\.\d{4}\s+783\s", out, re.M)  # 39 x 4 + 19 x 33
    shares = re.search(r"Share of test rows.*\n  (.*)\n", out).group(1).split(", ")
    assert len(shares) == 39
    values = [float(s.rsplit(" ", 1)[1]) for s in shares]
    assert values == sorted(values, reverse=True)
    np.testing.assert_allclose(sum(values), 19, atol=0.01 * 39)  # k fields per row (rounded shares)
    assert "oracle AUC without each" in out
    assert re.search(r"controller prior from the no-selection model's permutation importance .*: "
                     r"\w+ -?0\.\d{4}", out)
    model = keras.models.load_model(tmp_path / "demo_aefs.keras")
    # One epoch of soft warm-up by default: ceil(training rows / batch) steps.
    warm = int(re.search(r"soft warm-up for the first (\d+) training steps", out).group(1))
    train_rows = sum(int(b[1].shape[0]) for b in ak_train(3000))
    assert warm == -(-train_rows // 512) == model.get_layer("selector").warmup_steps
    assert os.path.isdir(tmp_path / "serving" / "demo_aefs" / "1")
