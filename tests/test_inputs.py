"""Plain inputs to fit/evaluate/predict/selection_frequency (aefs_keras.inputs)."""

import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras.inputs import model_inputs

SCHEMA = ak.Schema([ak.Categorical("u", vocabulary=["a", "b", "c"]), ak.Categorical("i", vocabulary_size=5),
                    ak.MultiCategorical("tags", vocabulary=["x", "y"]), ak.Numeric("n", boundaries=[0.5])])
X = {"u": np.array(["a", "b", "zz"]), "i": np.array([1, 2, 3]),
     "tags": np.array([["x", ""], ["y", "x"], ["", ""]]), "n": np.array([0.1, 0.9, 0.3])}
Y = np.array([0, 1, 1])


@pytest.fixture(scope="module")
def model():
    m = ak.build_model(SCHEMA, "deepfm", "aefs", k=2, d_main=4, hidden_units=[8])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    return m


def _reference(model):
    return model.predict({**X, "u": tf.constant(X["u"]), "tags": tf.constant(X["tags"])}, verbose=0)


@pytest.mark.parametrize("form", ["unicode", "bytes", "object", "object_bytes", "lists"])
def test_predict_takes_numpy_text_of_any_dtype_and_lists(model, form):
    x = {"unicode": X,
         "bytes": {**X, "u": X["u"].astype("S"), "tags": X["tags"].astype("S")},
         "object": {**X, "u": X["u"].astype(object), "tags": X["tags"].astype(object)},
         "object_bytes": {**X, "u": X["u"].astype("S").astype(object), "tags": X["tags"].astype("S").astype(object)},
         "lists": {k: v.tolist() for k, v in X.items()}}[form]
    np.testing.assert_allclose(model.predict(x, verbose=0), _reference(model), atol=1e-6)


def test_list_fields_as_ragged_sparse_or_mixed_lengths_are_padded(model):
    ragged = tf.ragged.constant([["x"], ["y", "x"], []])
    sparse = tf.sparse.from_dense(tf.constant(X["tags"]))
    for tags in (ragged, sparse, [["x"], ["y", "x"], []]):
        np.testing.assert_allclose(model.predict({**X, "tags": tags}, verbose=0), _reference(model), atol=1e-6)
    padded = model_inputs(SCHEMA, {"tags": [["x"], ["y", "x"], []]})["tags"]
    assert padded.numpy().tolist() == [[b"x", b""], [b"y", b"x"], [b"", b""]]


def test_fit_and_evaluate_take_ragged_lists_and_a_ragged_dataset(model):
    x = {**X, "tags": tf.ragged.constant([["x"], ["y", "x"], []])}
    model.fit(x, Y, epochs=1, verbose=0, validation_data=(x, Y))
    # Batches of 2: the second holds only an empty list (width 0).
    ds = tf.data.Dataset.from_tensor_slices((x, Y)).batch(2)
    model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(model.evaluate(ds, verbose=0)[0])


def test_zero_rows(model):
    empty = {k: v[:0] for k, v in X.items()}
    assert model.predict(empty, verbose=0).shape == (0, 1)
    ds = tf.data.Dataset.from_tensor_slices({**X, "u": tf.constant(X["u"]), "tags": tf.constant(X["tags"])})
    assert model.predict(ds.take(0).batch(4), verbose=0).shape == (0, 1)
    with pytest.raises(ValueError, match="0 rows"):
        model.evaluate(empty, np.zeros(0), verbose=0)


def test_selection_frequency_takes_a_dict(model):
    freq = ak.selection_frequency(model, X)
    assert freq.shape == (4,)
    np.testing.assert_allclose(freq.sum(), 2.0)  # k = 2 fields per row


def test_text_fed_as_ids_is_still_refused(model):
    with pytest.raises(ValueError, match="Feature `i` must have dtype int64"):
        model.predict({**X, "i": np.array(["1", "2", "3"])}, verbose=0)
    with pytest.raises(ValueError, match="Feature `i` must have dtype int64"):
        model.predict({**X, "i": np.array([1.5, 2.0, 3.0])}, verbose=0)


@pytest.mark.parametrize("bad, row", [(2.0, 1), (-1.0, 2), (np.nan, 0)])
def test_labels_outside_0_1_are_refused_by_name(model, bad, row):
    y = Y.astype("float32")
    y[row] = bad
    with pytest.raises(ValueError, match=rf"`y` must hold click labels in \[0, 1\].*1 of 3 rows do not, the first at row {row}"):
        model.fit(X, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`y` must hold click labels"):
        model.evaluate(X, y, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data's labels` must hold click labels"):
        model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, y))



def test_integer_boolean_and_rate_labels_pass(model):
    model.fit(X, Y.astype(bool), epochs=1, verbose=0)
    model.fit(X, Y.astype("int64"), epochs=1, verbose=0)
    assert np.isfinite(model.fit(X, np.array([0.0, 0.25, 1.0], "float32"), epochs=1, verbose=0).history["loss"]).all()


def test_features_of_different_lengths_and_missing_labels_are_named(model):
    short = {**X, "i": X["i"][:2]}
    for call in (lambda: model.predict(short, verbose=0), lambda: model.fit(short, Y, verbose=0),
                 lambda: model.evaluate(short, Y, verbose=0)):
        with pytest.raises(ValueError, match=r"one value per row: most have 3 rows, but `i` has 2"):
            call()
    for call in (lambda: model.fit(X, verbose=0), lambda: model.evaluate(X, verbose=0)):
        with pytest.raises(ValueError, match=r"`y` is missing"):
            call()
