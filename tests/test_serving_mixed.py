"""The specialised served graph of AEFS at mixed resolution
(`aefs_keras.mixed_serving`): the same probabilities (1e-5) and the same
selected fields as the Keras model, on every backbone it takes, with plain
and dict-valued (multi-valued, shared, dense numeric) ids, with and without
per-row choices; and the models it does not take fall back."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras.mixed_serving import MixedServing, mixed_serving_plan
from aefs_keras.serving import served_graph

F = 8


def _schema():
    return ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=30 + i) for i in range(F - 1)]
                     + [ak.Numeric("n", boundaries=[0.0, 1.0, 2.0])])


def _features(n, seed=0, schema=None):
    rng = np.random.default_rng(seed)
    x = {f"c{i}": rng.integers(0, 40 + i, n).astype("int64") for i in range(F - 1)}  # some unseen ids
    x["n"] = rng.normal(1.0, 1.0, n).astype("float32")
    return x


def _randomize(model, seed=1):
    """Every weight random (the fill and its projection start at zeros, the
    batch norm at identity): a check on trained-looking values everywhere."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.dtype not in ("float32",):
            continue
        value = rng.normal(0.0, 0.3, w.shape).astype("float32")
        if "variance" in w.path:
            value = rng.uniform(0.5, 2.0, w.shape).astype("float32")
        if w.path.endswith("selector/fixed"):
            continue
        w.assign(value)


def _check_same(model, x, plan=None):
    plan = plan or mixed_serving_plan(model)[0]
    assert isinstance(plan, MixedServing)
    xb = {k: tf.constant(v) for k, v in x.items()}
    want = ak.inference_model(model)(xb, training=False)
    got = plan(xb)
    np.testing.assert_allclose(got["probability"].numpy(), want["probability"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["selected_fields"].numpy(), want["selected_fields"].numpy())
    np.testing.assert_array_equal(got["selected_field_names"].numpy(), want["selected_field_names"].numpy())
    return got


@pytest.mark.parametrize("backbone", ["deepfm", "dnn", "wide_deep"])
@pytest.mark.parametrize("k, keep_share", [(4, 0.75), (6, 0.5), (3, 1.0)])
def test_same_outputs_as_the_keras_model(backbone, k, keep_share):
    model = ak.build_model(_schema(), backbone, ak.AEFS(k=k, keep_share=keep_share, importance=list(range(F))),
                           d_main=8, hidden_units=[16, 8])
    _randomize(model)
    plan = mixed_serving_plan(model)[0]
    assert plan.fixed == sorted(range(F))[::-1][:round(keep_share * k)][::-1]  # the most important
    assert plan.r == k - len(plan.fixed) and plan.merged
    for n in (1, 64, 133):
        got = _check_same(model, _features(n, seed=n), plan)
        assert got["probability"].shape == (n, 1)
        # The fixed fields are in every row's selection.
        assert set(plan.fixed) <= set(got["selected_fields"].numpy()[0].tolist())


@pytest.mark.parametrize("options, folded", [({}, True), ({"output_layer": False}, True),
                                             ({"controller": "mvfs"}, False)])
def test_controller_folded_or_called(options, folded):
    # Folded: batch norm into the first Dense, the candidates' columns only,
    # top r on logits (no softmax). MvFS's mix is not monotone: called as is.
    model = ak.build_model(_schema(), "deepfm", ak.AEFS(k=5, keep_share=0.4, importance=list(range(F)), **options),
                           d_main=8, hidden_units=[16, 8])
    _randomize(model)
    plan = mixed_serving_plan(model)[0]
    assert plan.folded is folded and plan.r == 3
    for n in (1, 300):
        _check_same(model, _features(n, seed=n + 10), plan)


def test_fields_ranked_in_fit_then_specialised_and_exported(tmp_path):
    schema = _schema()
    model = ak.default_compile(ak.build_model(schema, "deepfm", "aefs", k=4, d_main=8, hidden_units=[16]))
    assert mixed_serving_plan(model)[1] == "no fields fixed on every row yet (ranked during fit)"
    x = _features(512, seed=3)
    y = (np.random.default_rng(0).random(512) < 0.3).astype("float32")
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    _randomize(model)
    assert len(ak.serving.selector_of(model).fixed_field_positions()) == 3
    _check_same(model, _features(32, seed=4))
    # The SavedModel serves the specialised graph, with the same answers as the plain export.
    fast = tf.saved_model.load(ak.export(model, str(tmp_path), "m")).signatures["serving_default"]
    plain = tf.saved_model.load(ak.export(model, str(tmp_path), "p", specialize=False)).signatures["serving_default"]
    xb = {k: tf.constant(v) for k, v in _features(16, seed=5).items()}
    a, b = fast(**xb), plain(**xb)
    assert sorted(a) == sorted(b) == ["probability", "selected_field_names", "selected_fields"]
    np.testing.assert_allclose(a["probability"].numpy(), b["probability"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(a["selected_fields"].numpy(), b["selected_fields"].numpy())
    ops = ak.saved_model_ops(ak.export(model, str(tmp_path), "m2"))
    assert {"DynamicPartition", "DynamicStitch"} <= ops  # the grouped chosen fields


def test_dict_ids_multi_valued_shared_and_dense_numeric():
    from test_feature_kinds import _features as kinds_features, _schema as kinds_schema

    model = ak.build_model(kinds_schema(), "deepfm", ak.AEFS(k=4, keep_share=0.5, importance=[5, 4, 3, 2, 1, 0]),
                           d_main=8, hidden_units=[16])
    _randomize(model)
    plan = mixed_serving_plan(model)[0]
    assert not plan.merged  # dict ids: the layers' own lookups
    _check_same(model, {k: v.numpy() for k, v in kinds_features().items()}, plan)


def test_small_tables_unmerged_above_the_size_cap(monkeypatch):
    import aefs_keras.mixed_serving as mixed

    model = ak.build_model(_schema(), "deepfm", ak.AEFS(k=4, importance=list(range(F))), d_main=8,
                           hidden_units=[16])
    _randomize(model)
    monkeypatch.setattr(mixed, "MERGE_MAX_BYTES", 100)
    plan = mixed_serving_plan(model)[0]
    assert not plan.merged
    _check_same(model, _features(40, seed=7), plan)


@pytest.mark.parametrize("build, reason", [
    (lambda s: ak.build_model(s, "deepfm", ak.AEFS(k=4, resolution="single"), d_main=8, hidden_units=[8]),
     "not AEFS at mixed resolution"),
    (lambda s: ak.build_model(s, "dcn", ak.AEFS(k=4, importance=list(range(F))), d_main=8, hidden_units=[8]),
     "backbone DCN"),
    (lambda s: ak.build_model(s, "deepfm", None, d_main=8, hidden_units=[8]), "no AEFS selector"),
    (lambda s: ak.build_model(s, "deepfm", ak.AEFS(k=4, importance=list(range(F)), warmup_steps=5), d_main=8,
                              hidden_units=[8]), "scaled"),
])
def test_other_models_fall_back_to_their_own_graph(build, reason):
    model = build(_schema())
    plan, why = mixed_serving_plan(model)
    assert plan is None and reason in why
    served, why_served = served_graph(model)
    assert isinstance(served, keras.Model) and why_served == why


def test_export_command_says_which_graph_and_takes_keras_graph(tmp_path, capsys):
    from aefs_keras import cli

    model = ak.build_model(_schema(), "deepfm", ak.AEFS(k=4, importance=list(range(F))), d_main=8,
                           hidden_units=[8])
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert cli.main(["export", path, str(tmp_path / "serving"), "m"]) == 0
    assert "Served graph: specialised for AEFS at mixed resolution" in capsys.readouterr().out
    assert cli.main(["export", path, str(tmp_path / "serving"), "m", "--keras-graph"]) == 0
    assert "Served graph: the model's own (--keras-graph)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="specialize='no'"):
        ak.export(model, str(tmp_path / "serving"), "m", specialize="no")
