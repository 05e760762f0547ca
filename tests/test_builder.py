import itertools
import warnings

import keras
import numpy as np
import tensorflow as tf
import pytest

import aefs_keras as ak
from aefs_keras import Categorical, Numeric, Schema

BACKBONES = ["dnn", "deepfm", "dcn", "wide_deep", "mlcc", "mc_mlcc"]
SELECTIONS = [None, "adafs", "aefs"]


@pytest.fixture(scope="module")
def data():
    return ak.datasets.synthetic(num_rows=3000, num_numeric=3, num_categorical=5,
                                 vocabulary_size=50, num_informative=3, num_interactions=1,
                                 batch_size=256, seed=3)


def small(schema, backbone, selection, **kw):
    kw.setdefault("hidden_units", [16, 8])
    kw.setdefault("d_main", 8)
    if isinstance(selection, str):
        kw.setdefault("k", 4)
    return ak.default_compile(ak.build_model(schema, backbone, selection, **kw))


def _move_weights(model, seed=0):
    # Every variable away from its initial value, batch-norm statistics
    # included, without tracing a training step (slow, and 18 cases).
    rng = np.random.default_rng(seed)
    for v in model.weights:
        w = keras.ops.convert_to_numpy(v)
        if w.dtype.kind != "f":
            continue
        moved = w * rng.uniform(0.5, 1.5, w.shape)
        if "variance" not in v.path:
            moved = moved + rng.normal(0.0, 0.05, w.shape)
        v.assign(moved.astype(w.dtype))


@pytest.mark.parametrize("backbone, selection", list(itertools.product(BACKBONES, SELECTIONS)))
def test_keras_round_trip_identical(data, tmp_path, backbone, selection):
    model = small(data.schema, backbone, selection)
    _move_weights(model)
    x = {k: v[:100] for k, v in data.test_arrays[0].items()}
    before = model.predict_step((x,)).numpy()
    assert before.shape == (100, 1) and np.isfinite(before).all() and before.std() > 0
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict_step((x,)).numpy(), before)
    assert loaded.schema == data.schema
    if selection == "aefs" and backbone == "deepfm":  # still trainable (one case: tracing fit is slow)
        loaded.fit(data.train.take(2), epochs=1, verbose=0)


def research(**options):
    return ak.experimental.ResearchAEFS(k=4, **options)


def test_research_options_round_trip(data, tmp_path):
    model = small(data.schema, "deepfm", research(soft_gradient=True, main_weighting="straight_through"))
    x = {k: v[:100] for k, v in data.test_arrays[0].items()}
    model.save(tmp_path / "st.keras")
    loaded = keras.models.load_model(tmp_path / "st.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.get_layer("selector"), ak.experimental.ExploringSelector)
    assert loaded.get_layer("selector").soft_gradient
    assert isinstance(loaded.get_layer("main_weights"), ak.experimental.StraightThroughOnes)
    fixed = small(data.schema, "deepfm", research(always_keep=(0, 3), main_weighting="unit_fixed"))
    fixed.save(tmp_path / "fixed.keras")
    loaded = keras.models.load_model(tmp_path / "fixed.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), fixed.predict(x, verbose=0))
    assert loaded.get_layer("selector").always_keep == (0, 3)
    assert loaded.get_layer("main_weights").fields == (0, 3)
    # The core path has none of it.
    core = small(data.schema, "deepfm", "aefs")
    assert type(core.get_layer("selector")) is ak.layers.AuxiliarySelector
    assert "main_weights" not in {layer.name for layer in core.layers}


@pytest.mark.parametrize("backbone, fill", [("dcn", "aux"), ("mlcc", "aux_residual")])  # "learned" is the layer cases below
def test_learned_dropped_fill(data, tmp_path, backbone, fill):
    # Zeros (its start) give exactly AEFS's zero-filled model; a fill moves
    # the output only through the fields a row dropped, and its gradient
    # reaches only those fields' vectors.
    x = {k: v[:64] for k, v in data.test_arrays[0].items()}
    keras.utils.set_random_seed(3)
    plain = small(data.schema, backbone, research())
    _move_weights(plain)
    keras.utils.set_random_seed(3)
    filled = small(data.schema, backbone, research(dropped_fill=fill))
    for layer in plain.layers:  # by layer: Keras' automatic sublayer names differ between the two
        filled.get_layer(layer.name).set_weights(layer.get_weights())
    np.testing.assert_array_equal(filled.predict(x, verbose=0), plain.predict(x, verbose=0))
    layer = filled.get_layer("dropped_fill")
    # The layer alone: a fill's gradient counts the rows that dropped its field.
    alone = ak.experimental.DroppedFieldFill(3)
    alone.build((2, 2, 4))
    with tf.GradientTape() as tape:
        out = alone(np.ones((2, 2, 4), "float32"), np.array([[0, 2], [0, 1]]))
        total = tf.reduce_sum(out)
    np.testing.assert_array_equal(tape.gradient(total, alone.fill.value).numpy(),
                                  np.array([[0.0] * 4, [1.0] * 4, [1.0] * 4]))
    scattered = ak.experimental.DroppedFieldFill(3, compact=False)
    scattered(out, np.array([[0, 2], [0, 1]]))
    scattered.fill.assign(np.full((3, 4), 7.0, "float32"))
    placed = scattered(np.array([[[1.0] * 4, [0.0] * 4, [2.0] * 4]], "float32"), np.array([[0, 2]]))
    np.testing.assert_array_equal(placed.numpy()[0], [[1.0] * 4, [7.0] * 4, [2.0] * 4])
    # From the auxiliary embeddings: m_f + a_f P_f at the dropped field only.
    by_row = ak.experimental.DroppedFieldFill(3, from_aux=True)
    aux = np.arange(6, dtype="float32").reshape(1, 3, 2)  # a_1 = [2, 3]
    by_row(np.ones((1, 2, 4), "float32"), np.array([[0, 2]]), aux)
    by_row.projection.assign(np.ones((3, 2, 4), "float32"))
    out = by_row(np.ones((1, 2, 4), "float32"), np.array([[0, 2]]), aux).numpy()[0]
    np.testing.assert_array_equal(out, [[1.0] * 4, [5.0] * 4, [1.0] * 4])
    if fill in ("aux", "aux_residual"):
        layer.projection.assign(np.random.default_rng(1).normal(size=layer.projection.shape).astype("float32"))
        assert np.abs(filled.predict(x, verbose=0) - plain.predict(x, verbose=0)).max() > 1e-4
    layer.fill.assign(np.random.default_rng(0).normal(size=layer.fill.shape).astype("float32"))
    moved = filled.predict(x, verbose=0)
    assert np.abs(moved - plain.predict(x, verbose=0)).max() > 1e-4
    filled.save(tmp_path / "fill.keras")
    loaded = keras.models.load_model(tmp_path / "fill.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), moved)
    with pytest.raises(ValueError, match="dropped_fill='mean'"):
        research(dropped_fill="mean")
    with pytest.raises(ValueError, match="residual=True"):
        ak.experimental.DroppedFieldFill(3, residual=True)


def test_mixed_resolution_keeps_the_most_important_fields(data, tmp_path):
    # 8 fields, k = 4, keep_share 0.75 -> the 3 most important on every row.
    importance = [0.0, 0.05, 0.01, 0.0, 0.03, 0.0, 0.02, 0.0]
    sel = ak.experimental.ResearchAEFS.mixed_resolution(importance, k=4)
    assert (sel.always_keep, sel.main_weighting, sel.dropped_fill) == ((1, 4, 6), "unit", "aux")
    assert ak.importance.most_important(importance, 0) == ()
    model = small(data.schema, "dcn", sel)
    x = {k: v[:64] for k, v in data.test_arrays[0].items()}
    picked = ak.inference_model(model).predict(x, verbose=0)["selected_fields"]
    assert picked.shape == (64, 4)
    for field in (1, 4, 6):
        assert (picked == field).any(axis=1).all()
    assert len({tuple(sorted(row)) for row in picked.tolist()}) > 1  # the fourth field is chosen per row
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="keep_share=1.0"):
        ak.experimental.ResearchAEFS.mixed_resolution(importance, keep_share=1.0)
    with pytest.raises(ValueError, match="m=9"):
        ak.importance.most_important(importance, 9)


def test_linear_fields_all_reads_every_first_order_weight(data, tmp_path):
    importance = [0.0, 0.05, 0.01, 0.0, 0.03, 0.0, 0.02, 0.0]
    sel = ak.experimental.ResearchAEFS.mixed_resolution(importance, k=4, linear_fields="all")
    model = small(data.schema, "wide_deep", sel)
    plain = small(data.schema, "wide_deep", ak.experimental.ResearchAEFS.mixed_resolution(importance, k=4))
    # F x 4 auxiliary + k x 8 main, and the first-order table: F values instead of k.
    assert plain.activated_embedding_parameters() == 8 * 4 + 4 * 8 + 4
    assert model.activated_embedding_parameters() == 8 * 4 + 4 * 8 + 8
    assert isinstance(model.get_layer("linear_embedding"), ak.layers.FieldEmbedding)
    # The wide part sums every field's first-order weight: adding 1 to the whole table moves each
    # row's logit by F = 8 (by k = 4 when only the selected fields' weights are read).
    x = {k: v[:32] for k, v in data.test_arrays[0].items()}

    def logit_shift(m):
        before = m.predict(x, verbose=0).ravel()
        table = m.get_layer("linear_embedding").weights[0]
        table.assign(table + 1.0)
        after = m.predict(x, verbose=0).ravel()
        return np.log(after / (1 - after)) - np.log(before / (1 - before))

    np.testing.assert_allclose(logit_shift(model), 8.0, atol=1e-3)
    np.testing.assert_allclose(logit_shift(plain), 4.0, atol=1e-3)
    model.save(tmp_path / "linear_all.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "linear_all.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="Received: dropped_fill='zeros'"):
        ak.experimental.ResearchAEFS(k=4, linear_fields="all")
    with pytest.raises(ValueError, match="linear_fields='some'"):
        ak.experimental.ResearchAEFS(k=4, linear_fields="some", dropped_fill="aux")


def test_selection_objects_equal_strings_with_options(data):
    keras.utils.set_random_seed(0)
    a = ak.build_model(data.schema, "deepfm", ak.AEFS(k=3, warmup_steps=5, d_aux=2), hidden_units=[8])
    keras.utils.set_random_seed(0)
    b = ak.build_model(data.schema, "deepfm", "aefs", k=3, warmup_steps=5, d_aux=2, hidden_units=[8])
    x = {k: v[:50] for k, v in data.test_arrays[0].items()}
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    assert b.get_layer("selector").k == 3 and b.get_layer("selector").warmup_steps == 5


@pytest.mark.parametrize("selection, options, word", [
    ("adafs", {"warmup_steps": 100}, "`warmup_steps` does not apply to selection='adafs'"),
    ("adafs", {"d_aux": 2, "field_prior": [0.0]}, "`d_aux`, `field_prior` do not apply"),
    (None, {"warmup_steps": 100}, "`warmup_steps` applies only with a selection"),
    ("aefs", {"main_weighting": "straight_through"}, "`main_weighting` does not apply to selection='aefs'"),
])
def test_options_that_do_not_apply_are_errors(data, selection, options, word):
    with pytest.raises(ValueError, match=word):
        ak.build_model(data.schema, "deepfm", selection, **options)
    with pytest.raises(ValueError, match="to the AEFS object, not build_model"):
        ak.build_model(data.schema, "deepfm", ak.AEFS(), k=2)


def test_build_model_has_at_most_12_parameters():
    import inspect

    assert len(inspect.signature(ak.build_model).parameters) <= 12


def test_warmup_trains_then_round_trips(data, tmp_path):
    model = small(data.schema, "deepfm", "aefs", warmup_steps=3)
    steps = int(np.ceil(len(data.train_arrays[1]) / 256))
    history = model.fit(data.train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    selector = model.get_layer("selector")
    assert float(selector.step.numpy()) == steps > 3
    x = {k: v[:100] for k, v in data.test_arrays[0].items()}
    model.save(tmp_path / "wu.keras")
    loaded = keras.models.load_model(tmp_path / "wu.keras")
    np.testing.assert_array_equal(loaded.predict_step((x,)).numpy(), model.predict_step((x,)).numpy())
    assert loaded.get_layer("selector").warmup_steps == 3
    assert float(loaded.get_layer("selector").step.numpy()) == steps  # warm-up is not redone
    st = small(data.schema, "deepfm", research(warmup_steps=3, main_weighting="straight_through"))
    assert isinstance(st.get_layer("warmup_weights"), ak.experimental.StraightThroughOnes)


def test_aux_backbone_option_round_trip(data, tmp_path):
    model = small(data.schema, "deepfm", "aefs", aux_backbone="dnn")
    assert isinstance(model.get_layer("aux_backbone"), ak.layers.DNN)
    assert isinstance(small(data.schema, "deepfm", "aefs").get_layer("aux_backbone"), ak.layers.DeepFM)
    _move_weights(model)
    x = {k: v[:100] for k, v in data.test_arrays[0].items()}
    model.save(tmp_path / "aux.keras")
    loaded = keras.models.load_model(tmp_path / "aux.keras")
    np.testing.assert_array_equal(loaded.predict_step((x,)).numpy(), model.predict_step((x,)).numpy())
    assert isinstance(loaded.get_layer("aux_backbone"), ak.layers.DNN)


def test_activated_parameters(data):
    F = data.schema.num_fields  # 8
    assert small(data.schema, "deepfm", None).activated_embedding_parameters() == F * 8 + F
    assert small(data.schema, "dnn", "adafs").activated_embedding_parameters() == F * 8
    aefs = small(data.schema, "deepfm", "aefs", d_aux=4)
    # Mixed resolution (the default) reads every field's first-order weight.
    assert aefs.activated_embedding_parameters() == F * 4 + 4 * 8 + F
    single = small(data.schema, "deepfm", "aefs", d_aux=4, resolution="single")
    assert single.activated_embedding_parameters() == F * 4 + 4 * 8 + 4


@pytest.mark.parametrize("kwargs, word", [
    ({"selection": "aefs", "k": 9}, "k=9"),
    ({"selection": "aefs", "k": 0}, "k=0"),
    ({"selection": "adafs", "k_ratio": 0.0}, "k_ratio=0.0"),
    ({"backbone": "xgboost"}, "backbone='xgboost'"),
    ({"selection": "lasso"}, "selection='lasso'"),
    ({"selection": None, "k": 2}, "selection=None"),
    ({"selection": "aefs", "controller": "gbdt"}, "controller='gbdt'"),
    ({"selection": ak.experimental.ResearchAEFS(main_weighting="straight_through"), "k": 2}, "not build_model"),
    ({"selection": "aefs", "warmup_steps": -2}, "warmup_steps=-2"),
    ({"selection": "aefs", "aux_backbone": "gbdt"}, "aux_backbone='gbdt'"),
    ({"selection": "aefs", "resolution": "double"}, "resolution='double'"),
    ({"selection": "aefs", "keep_share": 1.5}, "keep_share=1.5"),
    ({"selection": "aefs", "rank_epochs": 0}, "rank_epochs=0"),
    ({"selection": "aefs", "resolution": "single", "importance": [1.0] * 8}, "applies to resolution='mixed'"),
    ({"selection": "aefs", "importance": [1.0, 2.0]}, "one number per field"),
])
def test_bad_builder_arguments(data, kwargs, word):
    kwargs = {"backbone": "deepfm", **kwargs}
    with pytest.raises(ValueError, match=word):
        ak.build_model(data.schema, **kwargs)


def test_inputs_not_matching_schema(data):
    model = small(data.schema, "deepfm", "aefs")
    x = {k: v[:10] for k, v in data.test_arrays[0].items()}
    with pytest.raises(ValueError, match=r"Missing feature\(s\) \['C1'\]"):
        model.predict({k: v for k, v in x.items() if k != "C1"}, verbose=0)
    with pytest.raises(ValueError, match="Feature `C2` must have dtype int64.*float64"):
        model.predict({**x, "C2": x["C2"] + 0.5}, verbose=0)
    bad_ds = ak.datasets.synthetic(num_rows=100, num_numeric=3, num_categorical=4,
                                   vocabulary_size=50, num_informative=2, num_interactions=0).train
    with pytest.raises(ValueError, match="Missing feature"):
        model.fit(bad_ds, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`schema` must be a Schema"):
        ak.build_model(42)


def test_history_has_losses_and_callbacks_work(data, tmp_path):
    model = small(data.schema, "dcn", "aefs")
    freq = ak.FieldSelectionFrequency()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = model.fit(
            data.train, validation_data=data.valid, epochs=2, verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=3),
                keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_auc",
                                                mode="max", save_best_only=True),
                keras.callbacks.TensorBoard(str(tmp_path / "tb")),
                freq,
            ],
        )
    # No UserWarning from our side (Keras' "shuffle=True ... ignored" for a dataset).
    assert not [w for w in caught if "shuffle" in str(w.message)], [str(w.message) for w in caught]
    for key in ("loss", "auc", "logloss", "aux_loss", "embedding_alignment_loss",
                "prediction_alignment_loss", "val_auc", "val_embedding_alignment_loss"):
        assert key in h.history and len(h.history[key]) == 2, key
    assert all(v > 0 for v in h.history["embedding_alignment_loss"])
    assert (tmp_path / "best.keras").exists()
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert len(freq.frequencies) == 2 and freq.field_names == data.schema.names
    for f in freq.frequencies:  # every training row kept exactly k fields
        np.testing.assert_allclose(f.sum(), 4.0, rtol=1e-5)
        assert f.min() >= 0 and f.max() <= 1
    # Served selection on held-out rows, against the serving graph's own picks.
    served = ak.selection_frequency(model, data.test)
    x = {k: v for k, v in data.test_arrays[0].items()}
    picked = ak.inference_model(model).predict(x, verbose=0)["selected_fields"]
    expect = np.bincount(picked.ravel(), minlength=data.schema.num_fields) / len(picked)
    np.testing.assert_allclose(served, expect)
    np.testing.assert_allclose(served.sum(), 4.0)
    with pytest.raises(ValueError, match="Found 0"):
        ak.selection_frequency(small(data.schema, "dnn", None), data.test)


def test_aux_loss_weight_is_kept_and_aux_loss_tracked(data):
    x, y = data.train_arrays
    model = small(data.schema, "dnn", "aefs", aux_loss_weight=0.0)
    keras.utils.set_random_seed(0)
    model.fit(x, y, epochs=1, batch_size=512, verbose=0)
    # With lambda_a = 0 the loss has no auxiliary BCE, but it is still tracked.
    assert model.aux_loss_weight == 0.0
    assert "aux_loss" in [m.name for m in model.metrics]


@pytest.mark.parametrize("call", ["fit", "train_on_batch"])
def test_the_train_step_is_traced_once(data, monkeypatch, call):
    # Optimizer, loss and metric variables are built before the first trace
    # (CTRModel._build_before_tracing); created inside it, TF traces twice.
    traced = []
    step = ak.CTRModel.train_step
    monkeypatch.setattr(ak.CTRModel, "train_step", lambda self, d: traced.append(1) or step(self, d))
    x, y = data.train_arrays
    model = small(data.schema, "dnn", "aefs")
    if call == "fit":
        h = model.fit(x, y, epochs=2, batch_size=1024, verbose=0, validation_data=data.valid_arrays)
        assert {"auc", "val_auc", "aux_loss"} <= set(h.history) and np.isfinite(h.history["loss"]).all()
    else:
        model.train_on_batch({k: v[:64] for k, v in x.items()}, y[:64])
    assert len(traced) == 1
    assert model.optimizer.built and model.optimizer.iterations.numpy() > 0


def test_labels_of_another_rank_in_a_later_fit(data):
    # (B, 1) labels with weights, then a dataset of (B,) labels with class
    # weights: the retraced step sees labels of unknown rank (it raised
    # "Cannot take the length of shape with unknown rank").
    x, y = data.train_arrays
    model = small(data.schema, "dnn", None)
    model.fit(x, y[:, None], sample_weight=np.ones(len(y), "float32"), epochs=1, batch_size=1024, verbose=0)
    h = model.fit(data.train, epochs=1, verbose=0, class_weight={0: 1.0, 1: 2.0})
    assert np.isfinite(h.history["loss"]).all()
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])


def test_alignment_off_trains_nothing_for_it_and_round_trips(data, tmp_path):
    model = small(data.schema, "deepfm", "aefs", embedding_alignment=0.0, prediction_alignment=0.0)
    x, y = data.train_arrays
    keras.utils.set_random_seed(0)
    model.predict({k: v[:2] for k, v in x.items()}, verbose=0)  # built
    projection = model.get_layer("alignment")._projection
    before = [w.numpy().copy() for w in projection.weights]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = model.fit(x, y, epochs=1, batch_size=512, verbose=0)
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    assert "aux_loss" in h.history and not [k for k in h.history if "alignment" in k], list(h.history)
    for w, b in zip(projection.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)  # frozen: no optimizer step touched it
    path = str(tmp_path / "off.keras")
    model.save(path)
    xt = {k: v[:64] for k, v in data.test_arrays[0].items()}
    np.testing.assert_allclose(keras.saving.load_model(path).predict(xt, verbose=0),
                               model.predict(xt, verbose=0), atol=1e-6)


def test_register_backbone(data):
    class Tiny(ak.layers.DNN):
        pass
    ak.register_backbone("tiny", Tiny)
    try:
        assert ak.build_model(data.schema, "tiny", hidden_units=[4]).count_params() > 0
    finally:
        ak.BACKBONES.pop("tiny")
