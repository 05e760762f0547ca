"""XLA in training: where `default_compile` turns it on, and that the
compiled step computes what the plain one does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras import Categorical, MultiCategorical, Numeric, Schema
from aefs_keras.optimizers import SparseAdam

SCHEMA = Schema([*(Categorical(f"c{i}", vocabulary_size=30) for i in range(6)),
                 MultiCategorical("tags", vocabulary_size=20, max_length=3),
                 Numeric("n0", boundaries=(-1.0, 0.0, 1.0))])


def _batch(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    x = {f"c{i}": rng.integers(0, 30, rows) for i in range(6)}
    tags = rng.integers(0, 20, (rows, 3))
    tags[rng.random((rows, 3)) < 0.3] = -1  # padding
    x["tags"] = tags
    x["n0"] = rng.normal(size=rows).astype("float32")
    y = (rng.random(rows) < 0.3).astype("float32")
    return x, y


def _model(backbone, selection, **kw):
    keras.utils.set_random_seed(0)
    if isinstance(selection, str):
        kw.setdefault("k", 4)
    return ak.build_model(SCHEMA, backbone, selection, hidden_units=[8], d_main=8, **kw)


@pytest.fixture(autouse=True)
def _automatic_choice_on(monkeypatch):
    monkeypatch.delenv("AEFS_KERAS_XLA", raising=False)  # tests/conftest.py sets it to 0


def test_the_choice_and_its_reasons(monkeypatch):
    model = _model("deepfm", None)
    assert ak.xla_choice(model, keras.optimizers.Adam()) == (True, "Keras' Adam, no per-row selector, every layer compiles")
    assert ak.default_compile(model).jit_compile is True
    use, why = ak.xla_choice(model, SparseAdam(embedding_rule="rowwise_adagrad"))
    assert not use and "SparseAdam" in why
    use, why = ak.xla_choice(model, keras.optimizers.SGD())
    assert not use and "SGD" in why
    assert ak.xla_choice(model, keras.optimizers.Adam(), run_eagerly=True) == (False, "run_eagerly=True")
    assert ak.default_compile(_model("deepfm", None), jit_compile=False).jit_compile is False  # the caller wins
    strings = Schema([Categorical("s", vocabulary=["a", "b"]), Categorical("c", vocabulary_size=5)])
    use, why = ak.xla_choice(ak.build_model(strings, "deepfm", hidden_units=[4], d_main=4), keras.optimizers.Adam())
    assert not use and "cannot be compiled by XLA" in why
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert not ak.xla_choice(_model("dnn", None), keras.optimizers.Adam())[0]
    use, why = ak.xla_choice(_model("deepfm", "aefs"), keras.optimizers.Adam())
    assert not use and "per-row selector" in why
    assert ak.xla_choice(_model("deepfm", "mixed_dimension", importance=list(range(8, 0, -1))),
                         keras.optimizers.Adam())[0]
    monkeypatch.setenv("AEFS_KERAS_XLA", "0")
    assert ak.xla_choice(model, keras.optimizers.Adam()) == (False, "AEFS_KERAS_XLA=0")
    assert ak.default_compile(_model("deepfm", None)).jit_compile is False


def _outputs_and_gradients(model, x, y, jit):
    @tf.function(jit_compile=jit)
    def run(x, y):
        with tf.GradientTape() as tape:
            # The training graph (batch statistics, selection counters); the
            # models here have no dropout, where XLA draws other numbers.
            out = model(x, training=True)
            p = out["probability"] if isinstance(out, dict) else out
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], p))
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        return p, [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                   for g, v in zip(grads, model.trainable_variables)]

    p, grads = run(x, y)
    return p.numpy(), [g.numpy() for g in grads]


RANKING = list(range(8, 0, -1))  # given: no ranking pass inside fit


# Each case compiles twice (seconds each); these cover the FM's and the
# alignment's squared norms, the selector and its counters, the mixed widths
# and keras-rs' cross layer.
@pytest.mark.parametrize("backbone, selection", [
    ("deepfm", None), ("deepfm", ak.AEFS(k=4, dropout=0.0, importance=RANKING)),
    ("deepfm", ak.MixedDimension(k=4, importance=RANKING)), ("dcn", None)],
    ids=["deepfm", "deepfm-aefs", "deepfm-mixed_dimension", "dcn"])
def test_compiled_step_matches_the_plain_one(backbone, selection):
    model = _model(backbone, selection)
    x, y = _batch()
    xt = {k: tf.constant(v) for k, v in x.items()}
    p0, g0 = _outputs_and_gradients(model, xt, tf.constant(y), jit=False)
    p1, g1 = _outputs_and_gradients(model, xt, tf.constant(y), jit=True)
    np.testing.assert_allclose(p1, p0, atol=1e-5)
    assert any(np.abs(g).max() > 0 for g in g0)
    for a, b, v in zip(g0, g1, model.trainable_variables):
        np.testing.assert_allclose(b, a, atol=1e-5, err_msg=v.path)
    if selection is None:
        # The default: XLA. (AEFS's step under XLA compiles for about 14 s
        # even at this size: benchmarks/xla_training.py trains it.)
        ak.default_compile(model)
        assert model.jit_compile is True
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert model.jit_compile is True and np.isfinite(history.history["loss"]).all()
