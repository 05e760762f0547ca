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
from aefs_keras.experimental.grouped_first_layer import fields_matmul
from aefs_keras.ops import place_fields, scatter_fields

BACKBONES = ["dnn", "deepfm", "dcn", "wide_deep", "mlcc", "mc_mlcc"]
F = 7


def _schema():
    return ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=30) for i in range(F)])


def _x(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return {f"c{i}": rng.integers(0, 30, n) for i in range(F)}, rng.integers(0, 2, n).astype("float32")


def _copy_weights(source, target):
    """Same weights, layer by layer (the two graphs may order layers differently)."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def _pair(backbone, selection, **kw):
    """The default (fast) model and the scattered reference, same weights."""
    if selection == "aefs_single":  # AEFS in the paper's form
        selection, kw["options"] = "aefs", {**kw.get("options", {}), "resolution": "single"}
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
    _copy_weights(fast, ref)
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


def _grads_by_path(model, x, y):
    """Gradients keyed by (top-level layer, variable path within it): the two
    models' layers carry the same names, the auto-named ones inside may not."""
    loss, grads = _loss_and_grads(model, x, y)
    owner = {}
    for layer in model.layers:
        for i, v in enumerate(layer.trainable_variables):
            owner[id(v)] = f"{layer.name}/{v.path.split('/')[-1]}#{i}"
    return loss, dict(zip([owner[id(v)] for v in model.trainable_variables], grads))


def _assert_same_grads(ga, gb):
    # Within 1e-5 of the largest gradient: some are round-off noise around 0
    # (e.g. a bias just before a batch norm), where only an absolute bound means anything.
    assert len(ga) == len(gb)
    scale = max(np.abs(b).max() for b in gb)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("backbone, selection", list(itertools.product(BACKBONES, ["adafs", "aefs", "aefs_single"])))
def test_fast_path_equals_scattered(backbone, selection):
    fast, ref = _pair(backbone, selection)
    main = fast.get_layer("main_embedding")
    assert selection == "adafs" or main.output_mode == "compact"
    assert fast.get_layer("backbone").num_fields == F
    x, y = _x()
    np.testing.assert_allclose(_main(fast(x, training=False)), _main(ref(x, training=False)), atol=1e-5)
    lf, gf = _grads_by_path(fast, x, y)
    lr, gr = _grads_by_path(ref, x, y)
    np.testing.assert_allclose(lf, lr, rtol=1e-5)
    assert gf.keys() == gr.keys() and any(np.abs(g).max() > 0 for g in gf.values())
    _assert_same_grads([gf[k] for k in sorted(gf)], [gr[k] for k in sorted(gf)])


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


@pytest.mark.parametrize("backbone, selection", [("deepfm", "aefs"), ("dcn", "aefs"), ("deepfm", "aefs_single")])
def test_fast_path_warmup_equals_scattered(backbone, selection):
    fast, ref = _pair(backbone, selection, options={"warmup_steps": 1})
    x, y = _x()
    # Step 1 warms up (all F fields at their soft scores), step 2 selects.
    for _ in range(2):
        lf, gf = _grads_by_path(fast, x, y)
        lr, gr = _grads_by_path(ref, x, y)
        np.testing.assert_allclose(lf, lr, rtol=1e-5)
        _assert_same_grads([gf[k] for k in sorted(gf)], [gr[k] for k in sorted(gf)])
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


# --- The mixed form's fill, factored into the backbone ----------------------


def _mixed_pair(backbone, linear_fields, keep_share=0.34):
    """The mixed form (fill factored into the backbone) and its scattered
    reference, with the same (non-zero) weights, copied layer by layer.
    `linear_fields="all"`: the core's `AEFS` (mixed resolution, field 1
    fixed by `importance`); "selected": the research variant that reads
    only the kept fields' first-order weights."""
    if linear_fields == "all":
        sel = ak.AEFS(k=3, dropout=0.0, importance=[0, 1, 0.5, 0, 0, 0, 0], keep_share=keep_share)
    else:
        sel = ak.experimental.ResearchAEFS(k=3, dropout=0.0, always_keep=(1,), main_weighting="unit",
                                           dropped_fill="aux", linear_fields=linear_fields)
    kw = {"hidden_units": [16, 8], "d_main": 8, "embeddings_initializer": keras.initializers.RandomNormal(stddev=0.5)}
    keras.utils.set_random_seed(1)
    fast = ak.build_model(_schema(), backbone, sel, **kw)
    builder._SCATTERED_REFERENCE = True
    try:
        ref = ak.build_model(_schema(), backbone, sel, **kw)
    finally:
        builder._SCATTERED_REFERENCE = False
    rng = np.random.default_rng(5)
    for layer in fast.layers:
        if layer.name.startswith("dropped_fill"):  # zeros at the start: make the fill count
            layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
        ref.get_layer(layer.name).set_weights(layer.get_weights())
    return fast, ref


@pytest.mark.parametrize("backbone, linear_fields, fold", [("dnn", "all", True), ("deepfm", "selected", True),
                                                           ("deepfm", "all", True), ("wide_deep", "all", True),
                                                           ("deepfm", "all", False)])
def test_factored_fill_equals_the_scattered_mixed_form(tmp_path, monkeypatch, backbone, linear_fields, fold):
    from aefs_keras.layers import mlp

    # The fill folded into the first layer's kernel (large batches) or added
    # to the placed rows (small ones): both must be the scattered model.
    monkeypatch.setattr(mlp, "FOLD_MIN_BATCH", 0 if fold else 10**9)
    fast, ref = _mixed_pair(backbone, linear_fields)
    assert fast.get_layer("dropped_fill").factored and not ref.get_layer("dropped_fill").factored
    assert fast.get_layer("main_embedding").output_mode == "compact"
    x, y = _x()
    want = _main(ref(x, training=False))
    np.testing.assert_allclose(_main(fast(x, training=False)), want, atol=1e-5)
    lf, gf = _grads_by_path(fast, x, y)
    lr, gr = _grads_by_path(ref, x, y)
    np.testing.assert_allclose(lf, lr, rtol=1e-5)
    assert gf.keys() == gr.keys()
    assert np.abs(gf["dropped_fill/projection#1"]).max() > 0
    _assert_same_grads([gf[k] for k in sorted(gf)], [gr[k] for k in sorted(gf)])
    # Saved, reloaded and served: the same outputs (the training calls above
    # moved the selector's statistics, so compare with the model as saved).
    want = _main(fast(x, training=False))
    fast.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("dropped_fill").factored
    np.testing.assert_allclose(_main(loaded(x, training=False)), want, atol=1e-6)
    served = tf.saved_model.load(ak.export(fast, str(tmp_path), "m")).signatures["serving_default"]
    got = served(**{k: tf.constant(v) for k, v in x.items()})
    np.testing.assert_allclose(got["probability"].numpy(), want, atol=1e-5)


def test_backbones_without_a_factored_fill_get_it_assembled():
    sel = ak.AEFS(k=3)
    for backbone in ("dcn", "mlcc"):
        model = ak.build_model(_schema(), backbone, sel, hidden_units=[4], d_main=4)
        assert not model.get_layer("dropped_fill").factored
    # The residual fill adds to the kept rows too: assembled, also for DeepFM.
    sel = ak.experimental.ResearchAEFS(k=3, always_keep=(1,), main_weighting="unit", dropped_fill="aux_residual")
    assert not ak.build_model(_schema(), "deepfm", sel, hidden_units=[4], d_main=4).get_layer("dropped_fill").factored


def test_fill_matmul_and_fill_sums_by_numpy():
    from aefs_keras.ops import fill_matmul, fill_sums, fill_vectors

    rng = np.random.default_rng(7)
    b, e, d, h = 5, 3, 4, 6
    codes = rng.normal(size=(b, F, e)).astype("float32")
    weights = rng.normal(size=(F, e, d)).astype("float32")
    kernel = rng.normal(size=(F * d, h)).astype("float32")
    vectors = np.einsum("bfe,fed->bfd", codes, weights)
    np.testing.assert_allclose(fill_vectors(codes, weights), vectors, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fill_matmul(codes, weights, kernel), vectors.reshape(b, F * d) @ kernel,
                               rtol=1e-4, atol=1e-4)
    total, squares = fill_sums(codes, weights)
    np.testing.assert_allclose(total, vectors.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(squares, (vectors ** 2).sum((1, 2)), rtol=1e-5, atol=1e-4)


def test_factored_fill_needs_the_compact_aux_fill():
    from aefs_keras.experimental.dropped_field_fill import DroppedFieldFill

    for bad in ({"compact": False, "from_aux": True}, {"from_aux": False}, {"from_aux": True, "residual": True}):
        with pytest.raises(ValueError, match="`factored=True` needs"):
            DroppedFieldFill(F, factored=True, **bad)
    with pytest.raises(ValueError, match="fill_weights=None"):
        L.DNN([4], num_fields=F)(np.ones((2, 3, 4), "float32"), indices=np.array([[0, 1, 2]] * 2),
                                fill_codes=np.zeros((2, F, 2), "float32"))
    with pytest.raises(ValueError, match="needs the compact call"):
        L.DNN([4])(np.ones((2, F, 4), "float32"), fill_codes=np.zeros((2, F, 2), "float32"),
                   fill_weights=np.zeros((F, 2, 4), "float32"))


# --- The first layer split where most kept fields are common to the batch ----


def _common_selection(b, fixed, c, seed):
    """(B, len(fixed) + c) field indices: `fixed` in every row, c more per row,
    each row in its own random order."""
    rng = np.random.default_rng(seed)
    others = [f for f in range(F) if f not in fixed]
    rows = [rng.permutation(np.concatenate([fixed, rng.choice(others, c, replace=False)])) for _ in range(b)]
    return np.array(rows, "int32").reshape(b, len(fixed) + c)


@pytest.mark.parametrize("b, fixed, c", [(1, (2, 5), 2), (9, (0, 3, 6), 2), (9, (1, 2, 4, 6), 0), (33, (6, 0), 1)])
def test_split_first_layer_equals_the_dense_layer(monkeypatch, b, fixed, c):
    from aefs_keras import ops

    monkeypatch.setattr(ops, "SPLIT_MIN_BATCH", 0)
    monkeypatch.setattr(ops, "SPLIT_MIN_WORK_TRAINING", 0)
    d, h, e = 4, 6, 3
    rng = np.random.default_rng(b + c)
    idx = _common_selection(b, fixed, c, seed=b)
    rows = tf.constant(rng.normal(size=(b, idx.shape[1], d)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(F * d, h)).astype("float32"))
    raw = tf.constant(rng.normal(size=(b, F, e)).astype("float32"))
    weights = tf.constant(rng.normal(size=(F, e, d)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(b, h)).astype("float32"))
    dropped = 1.0 - tf.reduce_max(tf.one_hot(idx, F), 1)  # a factored fill's codes: zero where kept

    @tf.function
    def both(rows, kernel, raw, weights, idx):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([rows, kernel, raw, weights])
            codes = raw * dropped[..., None]
            split = ops.kept_fields_matmul(rows, idx, kernel, F, fill=(codes, weights), training=True)
            # The reference: TF's own gradients of the scattered rows.
            dense = tf.matmul(tf.reshape(scatter_fields(rows, idx, F), [-1, F * d]), kernel)
            dense += tf.matmul(tf.reshape(codes, [-1, F * e]),
                               tf.reshape(tf.einsum("fed,fdh->feh", weights, tf.reshape(kernel, [F, d, h])),
                                          [F * e, h]))
            losses = [tf.reduce_sum(split * upstream), tf.reduce_sum(dense * upstream)]
        return ops.split_pays(idx, F, ops.split_min_batch(d, h, True))[0], split, dense, [tape.gradient(loss, [rows, kernel, raw, weights])
                                                           for loss in losses]

    pays, split, dense, (g_split, g_dense) = both(rows, kernel, raw, weights, tf.constant(idx))
    assert bool(pays)
    np.testing.assert_allclose(split.numpy(), dense.numpy(), rtol=1e-5, atol=1e-5)
    for a, want in zip(g_split, g_dense):
        np.testing.assert_allclose(a.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    # A field no row kept: exactly no kernel gradient from the rows' product.
    unused = sorted(set(range(F)) - set(idx.ravel().tolist()))
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        out = ops._split_matmul(rows, tf.constant(idx), kernel, F, ops.common_fields(tf.constant(idx), F))
        loss = tf.reduce_sum(out * upstream)
    g_kernel = tf.reshape(tape.gradient(loss, kernel), [F, d, h]).numpy()
    assert all(not g_kernel[f].any() for f in unused)
    assert all(g_kernel[f].any() for f in set(idx.ravel().tolist()))


def test_split_pays_only_for_big_batches_mostly_common():
    from aefs_keras import ops

    def pays(b, fixed, c, min_batch=300):
        return bool(ops.split_pays(tf.constant(_common_selection(b, fixed, c, seed=0)), F, min_batch)[0])

    assert pays(300, (0, 1, 2), 2)          # 3 of 5 fields common
    assert not pays(300, (0, 1), 3)         # 2 of 5
    assert not pays(299, (0, 1, 2), 2)      # too few rows
    assert not pays(300, tuple(range(F)), 0)  # every field: the dense layer is the same product
    assert pays(1, (0, 1, 2), 2, min_batch=0) and not pays(0, (0, 1, 2), 2, min_batch=0)
    # Rows enough for the work per field slot (rows x d x h); more without a backward pass.
    assert ops.split_min_batch(64, 400, training=True) == ops.SPLIT_MIN_BATCH == 512
    assert ops.split_min_batch(32, 64, training=True) == 1024   # 2^21 / (32 x 64)
    assert ops.split_min_batch(64, 400, training=False) == 512  # 2^23 / 25,600 = 328 < 512
    assert ops.split_min_batch(32, 400, training=False) == 656  # 2^23 / 12,800, rounded up
    assert ops.split_min_batch(32, 64, training=False) == 4096


def test_small_first_layers_get_no_split_in_their_graph():
    """A layer whose split would pay only beyond `SPLIT_MIN_BATCH` rows
    traces the dense product alone (no per-field ops in every step's graph)."""
    from aefs_keras import ops

    def op_types(d, h):
        fn = tf.function(lambda rows, idx, kernel: ops.kept_fields_matmul(rows, idx, kernel, F, training=True))
        graph = fn.get_concrete_function(tf.TensorSpec([None, 3, d]), tf.TensorSpec([None, 3], tf.int32),
                                         tf.TensorSpec([F * d, h])).graph
        return {op.type for op in graph.get_operations()}

    assert ops.split_min_batch(8, 16, training=True) > ops.SPLIT_MIN_BATCH
    assert not {"If", "StatelessIf"} & op_types(8, 16)
    # The accuracy grid's first layer: level in a whole step, so not built.
    assert ops.split_min_batch(32, 64, training=True) > ops.SPLIT_MIN_BATCH
    assert not {"If", "StatelessIf"} & op_types(32, 64)
    assert ops.split_min_batch(64, 400, training=True) <= ops.SPLIT_MIN_BATCH
    assert {"If", "StatelessIf"} & op_types(64, 400)
    assert {"If", "StatelessIf"} & op_types(32, 400)


@pytest.mark.parametrize("backbone", ["dnn", "deepfm", "wide_deep"])
def test_split_first_layer_in_the_mixed_model_equals_the_scattered_form(monkeypatch, backbone):
    from aefs_keras import ops
    from aefs_keras.layers import mlp

    monkeypatch.setattr(ops, "SPLIT_MIN_BATCH", 0)
    monkeypatch.setattr(ops, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(ops, "SPLIT_MIN_WORK_TRAINING", 0)
    monkeypatch.setattr(mlp, "FOLD_MIN_BATCH", 0)
    fast, ref = _mixed_pair(backbone, "all", keep_share=0.67)  # 2 of k = 3 fields fixed: the split pays
    assert fast.get_layer("selector").fixed_field_positions() == [1, 2]
    x, y = _x()
    np.testing.assert_allclose(_main(fast(x, training=False)), _main(ref(x, training=False)), atol=1e-5)
    lf, gf = _grads_by_path(fast, x, y)
    lr, gr = _grads_by_path(ref, x, y)
    np.testing.assert_allclose(lf, lr, rtol=1e-5)
    assert gf.keys() == gr.keys()
    _assert_same_grads([gf[k] for k in sorted(gf)], [gr[k] for k in sorted(gf)])


def test_fit_on_a_dataset_through_the_split(monkeypatch):
    """`model.fit` on a tf.data dataset nests the split's `tf.cond` in the
    fill's; the custom gradients must read only their branch's tensors
    (this raised an AssertionError in cond_v2's gradient before)."""
    from aefs_keras import ops
    from aefs_keras.layers import mlp

    monkeypatch.setattr(ops, "SPLIT_MIN_BATCH", 0)
    monkeypatch.setattr(ops, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(ops, "SPLIT_MIN_WORK_TRAINING", 0)
    monkeypatch.setattr(mlp, "FOLD_MIN_BATCH", 0)
    fast, _ = _mixed_pair("deepfm", "all", keep_share=0.67)
    ak.default_compile(fast, jit_compile=False)
    x, y = _x(96)
    before = [w.copy() for w in fast.get_layer("backbone").get_weights()]
    history = fast.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert any(not np.array_equal(a, b) for a, b in zip(before, fast.get_layer("backbone").get_weights()))
