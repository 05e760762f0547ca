"""Each backbone, without selection, learns the real Frappe data."""

import keras
import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras.datasets import FRAPPE_FIELDS, read_libsvm

from conftest import shared_data


@pytest.fixture(scope="module")
def frappe():
    root = shared_data("frappe")
    # Frappe_x1's training split is not shared: train on its validation
    # file, test on its test file (disjoint rows).
    train, schema = read_libsvm(str(root / "valid.libsvm"), FRAPPE_FIELDS, batch_size=1024,
                                shuffle=True, seed=0)
    test, _ = read_libsvm(str(root / "test.libsvm"), FRAPPE_FIELDS, batch_size=4096)
    return train, test, schema


def test_reader_matches_plain_python(frappe):
    _, test, schema = frappe
    root = shared_data("frappe")
    lines = [l.split() for l in open(root / "test.libsvm") if l.strip()]
    features, labels = next(iter(test))
    assert len(labels) == min(4096, len(lines))
    for row in (0, 1, 4095):
        tokens = lines[row]
        assert labels[row].numpy() == float(float(tokens[0]) > 0)
        for (name, first, _), tok in zip(FRAPPE_FIELDS, tokens[1:]):
            assert features[name][row].numpy() == int(tok.split(":")[0]) - first
    assert sum(int(b[1].shape[0]) for b in test) == len(lines)


@pytest.mark.parametrize("backbone", ["dnn", "deepfm", "dcn", "wide_deep", "mlcc"])
def test_backbone_learns_frappe(frappe, backbone):
    train, test, schema = frappe
    keras.utils.set_random_seed(0)
    model = ak.default_compile(ak.build_model(schema, backbone, d_main=16, hidden_units=[64, 32]))
    model.fit(train, epochs=1, verbose=0)
    auc = model.evaluate(test, return_dict=True, verbose=0)["auc"]
    assert auc > 0.85, f"{backbone} reached test AUC {auc:.4f} on Frappe"
