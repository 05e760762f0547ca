import keras
import numpy as np
import pytest
import tensorflow as tf

from aefs_keras import layers as L
from aefs_keras.checks import resolve_k
from aefs_keras.experimental import ExploringSelector, StraightThroughOnes
from aefs_keras.ops import hard_top_k, scatter_fields


def test_hard_top_k_matches_numpy():
    rng = np.random.default_rng(0)
    scores = rng.random((5, 7)).astype("float32")
    idx, w, mask = hard_top_k(tf.constant(scores), 3)
    for b in range(5):
        top = np.sort(np.argsort(-scores[b])[:3])
        assert idx[b].numpy().tolist() == top.tolist()
        np.testing.assert_allclose(w[b], scores[b, top] / scores[b, top].sum(), rtol=1e-6)
        expect = np.zeros(7)
        expect[top] = scores[b, top] / scores[b, top].sum()
        np.testing.assert_allclose(mask[b], expect, rtol=1e-6)
    _, raw, _ = hard_top_k(tf.constant(scores), 3, reweight=False)
    np.testing.assert_allclose(raw.numpy().sum(1), np.sort(scores, 1)[:, -3:].sum(1), rtol=1e-6)


def test_top_k_gradient_reaches_only_kept_scores():
    scores = tf.Variable([[0.1, 0.5, 0.2, 0.9]])
    with tf.GradientTape() as tape:
        _, w, _ = hard_top_k(scores, 2, reweight=False)
        loss = tf.reduce_sum(w * tf.constant([[1.0, 2.0]]))
    g = tape.gradient(loss, scores).numpy()
    assert g.tolist() == [[0.0, 1.0, 0.0, 2.0]]


def test_scatter_fields():
    v = tf.constant([[[1.0], [2.0]]])
    out = scatter_fields(v, tf.constant([[0, 2]]), 3).numpy()
    assert out[..., 0].tolist() == [[1.0, 0.0, 2.0]]


@pytest.mark.parametrize("k, ratio, word", [
    (0, None, "k=0"), (5, None, "k=5"), (None, 1.5, "k_ratio=1.5"), (2, 0.5, "not both"),
])
def test_resolve_k_errors(k, ratio, word):
    with pytest.raises(ValueError, match=word):
        resolve_k(4, k, ratio)
    assert resolve_k(39, None, None) == 19


def test_auxiliary_selector_outputs():
    sel = L.AuxiliarySelector([5] * 6, k=3, d_aux=2, weight_scale="sum")
    ids = np.random.default_rng(0).integers(0, 5, size=(8, 6))
    out = sel(ids, training=False)
    idx = out["indices"].numpy()
    assert idx.shape == (8, 3) and (np.diff(idx, axis=1) > 0).all()
    np.testing.assert_allclose(out["weights"].numpy().sum(1), 1.0, rtol=1e-5)
    mask = out["mask"].numpy()
    assert ((mask > 0).sum(1) == 3).all()
    for b in range(8):
        assert np.nonzero(mask[b])[0].tolist() == idx[b].tolist()
    # The kept fields are the highest-scoring ones.
    scores = out["scores"].numpy()
    for b in range(8):
        assert scores[b, idx[b]].min() >= np.delete(scores[b], idx[b]).max()
    assert out["embeddings"].shape == (8, 6, 2)
    assert sel.activated_parameters() == 12
    mean_one = L.AuxiliarySelector([5] * 6, k=3, d_aux=2, weight_scale="mean")
    mean_out = mean_one(ids)
    np.testing.assert_allclose(mean_out["weights"].numpy().sum(1), 3.0, rtol=1e-5)
    # The mask (auxiliary head, alignment) keeps the paper's weights.
    np.testing.assert_allclose(mean_out["mask"].numpy().sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="weight_scale='max'"):
        L.AuxiliarySelector([5] * 6, k=3, weight_scale="max")


def test_soft_gradient_reaches_dropped_fields_only_when_asked():
    ids = np.random.default_rng(1).integers(0, 5, size=(16, 6))
    grads = {}
    for soft in (False, True):
        keras.utils.set_random_seed(0)
        sel = ExploringSelector([5] * 6, k=3, d_aux=2, soft_gradient=soft)
        sel(ids, training=False)
        with tf.GradientTape() as tape:
            out = sel(ids, training=False)
            dropped = tf.cast(tf.equal(out["mask"], 0.0), "float32")
            loss = tf.reduce_sum(out["mask"] * dropped)  # depends on dropped fields only
        grads[soft] = [np.asarray(tf.convert_to_tensor(g)) for g in
                       tape.gradient(loss, sel.trainable_variables) if g is not None]
        masks = out["mask"].numpy()
        if soft:  # forward pass unchanged
            np.testing.assert_allclose(masks, plain_mask, rtol=1e-6)
        plain_mask = masks
    assert not any(np.any(g) for g in grads[False])
    assert any(np.any(g) for g in grads[True])


def test_exploration_samples_in_training_only():
    ids = np.random.default_rng(2).integers(0, 5, size=(64, 6))
    keras.utils.set_random_seed(0)
    sel = ExploringSelector([5] * 6, k=3, exploration=1.0)
    plain = sel(ids, training=False)
    scores = plain["scores"].numpy()
    top = np.sort(np.argsort(-scores, axis=1)[:, :3], axis=1)
    np.testing.assert_array_equal(plain["indices"].numpy(), top)  # inference: exact top-k
    drawn = sel(ids, training=True)
    assert (drawn["indices"].numpy() != top).any()  # training: sampled
    idx = drawn["indices"].numpy()
    w = np.take_along_axis(drawn["scores"].numpy(), idx, 1)
    np.testing.assert_allclose(drawn["weights"].numpy(), 3 * w / w.sum(1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="exploration=-1"):
        ExploringSelector([5] * 6, k=3, exploration=-1)


def test_always_keep_fields_are_on_every_row_and_the_rest_by_score():
    ids = np.random.default_rng(3).integers(0, 5, size=(64, 6))
    keras.utils.set_random_seed(0)
    sel = ExploringSelector([5] * 6, k=3, always_keep=[4, 1])
    for training in (False, True):
        out = sel(ids, training=training)
        scores, idx = out["scores"].numpy(), out["indices"].numpy()
        # Fields 1 and 4 in every row; the third is the best-scoring of the others.
        rest = np.where(np.isin(np.arange(6), [1, 4]), -np.inf, scores).argmax(1)
        np.testing.assert_array_equal(idx, np.sort(np.stack([np.full(64, 1), np.full(64, 4), rest], 1), 1))
        w = np.take_along_axis(scores, idx, 1)  # the weights are still the scores
        np.testing.assert_allclose(out["weights"].numpy(), 3 * w / w.sum(1, keepdims=True), rtol=1e-5)
    assert ExploringSelector.from_config(sel.get_config()).always_keep == (4, 1)
    with pytest.raises(ValueError, match="always_keep"):
        ExploringSelector([5] * 6, k=2, always_keep=[0, 1, 2])


def test_warmup_is_soft_over_all_fields_then_hard():
    ids = np.random.default_rng(3).integers(0, 5, size=(8, 6))
    sel = L.AuxiliarySelector([5] * 6, k=3, warmup_steps=2)
    served = sel(ids, training=False)  # inference: hard, no step counted
    assert float(sel.step.numpy()) == 0.0 and not served["warming"].numpy().any()
    assert ((served["mask"].numpy() > 0).sum(1) == 3).all()
    for step in range(3):
        out = sel(ids, training=True)
        scores = out["scores"].numpy()
        if step < 2:  # every field at its soft score
            assert out["warming"].numpy().tolist() == [1.0] * 8
            np.testing.assert_allclose(out["mask"].numpy(), scores / scores.sum(1, keepdims=True),
                                       rtol=1e-5)
        else:
            assert not out["warming"].numpy().any()
            assert ((out["mask"].numpy() > 0).sum(1) == 3).all()
        assert out["indices"].shape == (8, 3)  # the top-k is still reported
    assert float(sel.step.numpy()) == 3.0
    assert L.AuxiliarySelector.from_config(sel.get_config()).warmup_steps == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=f"warmup_steps={bad!r}"):
            L.AuxiliarySelector([5] * 6, k=3, warmup_steps=bad)


def test_conditional_embedding_warmup_reads_every_field():
    sizes, ids, idx, w = _conditional_case()
    emb = L.ConditionalEmbedding(sizes, output_dim=2)
    full = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], "float32")
    plain = emb(ids, idx, w).numpy()
    table = emb.embeddings.numpy()
    offsets = np.array([0, 4, 7])
    expect = table[offsets[None] + ids] * full[..., None]
    for warming, rows in ((1.0, [1, 6, 11, 3, 4, 7]), (0.0, [1, 11, 4, 7])):
        flag = np.full((2,), warming, "float32")
        with tf.GradientTape() as tape:
            out = emb(ids, idx, w, full, flag, training=True)
            loss = tf.reduce_sum(out)
        grad = tape.gradient(loss, emb.embeddings)
        assert isinstance(grad, tf.IndexedSlices)
        assert sorted(grad.indices.numpy().tolist()) == sorted(rows)
        np.testing.assert_allclose(out.numpy(), expect if warming else plain, rtol=1e-6)
    # Inference ignores the warm-up inputs.
    np.testing.assert_allclose(emb(ids, idx, w, full, np.ones(2, "float32")).numpy(), plain)
    compact = L.ConditionalEmbedding(sizes, output_dim=2, output_mode="compact")
    with pytest.raises(ValueError, match="output_mode='compact'"):
        compact(ids, idx, w, full, np.ones(2, "float32"))


def test_score_decay_is_l2_on_the_output_layer():
    c = L.SelectionController(3, score_decay=0.1)
    c(np.ones((2, 3, 4), "float32"))
    out = c._out[0]
    expect = 0.1 * (np.sum(out.kernel.numpy() ** 2) + np.sum(out.bias.numpy() ** 2))
    np.testing.assert_allclose(float(sum(c.losses)), expect, rtol=1e-5)
    assert L.SelectionController(3).losses == []
    assert L.SelectionController.from_config(c.get_config()).score_decay == 0.1
    with pytest.raises(ValueError, match="score_decay=-0.1"):
        L.SelectionController(3, score_decay=-0.1)
    with pytest.raises(ValueError, match="output_layer=False"):
        L.SelectionController(3, score_decay=0.1, output_layer=False)


def test_straight_through_ones():
    w = tf.Variable([[0.2, 1.8, 1.0]])
    with tf.GradientTape() as tape:
        out = StraightThroughOnes()(w)
        loss = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0]]))
    assert out.numpy().tolist() == [[1.0, 1.0, 1.0]]
    assert tape.gradient(loss, w).numpy().tolist() == [[1.0, 2.0, 3.0]]
    with tf.GradientTape() as tape:  # gradient=False: plain ones, nothing flows back
        out = StraightThroughOnes(gradient=False)(w)
        loss = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0]]))
    assert out.numpy().tolist() == [[1.0, 1.0, 1.0]] and tape.gradient(loss, w) is None
    assert StraightThroughOnes.from_config(StraightThroughOnes(gradient=False).get_config()).gradient is False


def test_fixed_fields_unscaled_weights_and_gradient():
    from aefs_keras.experimental import FixedFieldsUnscaled

    w = tf.Variable([[0.5, 1.5, 1.0], [2.0, 0.4, 0.6]])
    idx = tf.constant([[0, 2, 3], [1, 2, 4]])
    with tf.GradientTape() as tape:
        out = FixedFieldsUnscaled([2, 4])(w, idx)  # field 2 in both rows, field 4 in the second
        loss = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    np.testing.assert_allclose(out.numpy(), [[0.5, 1.0, 1.0], [2.0, 1.0, 1.0]])
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), [[1.0, 0.0, 3.0], [4.0, 0.0, 0.0]])
    assert FixedFieldsUnscaled.from_config(FixedFieldsUnscaled([2, 4]).get_config()).fields == (2, 4)


def test_selector_argument_errors():
    with pytest.raises(ValueError, match="k=7"):
        L.AuxiliarySelector([3] * 6, k=7)
    with pytest.raises(ValueError, match="controller='nope'"):
        L.AuxiliarySelector([3] * 6, controller="nope")
    with pytest.raises(ValueError, match=r"shape=\(2, 4\)"):
        L.AuxiliarySelector([3] * 6)(np.zeros((2, 4), "int32"))


def _conditional_case():
    """Field sizes, ids (B=2, F=3), kept fields (k=2) and their weights."""
    return ([4, 3, 5], np.array([[1, 2, 4], [3, 0, 0]]), np.array([[0, 2], [1, 2]]),
            np.array([[0.25, 0.75], [0.5, 0.5]], "float32"))


def test_conditional_embedding_reads_and_gradient():
    sizes, ids, idx, w = _conditional_case()
    emb = L.ConditionalEmbedding(sizes, output_dim=2)
    with tf.GradientTape() as tape:
        out = emb(ids, idx, w)
        loss = tf.reduce_sum(out)
    table = emb.embeddings.numpy()
    offsets = [0, 4, 7]
    expect = np.zeros((2, 3, 2), "float32")
    for b in range(2):
        for j, f in enumerate(idx[b]):
            expect[b, f] = table[offsets[f] + ids[b, f]] * w[b, j]
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-6)
    grad = tape.gradient(loss, emb.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    # exactly the B*k selected global rows: (0,f0)->0+1, (0,f2)->7+4, (1,f1)->4+0, (1,f2)->7+0
    assert sorted(grad.indices.numpy().tolist()) == sorted([1, 11, 4, 7])
    dense = tf.convert_to_tensor(grad).numpy()
    untouched = [r for r in range(12) if r not in (1, 11, 4, 7)]
    assert np.all(dense[untouched] == 0)
    compact = L.ConditionalEmbedding(sizes, output_dim=2, output_mode="compact")
    compact.build((None, 3), (None, 2))
    compact.embeddings.assign(table)
    np.testing.assert_allclose(compact(ids, idx, w).numpy()[0, 1], expect[0, 2], rtol=1e-6)
    assert emb.activated_parameters() == 4


def test_alignment_loss_exact_and_stop_gradient():
    layer = L.AlignmentLoss(embedding_weight=0.5, prediction_weight=2.0)
    aux = tf.constant(np.ones((1, 2, 1), "float32"))
    main = tf.Variable(np.array([[[3.0, 1.0], [0.0, 0.0]]], "float32"))
    mask = tf.constant([[1.0, 0.0]])
    pa, pm = tf.constant([[0.2]]), tf.Variable([[0.6]])
    layer.build({"aux_embeddings": (1, 2, 1), "main_embeddings": (1, 2, 2), "mask": (1, 2),
                 "aux_probability": (1, 1), "main_probability": (1, 1)})
    layer._projection.kernel.assign([[1.0, 2.0]])
    layer._projection.bias.assign([0.0, 0.0])
    with tf.GradientTape() as tape:
        out = layer({"aux_embeddings": aux, "main_embeddings": main, "mask": mask,
                     "aux_probability": pa, "main_probability": pm})
        total = tf.add_n(layer.losses)
    # projected*mask = [[1,2],[0,0]] vs [[3,1],[0,0]]: mse = (4 + 1) / 4
    emb_mse, pred_mse = 5.0 / 4.0, 0.16
    np.testing.assert_allclose(total.numpy(), 0.5 * emb_mse + 2.0 * pred_mse, rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), [[0.6]], rtol=1e-6)
    g_main, g_pm = tape.gradient(total, [main, pm])
    assert g_main is None and g_pm is None  # the main model is the teacher
    with pytest.raises(ValueError, match="kind='l1'"):
        L.AlignmentLoss(kind="l1")


def test_alignment_weight_zero_drops_its_term():
    """A zero weight skips its term: the two one-term layers' losses add up to
    the two-term layer's, with the same gradients, and nothing is computed,
    tracked or trained for the skipped term."""
    shapes = {"aux_embeddings": (1, 2, 1), "main_embeddings": (1, 2, 2), "mask": (1, 2),
              "aux_probability": (1, 1), "main_probability": (1, 1)}
    aux, pa = tf.Variable(np.ones((1, 2, 1), "float32")), tf.Variable([[0.2]])
    inputs = {"aux_embeddings": aux, "main_embeddings": tf.constant([[[3.0, 1.0], [0.0, 0.0]]]),
              "mask": tf.constant([[1.0, 0.0]]), "aux_probability": pa, "main_probability": tf.constant([[0.6]])}
    totals, grads, layers = [], [], []
    for weights in ((0.5, 2.0), (0.5, 0.0), (0.0, 2.0), (0.0, 0.0)):
        layer = L.AlignmentLoss(*weights)
        layer.build(shapes)
        layer._projection.kernel.assign([[1.0, 2.0]])
        layer._projection.bias.assign([0.0, 0.0])
        with tf.GradientTape() as tape:
            out = layer(inputs)
            total = tf.add_n(layer.losses) if layer.losses else tf.constant(0.0)
        np.testing.assert_allclose(out.numpy(), [[0.6]])
        totals.append(float(total))
        grads.append(tape.gradient(total, [aux, pa, layer._projection.kernel]))
        layers.append(layer)
    np.testing.assert_allclose(totals, [0.5 * 1.25 + 2.0 * 0.16, 0.5 * 1.25, 2.0 * 0.16, 0.0], rtol=1e-6)
    both, emb_only, pred_only, none = grads
    np.testing.assert_allclose(emb_only[0].numpy(), both[0].numpy(), rtol=1e-6)  # the aux embeddings
    np.testing.assert_allclose(emb_only[2].numpy(), both[2].numpy(), rtol=1e-6)  # the projection
    np.testing.assert_allclose(pred_only[1].numpy(), both[1].numpy(), rtol=1e-6)  # the aux probability
    np.testing.assert_allclose(pred_only[1].numpy(), [[2.0 * 2 * (0.2 - 0.6)]], rtol=1e-6)
    assert emb_only[1] is None and pred_only[0] is None and pred_only[2] is None
    assert layers[3].losses == [] and all(g is None for g in none)
    names = [[m.name for m in layer.metrics] for layer in layers]
    assert names == [["embedding_alignment_loss", "prediction_alignment_loss"], ["embedding_alignment_loss"],
                     ["prediction_alignment_loss"], []]
    # The unused projection is kept (one saved layout) but frozen.
    assert [len(layer.trainable_weights) for layer in layers] == [2, 2, 0, 0]
    assert [len(layer.weights) for layer in layers] == [2, 2, 2, 2]


def test_fm_exact():
    e = np.array([[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]], "float32")
    # 1*3 + 2*4; the squares come from a norm (sqrt, then squared): exact to float rounding
    np.testing.assert_allclose(L.FactorizationMachine()(e).numpy(), [[11.0]], rtol=1e-6)


def test_fm_output_and_gradient_by_numpy():
    # FM = sum over field pairs i < j of <e_i, e_j>; its gradient at e_f is
    # the sum of the other fields' vectors. `field_sums` states that gradient
    # by hand, so check it against numpy (zero rows: unselected fields).
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 5, 4)).astype("float32")
    e[1, 2] = 0.0
    w = rng.normal(size=(3, 1)).astype("float32")
    x = tf.constant(e)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = L.FactorizationMachine()(x)
        y = tf.reduce_sum(out * w)
    pairs = np.array([[sum(e[b, i] @ e[b, j] for i in range(5) for j in range(i + 1, 5))] for b in range(3)])
    np.testing.assert_allclose(out.numpy(), pairs, rtol=1e-5, atol=1e-5)
    total = e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), w[:, :, None] * (total - e), rtol=1e-5, atol=1e-6)
    # One of the two sums used alone: the other's gradient counts as zero.
    from aefs_keras.ops import field_sums
    with tf.GradientTape() as tape:
        tape.watch(x)
        squares = field_sums(x)[1]
    np.testing.assert_allclose(squares.numpy(), (e ** 2).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(squares, x).numpy(), 2 * e, rtol=1e-6)


def test_mvfs_temperature_grows_with_training_steps():
    c = L.SelectionController(4, controller="mvfs", temperature_step=0.5, max_temperature=2.0)
    x = np.random.rand(3, 4, 2).astype("float32")
    s = c(x, training=True)
    assert s.shape == (3, 4) and float(tf.reduce_min(s)) >= 0.0
    assert float(c.temperature()) == 1.5
    c(x, training=True)
    c(x, training=True)
    assert float(c.temperature()) == 2.0  # capped
    c(x, training=False)
    assert float(c.step.numpy()) == 3.0


LAYER_CASES = [
    (lambda: L.FieldEmbedding([3, 4], 5), lambda: (np.array([[1, 2]]),)),
    (lambda: L.AuxiliarySelector([3, 4, 5], k=2, d_aux=3), lambda: (np.array([[1, 2, 0]]),)),
    (lambda: ExploringSelector([3, 4, 5], k=2, soft_gradient=True), lambda: (np.array([[1, 2, 0]]),)),
    (lambda: ExploringSelector([3, 4, 5], k=2, always_keep=[1]), lambda: (np.array([[1, 2, 0]]),)),
    (lambda: L.ConditionalEmbedding([3, 4, 5], 6), lambda: (np.array([[1, 2, 0]]), np.array([[0, 2]]))),
    (lambda: L.DeepFM(hidden_units=[4]), lambda: (np.ones((2, 3, 4), "float32"),)),
    (lambda: L.DCN(num_cross_layers=2, structure="parallel", projection_dim=2, hidden_units=[4]),
     lambda: (np.random.rand(2, 3, 4).astype("float32"),)),
    (lambda: L.WideDeep(hidden_units=[4]), lambda: (np.ones((2, 3, 4), "float32"),)),
    (lambda: L.DNN(hidden_units=[4], batch_norm=True), lambda: (np.ones((2, 3, 4), "float32"),)),
]


@pytest.mark.parametrize("make, args", LAYER_CASES)
def test_layer_config_round_trip(make, args):
    layer = make()
    inputs = args()
    out = layer(*inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    a = out["mask"] if isinstance(out, dict) else out
    b = clone(*inputs)
    b = b["mask"] if isinstance(b, dict) else b
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert keras.saving.get_registered_name(layer.__class__).startswith("aefs_keras>")


@pytest.mark.parametrize("kind", ["mse", "huber", "kl"])
def test_alignment_compact_equals_scattered(kind):
    rng = np.random.default_rng(1)
    aux = rng.random((2, 4, 3)).astype("float32")
    idx = np.array([[0, 3], [1, 2]])
    w = rng.random((2, 2)).astype("float32")
    compact_main = rng.random((2, 2, 5)).astype("float32")
    mask = scatter_fields(tf.constant(w), idx, 4)
    scattered_main = scatter_fields(tf.constant(compact_main), idx, 4)
    probs = {"aux_probability": np.full((2, 1), 0.3, "float32"),
             "main_probability": np.full((2, 1), 0.3, "float32")}
    a = L.AlignmentLoss(prediction_weight=0.0, kind=kind)
    a({"aux_embeddings": aux, "main_embeddings": scattered_main, "mask": mask, **probs})
    b = L.AlignmentLoss(prediction_weight=0.0, kind=kind)
    b({"aux_embeddings": aux, "main_embeddings": compact_main, "mask": mask, "indices": idx, **probs})
    b._projection.set_weights(a._projection.get_weights())
    a({"aux_embeddings": aux, "main_embeddings": scattered_main, "mask": mask, **probs})
    b({"aux_embeddings": aux, "main_embeddings": compact_main, "mask": mask, "indices": idx, **probs})
    # The unkept fields add exactly 0, so the compact loss is the scattered one
    # (up to float32 rounding of two summation orders; a dropped term would
    # change it by far more).
    np.testing.assert_allclose(float(a.losses[-1]), float(b.losses[-1]), rtol=1e-4)


def test_field_prior_is_the_controllers_initial_bias():
    prior = [2.0, -1.0, 0.5]
    sel = L.AuxiliarySelector([4, 4, 4], k=1, field_prior=prior)
    sel(np.zeros((2, 3), "int32"))
    np.testing.assert_allclose(sel._controller._out[0].bias.numpy(), prior)
    assert L.AuxiliarySelector.from_config(sel.get_config())._controller.field_prior == prior
    mvfs = L.SelectionController(3, controller="mvfs", field_prior=prior)
    mvfs(np.ones((2, 3, 4), "float32"))
    for out in mvfs._out:
        np.testing.assert_allclose(out.bias.numpy(), prior)
    with pytest.raises(ValueError, match=r"field_prior=\[1.0, 2.0\]"):
        L.AuxiliarySelector([4, 4, 4], k=1, field_prior=[1.0, 2.0])
    with pytest.raises(ValueError, match="field_prior="):
        L.SelectionController(3, field_prior=[0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="output_layer=False"):
        L.SelectionController(3, field_prior=prior, output_layer=False)
