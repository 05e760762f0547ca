"""Permutation importance and the controller prior made from it."""

import doctest

import keras
import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras import importance


def _model_of(weights):
    # Probability = sigmoid(sum of w * column): fields with weight 0 are unused.
    inputs = {n: keras.Input((), name=n) for n in weights}
    logit = sum(w * inputs[n] for n, w in weights.items())
    return keras.Model(inputs, keras.ops.sigmoid(logit))


def test_permutation_importance_exact_on_a_known_model():
    rng = np.random.default_rng(0)
    x = {n: rng.normal(size=2000).astype("float32") for n in ("a", "b", "c")}
    y = (x["a"] + 0.3 * x["b"] > 0).astype(int)
    drops = importance.permutation_importance(_model_of({"a": 1.0, "b": 0.3, "c": 0.0}), x, y)
    assert drops[2] == 0.0  # shuffling an unused column changes no prediction
    assert drops[0] > drops[1] > 0.0
    with pytest.raises(ValueError, match=r"one value per label \(2000\).*\[10, 2000\]"):
        importance.permutation_importance(_model_of({"a": 1.0, "b": 0.3, "c": 0.0}),
                                          {**x, "c": x["c"][:10]}, y)


def test_permutation_importance_takes_string_columns_as_object_arrays():
    # Rows read from files hold strings as object arrays, which model.predict rejects.
    inputs = {"s": keras.Input((), dtype="string", name="s"), "a": keras.Input((), name="a")}
    hit = keras.ops.cast(keras.layers.StringLookup(vocabulary=["yes"], num_oov_indices=1)(inputs["s"]), "float32")
    model = keras.Model(inputs, keras.ops.sigmoid(4.0 * hit - 2.0 + 0.0 * inputs["a"]))
    rng = np.random.default_rng(1)
    s = np.array([b"yes" if v else b"no" for v in rng.random(3000) < 0.5], dtype=object)
    drops = importance.permutation_importance(model, {"s": s, "a": np.zeros(3000, "float32")},
                                              (s == b"yes").astype(int), batch_size=512)
    assert drops[0] > 0.4 and drops[1] == 0.0


def test_importance_prior_standardises_and_clips():
    prior = importance.importance_prior([0.0, 0.0, 0.0, 0.3])
    z = np.array([-1, -1, -1, 3]) / np.sqrt(3)  # mean 0.075, sd 0.3 * sqrt(3) / 4
    np.testing.assert_allclose(prior, z, rtol=1e-6)
    assert max(importance.importance_prior([0.0] * 20 + [1.0])) == 3.0  # clipped
    with pytest.raises(ValueError, match="finite"):
        importance.importance_prior([0.1, float("inf")])


def test_docstring_example():
    assert doctest.testmod(importance).failed == 0


def test_builder_passes_the_prior_to_the_selector():
    schema = ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=10) for i in range(4)])
    model = ak.build_model(schema, "dnn", "aefs", k=2, hidden_units=[8],
                           field_prior=[1.0, 0.0, 0.0, -1.0])
    out = model.get_layer("selector")._controller._out[0]
    np.testing.assert_allclose(out.bias.numpy(), [1.0, 0.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="field_prior"):
        ak.build_model(schema, "dnn", "aefs", k=2, field_prior=[1.0])
