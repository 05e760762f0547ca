"""The compact fast path is an optimisation, not a new model: the same
predictions and gradients as the scattered (B, F, d) form, in training and
in the exported SavedModel."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras import builder
from aefs_keras import layers as L
from aefs_keras.ops import fields_matmul, place_fields, scatter_fields

BACKBONES = ["dnn", "deepfm", "dcn", "wide_deep", "mlcc", "mc_mlcc"]
F = 7


def _schema():
    return ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=30) for i in range(F)])


def _x(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return {f"c{i}": rng.integers(0, 30, n) for i in range(F)}, rng.integers(0, 2, n).astype("float32")


def _pair(backbone, selection, **kw):
    """The default (fast) model and the scattered reference, same weights."""
    if isinstance(selection, str):  # controller dropout off: the two models must match in training
        selection = ak.selection.SELECTIONS[selection](k=3, dropout=0.0, **kw.pop("options", {}))
    kw = {"hidden_units": [16, 8], "d_main": 8,
          "embeddings_initializer": keras.initializers.RandomNormal(stddev=0.5), **kw}
    keras.utils.set_random_seed(1)
    fast = ak.build_model(_schema(), backbone, selection, **kw)
    builder._SCATTERED_REFERENCE = True
    try:
        keras.utils.set_random_seed(1)
        ref = ak.build_model(_schema(), backbone, selection, **kw)
    finally:
        builder._SCATTERED_REFERENCE = False
    ref.set_weights(fast.get_weights())
    return fast, ref


def _main(out):
    return out["probability"] if isinstance(out, dict) else out


def _loss_and_grads(model, x, y):
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], _main(out)))
        if isinstance(out, dict):
            loss += tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], out["aux_probability"]))
        if model.losses:
            loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]


def _assert_same_grads(ga, gb):
    # Within 1e-5 of the largest gradient: some are round-off noise around 0
    # (e.g. a bias just before a batch norm), where only an absolute bound means anything.
    assert len(ga) == len(gb)
    scale = max(np.abs(b).max() for b in gb)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("backbone, selection", list(itertools.product(BACKBONES, ["adafs", "aefs"])))
def test_fast_path_equals_scattered(backbone, selection):
    fast, ref = _pair(backbone, selection)
    main = fast.get_layer("main_embedding")
    assert selection == "adafs" or main.output_mode == "compact"
    assert fast.get_layer("backbone").num_fields == F
    x, y = _x()
    np.testing.assert_allclose(_main(fast(x, training=False)), _main(ref(x, training=False)), atol=1e-5)
    lf, gf = _loss_and_grads(fast, x, y)
    lr, gr = _loss_and_grads(ref, x, y)
    np.testing.assert_allclose(lf, lr, rtol=1e-5)
    assert any(np.abs(g).max() > 0 for g in gf)
    _assert_same_grads(gf, gr)


@pytest.mark.parametrize("backbone, selection", [("deepfm", "aefs"), ("dcn", "adafs")])
def test_exported_fast_path_equals_scattered(tmp_path, backbone, selection):
    fast, ref = _pair(backbone, selection)
    x, _ = _x(seed=4)
    served = tf.saved_model.load(ak.export(fast, str(tmp_path), "m")).signatures["serving_default"]
    got = served(**{k: tf.constant(v) for k, v in x.items()})
    np.testing.assert_allclose(got["probability"].numpy(), _main(ref(x, training=False)), atol=1e-5)


def test_fast_path_table_gradient_is_the_kept_rows_only():
    fast, _ = _pair("deepfm", "aefs")
    x, y = _x(n=16)
    table = fast.get_layer("main_embedding").embeddings
    with tf.GradientTape() as tape:
        p = fast(x, training=True)["probability"]
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], p))
    grad = tape.gradient(loss, table.value)
    assert isinstance(grad, tf.IndexedSlices)
    ids = fast.get_layer("field_ids")(x)
    idx = fast.get_layer("selector")(ids, training=True)["indices"].numpy()  # batch statistics, as above
    offsets = np.cumsum([0] + [31] * (F - 1))
    expect = np.take_along_axis(ids.numpy(), idx, 1) + offsets[idx]
    assert sorted(grad.indices.numpy().tolist()) == sorted(expect.ravel().tolist())


@pytest.mark.parametrize("backbone", ["deepfm", "dcn"])
def test_fast_path_warmup_equals_scattered(backbone):
    fast, ref = _pair(backbone, "aefs", options={"warmup_steps": 1})
    x, y = _x()
    # Step 1 warms up (all F fields at their soft scores), step 2 selects.
    for _ in range(2):
        lf, gf = _loss_and_grads(fast, x, y)
        lr, gr = _loss_and_grads(ref, x, y)
        np.testing.assert_allclose(lf, lr, rtol=1e-5)
        _assert_same_grads(gf, gr)
    assert fast.get_layer("selector").step.numpy() == 2


def test_fast_path_warmup_trains_with_fit():
    fast, _ = _pair("deepfm", "aefs", options={"warmup_steps": 2})
    x, y = _x(n=64)
    ak.default_compile(fast).fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert fast.get_layer("selector").step.numpy() == 4


def _random_selection(b, f, m, seed):
    rng = np.random.default_rng(seed)
    # Distinct fields per row, in no particular order.
    return np.stack([rng.permutation(f)[:m] for _ in range(b)]).astype("int32")


@pytest.mark.parametrize("b, m", [(1, 3), (9, 3), (9, F)])
def test_place_fields_is_scatter_fields(b, m):
    idx = _random_selection(b, F, m, seed=b + m)
    rows = tf.constant(np.random.default_rng(0).normal(size=(b, m, 4)).astype("float32"))
    upstream = tf.constant(np.random.default_rng(1).normal(size=(b, F, 4)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(rows)
        got, want = place_fields(rows, idx, F), scatter_fields(rows, idx, F)
        lg, lw = tf.reduce_sum(got * upstream), tf.reduce_sum(want * upstream)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(tape.gradient(lg, rows), tape.gradient(lw, rows))


@pytest.mark.parametrize("b, m", [(1, 3), (9, 3), (9, F)])
def test_fields_matmul_is_the_dense_layer_on_scattered_rows(b, m):
    idx = _random_selection(b, F, m, seed=b * m)
    rng = np.random.default_rng(2)
    rows = tf.constant(rng.normal(size=(b, m, 4)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(F * 4, 6)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(b, 6)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([rows, kernel])
        got = fields_matmul(rows, idx, kernel, F)
        want = tf.matmul(tf.reshape(scatter_fields(rows, idx, F), [b, F * 4]), kernel)
        lg, lw = tf.reduce_sum(got * upstream), tf.reduce_sum(want * upstream)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for a, c in zip(tape.gradient(lg, [rows, kernel]), tape.gradient(lw, [rows, kernel])):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    # A field no row kept gets an exactly zero kernel gradient block.
    d_kernel = tape.gradient(lg, kernel).numpy().reshape(F, 4, 6)
    for f in set(range(F)) - set(idx.ravel().tolist()):
        assert not d_kernel[f].any()


def test_backbone_compact_call_needs_num_fields():
    with pytest.raises(ValueError, match="num_fields"):
        L.DeepFM(hidden_units=[4])(np.ones((2, 3, 4), "float32"), indices=np.array([[0, 1, 2]] * 2))
    with pytest.raises(ValueError, match="num_fields=0"):
        L.DNN(hidden_units=[4], num_fields=0)


def test_backbone_compact_call_round_trips_config():
    layer = L.DNN(hidden_units=[4], num_fields=5)
    assert L.DNN.from_config(layer.get_config()).num_fields == 5


def test_user_backbone_without_indices_gets_the_scattered_form():
    from aefs_keras.layers.backbone import Backbone

    class SumBackbone(Backbone):  # a user's backbone: call has no `indices`
        def build(self, embeddings_shape, linear_shape=None):
            self.build_deep(self.field_shape(embeddings_shape))

        def call(self, embeddings, linear=None, training=None):
            return self.head(self.mlp(self.flatten(embeddings), training=training))

    builder.register_backbone("user_sum_test", SumBackbone)
    try:
        model = ak.build_model(_schema(), "user_sum_test", "aefs", k=3, hidden_units=[4], d_main=4)
    finally:
        builder.BACKBONES.pop("user_sum_test")
    assert model.get_layer("main_embedding").output_mode == "scattered"
    x, _ = _x(n=8)
    assert model.predict(x, verbose=0).shape == (8, 1)


@pytest.mark.parametrize("b, m, residual", [(1, 3, False), (9, 3, False), (9, F, False), (9, 3, True), (9, F, True)])
def test_aux_fill_fast_path_equals_the_plain_fill(b, m, residual):
    from aefs_keras.experimental.dropped_field_fill import DroppedFieldFill

    idx = _random_selection(b, F, m, seed=10 * b + m)
    rng = np.random.default_rng(3)
    rows = tf.constant(rng.normal(size=(b, m, 5)).astype("float32"))
    aux = tf.constant(rng.normal(size=(b, F, 2)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(b, F, 5)).astype("float32"))
    fast = DroppedFieldFill(F, compact=True, from_aux=True, residual=residual)
    plain = DroppedFieldFill(F, compact=False, from_aux=True, residual=residual)
    fast(rows, idx, aux), plain(place_fields(rows, idx, F), idx, aux)
    for layer in (fast, plain):  # the same non-zero weights in both
        layer.fill.assign(rng.normal(size=(F, 5)).astype("float32") if layer is fast else fast.fill)
        layer.projection.assign(rng.normal(size=(F, 2, 5)).astype("float32") if layer is fast else fast.projection)
    # Graph mode with an unknown batch size, as in a Keras model.
    spec = [tf.TensorSpec([None, m, 5]), tf.TensorSpec([None, m], tf.int32), tf.TensorSpec([None, F, 2])]

    @tf.function(input_signature=spec)
    def fast_call(r, i, a):
        return fast(r, i, a)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([rows, aux])
        got = fast_call(rows, tf.constant(idx), aux)
        want = plain(place_fields(rows, idx, F), idx, aux)
        lg, lw = tf.reduce_sum(got * upstream), tf.reduce_sum(want * upstream)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # By hand: a dropped field is m_f + a_f P_f; a kept one its row (plus
    # that fill when residual).
    def coarse(f):
        return fast.fill.numpy()[f] + aux.numpy()[0, f] @ fast.projection.numpy()[f]

    for f in set(range(F)) - set(idx[0].tolist()):
        np.testing.assert_allclose(got[0, f], coarse(f), rtol=1e-5, atol=1e-6)
    for j, f in enumerate(idx[0].tolist()):
        np.testing.assert_allclose(got[0, f], rows[0, j] + coarse(f) if residual else rows[0, j], rtol=1e-5, atol=1e-5)
    grads = zip(tape.gradient(lg, [rows, aux, fast.fill, fast.projection]),
                tape.gradient(lw, [rows, aux, plain.fill, plain.projection]))
    for a, c in grads:
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
