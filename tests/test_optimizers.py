"""SparseAdam: hand-computed sparse updates, equality with Adam where they must agree, fit and save."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras.layers import FieldEmbedding
from aefs_keras.optimizers import SparseAdam


def _step(opt, emb, dense, ids):
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(dense(tf.reshape(emb(ids), [ids.shape[0], -1])))
    variables = emb.trainable_variables + dense.trainable_variables
    grads = tape.gradient(y, variables)
    assert isinstance(grads[0], tf.IndexedSlices)
    opt.apply(grads, variables)


def _layers(init=1.0):
    emb = FieldEmbedding([5, 3], 2, embeddings_initializer=keras.initializers.Constant(init))
    dense = keras.layers.Dense(1, kernel_initializer="ones", use_bias=False, trainable=False)
    ids = tf.constant([[0, 1], [0, 2]])  # global rows 0 (twice), 6, 7
    emb(ids)
    dense.build((None, 4))
    return emb, dense, ids


def test_rowwise_adagrad_by_hand():
    emb, dense, ids = _layers()
    _step(SparseAdam(0.1, embedding_rule="rowwise_adagrad", embedding_learning_rate=0.5,
                     initial_accumulator_value=0.1, epsilon=0.0), emb, dense, ids)
    table = emb.embeddings.numpy()
    # Every element's gradient is 1 per occurrence. Row 0 occurs twice: g = 2,
    # acc = 0.1 + mean(2^2, 2^2) = 4.1, row -= 0.5 * 2 / sqrt(4.1).
    np.testing.assert_allclose(table[0], 1 - 0.5 * 2 / np.sqrt(4.1), rtol=1e-6)
    np.testing.assert_allclose(table[6], 1 - 0.5 * 1 / np.sqrt(1.1), rtol=1e-6)
    np.testing.assert_array_equal(table[[1, 2, 3, 4, 5]], 1.0)  # untouched rows stay


def test_lazy_adam_by_hand_over_two_steps():
    emb, dense, ids = _layers()
    opt = SparseAdam(0.1, embedding_learning_rate=0.2, beta_1=0.9, beta_2=0.999, epsilon=0.0)
    _step(opt, emb, dense, ids)
    # Step 1: m = 0.1 g, v = 0.001 g^2, alpha = 0.2 sqrt(0.001) / 0.1: the row moves by 0.2.
    np.testing.assert_allclose(emb.embeddings.numpy()[[0, 6, 7]], 0.8, rtol=1e-5)
    _step(opt, emb, dense, tf.constant([[0, 0], [0, 0]]))  # now rows 0 (twice) and 5 (twice)
    g = 2.0
    m = 0.9 * (0.1 * 2) + 0.1 * g
    v = 0.999 * (0.001 * 4) + 0.001 * g * g
    alpha = 0.2 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    table = emb.embeddings.numpy()
    np.testing.assert_allclose(table[0], 0.8 - alpha * m / np.sqrt(v), rtol=1e-5)
    np.testing.assert_allclose(table[6], 0.8, rtol=1e-6)  # not touched in step 2: unchanged (dense Adam would move it)
    # First touched in step 2: fresh moments, but the global step's bias correction.
    np.testing.assert_allclose(table[5], 1 - alpha * 0.1 / np.sqrt(0.001), rtol=1e-5)


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    def run(opt):
        keras.utils.set_random_seed(1)
        emb = FieldEmbedding([3, 3], 2, embeddings_initializer="random_normal")
        dense = keras.layers.Dense(1, kernel_initializer="ones")
        # Every row once per batch. (With a duplicated id Keras' Adam squares
        # each occurrence's gradient apart; SparseAdam squares their sum, the
        # row's true gradient.)
        ids = tf.constant([[0, 2], [1, 0], [2, 1]])
        emb(ids)
        dense.build((None, 4))
        for _ in range(3):
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.sin(dense(tf.reshape(emb(ids), [3, -1]))))
            variables = emb.trainable_variables + dense.trainable_variables
            opt.apply(tape.gradient(y, variables), variables)
        return emb.embeddings.numpy(), dense.kernel.numpy()

    sparse = run(SparseAdam(0.05))
    dense = run(keras.optimizers.Adam(0.05))
    for a, b in zip(sparse, dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_slots_and_arguments():
    emb, dense, ids = _layers()
    opt = SparseAdam(embedding_rule="rowwise_adagrad")
    opt.build(emb.trainable_variables + dense.trainable_variables)
    sizes = sorted(int(np.prod(v.shape)) for v in opt.variables)
    # iterations, learning rate, one accumulator per table row (8); no (2, 8, 2) moments
    assert sizes == [1, 1, 8]
    adam = SparseAdam()
    adam.build(emb.trainable_variables)
    assert sorted(int(np.prod(v.shape)) for v in adam.variables) == [1, 1, 16, 16]
    with pytest.raises(ValueError, match="embedding_rule='sgd'"):
        SparseAdam(embedding_rule="sgd")


@pytest.mark.parametrize("rule", ["lazy_adam", "rowwise_adagrad"])
def test_fit_and_keras_round_trip(tmp_path, rule):
    data = ak.datasets.synthetic(num_rows=3000, num_numeric=2, num_categorical=4, vocabulary_size=50,
                                 num_informative=3, num_interactions=1, batch_size=256, seed=2)
    model = ak.build_model(data.schema, "deepfm", "aefs", k=3, hidden_units=[16], d_main=8)
    ak.default_compile(model, optimizer=SparseAdam(0.003, embedding_rule=rule, embedding_learning_rate=0.05))
    history = model.fit(data.train, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, SparseAdam) and loaded.optimizer.embedding_rule == rule
    x = {k: v[:50] for k, v in data.test_arrays[0].items()}
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_memory_plan_refuses_before_allocating(monkeypatch):
    from aefs_keras import memory

    schema = ak.Schema([ak.Categorical(f"c{i}", hash_buckets=10_000_000) for i in range(39)])
    # 39 x 10^7 rows x 32 floats = 50 GB of table alone: more than this machine or CI has.
    with pytest.raises(MemoryError, match="embedding tables need"):
        ak.build_model(schema, "dnn", hidden_units=[8])
    small = ak.Schema([ak.Categorical(f"c{i}", hash_buckets=100_000) for i in range(4)])
    plan = ak.memory_plan(small, d_main=16, uses_linear=True, embedding_optimizer="adam")
    assert plan.table_bytes == 4 * 400_000 * 17
    assert plan.slot_bytes == 2 * plan.table_bytes
    rowwise = ak.memory_plan(small, d_main=16, uses_linear=True, embedding_optimizer="rowwise_adagrad")
    assert rowwise.slot_bytes == 4 * 2 * 400_000
    monkeypatch.setattr(memory, "available_memory", lambda: 50 * 1024**2)  # 50 MiB
    with pytest.raises(MemoryError, match="rowwise_adagrad"):
        ak.build_model(small, "deepfm", hidden_units=[8], d_main=16)
    ak.build_model(small, "deepfm", hidden_units=[8], d_main=16, memory_check=None)  # opted out
    with pytest.raises(ValueError, match="embedding_optimizer='adagrad'"):
        ak.memory_plan(small, embedding_optimizer="adagrad")


def test_big_table_is_initialised_in_slices():
    from aefs_keras.layers import field_embedding

    rows = (field_embedding._BIG_TABLE // 8) + field_embedding._SLICE_ROWS + 7  # over the threshold
    emb = FieldEmbedding([rows], 8, embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05))
    emb.build((None, 1))
    table = emb.embeddings.numpy()
    assert table.shape == (rows, 8)
    assert np.abs(table).max() <= 0.05 and abs(table.std() - 0.1 / np.sqrt(12)) < 1e-3
    assert (table[-7:] != 0).all()  # the last, partial slice is filled too


def test_big_table_is_initialised_in_slices_under_a_strategy(monkeypatch):
    # Under tf.distribute the table is a mirrored variable whose `.value` is a
    # read-only tensor; the slice-wise fill must still reach every row.
    from aefs_keras.layers import field_embedding

    monkeypatch.setattr(field_embedding, "_BIG_TABLE", 64)
    monkeypatch.setattr(field_embedding, "_SLICE_ROWS", 16)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        emb = FieldEmbedding([37], 4, embeddings_initializer=keras.initializers.Constant(0.5))
        emb.build((None, 1))
    np.testing.assert_array_equal(emb.embeddings.numpy(), np.full((37, 4), 0.5, "float32"))
