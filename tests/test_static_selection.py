"""The static selections: `StaticTopK` and `MixedDimension`, and the
mixed-width path they use (`FieldEmbedding(output_mode="groups")`, backbones
with `supports_mixed_widths`)."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras import layers as L

BACKBONES = ["dnn", "deepfm", "dcn", "wide_deep", "mlcc", "mc_mlcc"]
F = 6


@pytest.fixture(scope="module")
def schema():
    return ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=20) for i in range(F)])


def _x(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return {f"c{i}": rng.integers(0, 20, n) for i in range(F)}


def _move(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        w = keras.ops.convert_to_numpy(v)
        if w.dtype.kind == "f":
            v.assign((w + rng.normal(0.0, 0.1, w.shape)).astype(w.dtype))


IMPORTANCE = [0.0, 0.3, 0.1, 0.2, 0.0, 0.05]  # top 3: fields 1, 2, 3


def test_groups_mode_reads_each_field_at_its_width():
    emb = L.FieldEmbedding([5, 6, 7, 8], 8, field_dims=[8, 2, 0, 8], output_mode="groups")
    ids = np.array([[1, 2, 3, 4], [0, 5, 6, 7]])
    groups = emb(ids)
    assert [tuple(g.shape) for g in groups] == [(2, 1, 2), (2, 2, 8)]
    assert emb.group_fields == [[1], [0, 3]]
    wide = emb.embeddings.numpy()  # fields 0 and 3: rows 0-4, 5-12
    narrow = emb._width_tables["2"].embeddings.numpy()  # field 1 only
    np.testing.assert_array_equal(groups[1].numpy(), np.stack([wide[[1, 5 + 4]], wide[[0, 5 + 7]]]))
    np.testing.assert_array_equal(groups[0].numpy()[:, 0], narrow[[2, 5]])
    assert emb.activated_parameters() == 18  # field 2 (width 0) is not read
    assert not emb._projections  # no projection in groups mode


def test_fields_mode_projects_and_drops_width_zero():
    emb = L.FieldEmbedding([5, 6, 7, 8], 4, field_dims=[4, 2, 0, 2])
    ids = np.array([[1, 2, 3, 4], [0, 5, 6, 7]])
    out = emb(ids).numpy()
    assert out.shape == (2, 3, 4)  # fields 0, 1, 3 in schema order
    wide = emb.embeddings.numpy()
    narrow = emb._width_tables["2"].embeddings.numpy()  # fields 1 (rows 0-5) and 3 (rows 6-13)
    p1, p3 = emb._projections["1"].numpy(), emb._projections["3"].numpy()
    np.testing.assert_allclose(out[:, 0], wide[[1, 0]], rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], narrow[[2, 5]] @ p1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, 2], narrow[[6 + 4, 6 + 7]] @ p3, rtol=1e-5, atol=1e-6)


def test_groups_gradient_reaches_only_rows_read():
    emb = L.FieldEmbedding([5, 6, 7], 4, field_dims=[4, 0, 2], output_mode="groups")
    ids = np.array([[1, 2, 3]])
    emb(ids)
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(g) for g in emb(ids)])
    grads = tape.gradient(loss, emb.trainable_weights)
    rows = sorted(tf.convert_to_tensor(g).numpy().any(axis=1).nonzero()[0].tolist() for g in grads)
    assert rows == [[1], [3]]  # field 0's row 1 in the wide table, field 2's row 3 in the narrow one


def test_mixed_width_mlp_and_fm_equal_numpy():
    rng = np.random.default_rng(1)
    narrow = rng.normal(size=(3, 2, 2)).astype("float32")
    wide = rng.normal(size=(3, 3, 4)).astype("float32")
    net = L.DeepFM([5])
    logit = net([narrow, wide]).numpy()
    _move(net)
    logit = net([narrow, wide]).numpy()
    kernel, bias = net.mlp.blocks[0].kernel.numpy(), net.mlp.blocks[0].bias.numpy()
    flat = np.concatenate([narrow.reshape(3, -1), wide.reshape(3, -1)], 1)
    hidden = np.maximum(flat @ kernel + bias, 0)
    deep = hidden @ net.head.kernel.numpy() + net.head.bias.numpy()
    p = net.fm.projections[0].numpy()  # (2 fields, 2, 4)
    vectors = np.concatenate([np.einsum("bfw,fwd->bfd", narrow, p), wide], 1)
    fm = 0.5 * ((vectors.sum(1) ** 2).sum(-1) - (vectors ** 2).sum((1, 2)))
    np.testing.assert_allclose(logit, deep + fm[:, None], rtol=1e-4, atol=1e-5)
    assert net.fm.projections[1] is None


def test_backbone_without_mixed_widths_says_so():
    with pytest.raises(ValueError, match="supports_mixed_widths"):
        L.MLCCNet(hidden_units=[4])([np.ones((2, 2, 2), "float32"), np.ones((2, 3, 4), "float32")])


@pytest.mark.parametrize("backbone, method", list(itertools.product(BACKBONES, ["static", "mixed_dimension"])))
def test_round_trip_and_export(schema, tmp_path, backbone, method):
    model = ak.build_model(schema, backbone, method, k=3, importance=IMPORTANCE, d_main=8, hidden_units=[8])
    _move(model)
    x = _x()
    before = model.predict_step((x,)).numpy()
    assert before.shape == (40, 1) and before.std() > 0
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict_step((x,)).numpy(), before)
    linear = 1 if getattr(ak.BACKBONES[backbone], "uses_linear", False) else 0
    expect = 3 * 8 + (3 * 4 if method == "mixed_dimension" else 0) + linear * (F if method == "mixed_dimension" else 3)
    assert model.activated_embedding_parameters() == expect
    if backbone in ("deepfm", "mlcc"):  # export: one backbone that takes groups, one that is given projections
        path = ak.export(model, str(tmp_path / "serving"), "m")
        served = tf.saved_model.load(str(path)).signatures["serving_default"]
        out = served(**{k: tf.constant(v) for k, v in x.items()})["probability"].numpy()
        np.testing.assert_allclose(out, before, rtol=1e-5, atol=1e-6)


def test_static_top_k_ignores_the_other_fields(schema):
    model = ak.build_model(schema, "deepfm", ak.StaticTopK(fields=["c1", "c4"]), d_main=8, hidden_units=[8])
    _move(model)
    x = _x()
    y = dict(x, c0=(x["c0"] + 1) % 20, c2=(x["c2"] + 3) % 20)
    np.testing.assert_array_equal(model.predict_step((x,)).numpy(), model.predict_step((y,)).numpy())
    z = dict(x, c4=(x["c4"] + 1) % 20)
    assert not np.allclose(model.predict_step((x,)).numpy(), model.predict_step((z,)).numpy())


def test_mixed_dimension_learns_the_planted_fields(schema):
    # The label is a function of c1 and c2 alone; with them wide the model learns it.
    rng = np.random.default_rng(0)
    x = _x(6000, seed=2)
    logit = np.where(x["c1"] % 2 == 0, 2.0, -2.0) + np.where(x["c2"] < 10, 1.5, -1.5)
    y = (rng.random(6000) < 1 / (1 + np.exp(-logit))).astype("float32")
    keras.utils.set_random_seed(0)
    model = ak.default_compile(ak.build_model(schema, "deepfm", ak.MixedDimension(fields=["c1", "c2"]),
                                              d_main=8, hidden_units=[16]), learning_rate=1e-2)
    model.fit(x, y, batch_size=256, epochs=4, verbose=0)
    p = model.predict(x, verbose=0).ravel()
    best = 1 / (1 + np.exp(-logit))
    assert ak.metrics.auc_score(y, p) > ak.metrics.auc_score(y, best) - 0.01


@pytest.mark.parametrize("options, word", [
    ({"k": 2}, "needs the wide fields"),
    ({"fields": ["c1"], "importance": IMPORTANCE}, "not both"),
    ({"fields": ["nope"]}, "'nope' is not a field"),
    ({"fields": [1, 1]}, "distinct"),
    ({"fields": ["c1", "c2"], "k": 3}, "`k`"),
    ({"importance": [1.0, 2.0]}, "one number per field"),
    ({"d_small": 0, "k": 2, "importance": IMPORTANCE}, "d_small"),
    ({"controller": "mlp"}, "does not apply"),
])
def test_argument_errors_name_the_argument(schema, options, word):
    with pytest.raises(ValueError, match=word):
        ak.build_model(schema, "deepfm", "mixed_dimension", **options)


def test_static_has_no_narrow_width(schema):
    with pytest.raises(ValueError, match="d_small"):
        ak.build_model(schema, "deepfm", "static", d_small=4, k=2, importance=IMPORTANCE)
    assert ak.StaticTopK(k=2).kind == "static" and "d_small" not in repr(ak.StaticTopK(k=2))
