"""Multi-valued fields, dense numeric fields and shared tables: exact
lookups against numpy, the ids a selecting model reads, and models that
train, reload and serve with them."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras.layers import ConditionalEmbedding, FieldEmbedding, FieldIds


def _schema():
    return ak.Schema([
        ak.Categorical("item", vocabulary=["a", "b", "c", "d"]),
        ak.MultiCategorical("history", share_embedding_with="item", combiner="mean"),
        ak.MultiCategorical("tags", hash_buckets=50, combiner="sum"),
        ak.DenseNumeric("price", normalization="log"),
        ak.Categorical("user", vocabulary_size=10),
        ak.Numeric("age", boundaries=[18, 30]),
    ])


def _mixed_schema():
    """With per-field widths: narrower and wider than d_main 8."""
    f = list(_schema().fields)
    f[2] = dataclasses.replace(f[2], embedding_dim=12)
    f[4] = dataclasses.replace(f[4], embedding_dim=4)
    return ak.Schema(f)


def _features():
    return {
        "item": tf.constant(["a", "b", "zz", "d"]),
        "history": tf.constant([["a", "b", ""], ["", "", ""], ["c", "c", "d"], ["q", "", ""]]),
        "tags": tf.constant([["x", "y"], ["", ""], ["z", ""], ["x", ""]]),
        "price": tf.constant([1.0, np.nan, 3.0, 0.0], tf.float32),
        "user": tf.constant([1, 2, 3, 40], tf.int64),
        "age": tf.constant([10.0, 20.0, 40.0, np.nan], tf.float32),
    }


def test_schema_layout_and_config_round_trip():
    s = _schema()
    # history shares item's 5 rows (4 values + OOV), price has 2 (value, missing)
    assert s.field_sizes == [5, 5, 50, 2, 11, 4]
    assert s.offsets == [0, 0, 5, 55, 57, 68]
    assert s.total_size == 72
    assert s.bag_fields == [1, 2]
    assert ak.Schema.from_json(s.to_json()) == s
    assert s.select(["history", "user"]).offsets == [0, 5]  # owner left out: a block of its own


@pytest.mark.parametrize("kwargs, message", [
    ({"combiner": "max"}, "combiner"),
    ({"max_length": 0}, "max_length"),
    ({"separator": "||"}, "separator"),
])
def test_multi_categorical_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ak.MultiCategorical("tags", hash_buckets=10, **kwargs)


def test_sharing_errors():
    with pytest.raises(ValueError, match="share_embedding_with"):
        ak.Schema([ak.Categorical("a", vocabulary_size=3),
                   ak.Categorical("b", share_embedding_with="nope")])
    with pytest.raises(ValueError, match="differently"):
        ak.Schema([ak.Categorical("a", vocabulary_size=3),
                   ak.Categorical("b", vocabulary_size=4, share_embedding_with="a")])
    with pytest.raises(ValueError, match="std"):
        ak.DenseNumeric("p", normalization="standard", std=0.0)


def test_field_ids_bags_values():
    out = FieldIds(_schema())(_features())
    bag_ids = out["bag_ids"].numpy()
    # history: a=1, b=2, c=3, d=4, unseen=0, padding=-1; mean weights 1/n
    np.testing.assert_array_equal(bag_ids[:, 0], [[1, 2, -1], [-1, -1, -1], [3, 3, 4], [0, -1, -1]])
    np.testing.assert_allclose(out["bag_weights"].numpy()[:, 0],
                               [[.5, .5, 0], [0, 0, 0], [1 / 3, 1 / 3, 1 / 3], [1, 0, 0]], rtol=1e-6)
    # tags: sum weights 1 at values; padded to the longer bag (3)
    np.testing.assert_array_equal(out["bag_weights"].numpy()[:, 1], [[1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    # price: id 0 present / 1 missing; value sign(v) log(1 + |v|), 1 when missing
    np.testing.assert_array_equal(out["ids"].numpy()[:, 3], [0, 1, 0, 0])
    np.testing.assert_allclose(out["values"].numpy()[:, 3], [np.log(2), 1, np.log(4), 0], rtol=1e-6)
    np.testing.assert_array_equal(out["values"].numpy()[:, [0, 4]], 1)


def test_field_ids_max_length_and_weights():
    schema = ak.Schema([ak.MultiCategorical("t", vocabulary_size=9, combiner="mean", max_length=2,
                                            weight="t_w")])
    out = FieldIds(schema)({"t": tf.constant([[1, 2, 3], [4, -1, -1]], tf.int64),
                            "t_w": tf.constant([[1.0, 3.0, 9.0], [2.0, 0.0, 0.0]])})
    np.testing.assert_array_equal(out["bag_ids"].numpy()[:, 0], [[1, 2], [4, -1]])
    np.testing.assert_allclose(out["bag_weights"].numpy()[:, 0], [[.25, .75], [1, 0]])


def _numpy_lookup(table, schema, fields):
    """The field vectors (B, F, d) by hand."""
    ids, values = fields["ids"].numpy(), fields["values"].numpy()
    out = np.zeros(ids.shape + (table.shape[1],), "float32")
    bag_at = {f: j for j, f in enumerate(schema.bag_fields)}
    for b in range(ids.shape[0]):
        for f, off in enumerate(schema.offsets):
            if f in bag_at:
                for i, w in zip(fields["bag_ids"].numpy()[b, bag_at[f]], fields["bag_weights"].numpy()[b, bag_at[f]]):
                    if i >= 0:
                        out[b, f] += w * table[off + i]
            else:
                out[b, f] = values[b, f] * table[off + ids[b, f]]
    return out


def test_field_embedding_matches_numpy():
    schema = _schema()
    fields = FieldIds(schema)(_features())
    emb = FieldEmbedding(**schema.table_layout(), output_dim=3)
    got = emb(fields).numpy()
    table = emb.embeddings.numpy()
    assert table.shape == (72, 3)
    want = _numpy_lookup(table, schema, fields)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1, 1], 0)  # empty history: zeros


def test_conditional_embedding_reads_only_kept_fields():
    schema = _schema()
    fields = FieldIds(schema)(_features())
    # row 0 keeps item, history, user; row 2 keeps tags, price, age; ...
    indices = tf.constant([[0, 1, 4], [1, 2, 3], [2, 3, 5], [0, 4, 5]], tf.int32)
    emb = ConditionalEmbedding(**schema.table_layout(), output_dim=3, output_mode="compact")
    with tf.GradientTape() as tape:
        out = emb(fields, indices)
        loss = tf.reduce_sum(out)
    full = _numpy_lookup(emb.embeddings.numpy(), schema, fields)
    np.testing.assert_allclose(out.numpy(), np.take_along_axis(full, indices.numpy()[..., None], 1),
                               rtol=1e-5, atol=1e-6)
    grad = tape.gradient(loss, emb.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    ids, bags = fields["ids"].numpy(), fields["bag_ids"].numpy()
    want = []
    for b, kept in enumerate(indices.numpy()):
        for f in kept:
            if f in schema.bag_fields:
                want += [schema.offsets[f] + i for i in bags[b, schema.bag_fields.index(f)] if i >= 0]
            else:
                want.append(schema.offsets[f] + ids[b, f])
    assert sorted(grad.indices.numpy().tolist()) == sorted(want)


def test_field_dims_project_each_field_to_one_width():
    schema = _mixed_schema()
    assert schema.field_dims == [None, None, 12, None, 4, None]
    fields = FieldIds(schema)(_features())
    emb = FieldEmbedding(**schema.table_layout(), output_dim=8, field_dims=schema.field_dims)
    got = emb(fields).numpy()
    assert emb.embeddings.shape == (5 + 2 + 4, 8)  # item (shared with history), price, age
    wide, narrow = emb._width_tables['12'].embeddings.numpy(), emb._width_tables['4'].embeddings.numpy()
    assert wide.shape == (50, 12) and narrow.shape == (11, 4)
    ids = fields["ids"].numpy()
    np.testing.assert_allclose(got[:, 4], narrow[ids[:, 4]] @ emb._projections['4'].numpy(), rtol=1e-5, atol=1e-6)
    tags = np.zeros((4, 12), "float32")
    for b in range(4):
        for i, w in zip(fields["bag_ids"].numpy()[b, 1], fields["bag_weights"].numpy()[b, 1]):
            if i >= 0:
                tags[b] += w * wide[i]
    np.testing.assert_allclose(got[:, 2], tags @ emb._projections['2'].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 0], emb.embeddings.numpy()[ids[:, 0]], rtol=1e-6)
    # the compact lookup of kept fields equals the full lookup at those fields
    cond = ConditionalEmbedding(**schema.table_layout(), output_dim=8, field_dims=schema.field_dims,
                                output_mode="compact")
    indices = tf.constant([[0, 2, 4], [1, 3, 4], [2, 4, 5], [0, 1, 2]])
    cond.build(fields["ids"].shape, indices.shape)
    cond.set_weights(emb.get_weights())
    np.testing.assert_allclose(cond(fields, indices).numpy(), np.take_along_axis(got, indices.numpy()[..., None], 1),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="its width"):
        ak.Schema([ak.Categorical("a", vocabulary_size=3, embedding_dim=4),
                   ak.Categorical("b", share_embedding_with="a", embedding_dim=8)])


def test_multi_valued_example_signature(tmp_path):
    schema = ak.Schema([ak.MultiCategorical("tags", vocabulary=["x", "y"]), ak.Categorical("u", vocabulary_size=3)])
    spec = ak.example_feature_spec(schema)
    ex = tf.train.Example(features=tf.train.Features(feature={
        "tags": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"y"])),
        "u": tf.train.Feature(int64_list=tf.train.Int64List(value=[2]))}))
    empty = tf.train.Example(features=tf.train.Features(feature={
        "u": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    parsed = tf.io.parse_example([ex.SerializeToString(), empty.SerializeToString()], spec)
    from aefs_keras.schema import dense_features

    dense = dense_features(parsed, schema)
    assert dense["tags"].numpy().tolist() == [[b"x", b"y"], [b"", b""]]


def test_history_signal_needs_the_history_field_and_aefs_keeps_it():
    from aefs_keras.importance import importance_prior, permutation_importance
    from aefs_keras.metrics import auc_score

    data = ak.datasets.history_data(num_rows=30_000, num_items=100, num_groups=4)
    x, y = data.test_arrays

    def run(schema, selection=None, fields=None, **options):
        keras.utils.set_random_seed(0)
        model = ak.default_compile(ak.build_model(schema, "deepfm", selection, hidden_units=[32], d_main=16,
                                                  **options), learning_rate=3e-3)
        train, _ = data.pipelines(0, fields)
        model.fit(train, epochs=6, verbose=0)
        p = model.predict({k: x[k] for k in (fields or x)}, verbose=0, batch_size=1024)
        return model, auc_score(y, np.ravel(p["probability"] if isinstance(p, dict) else p))

    full, with_history = run(data.schema)
    names = [n for n in data.schema.names if n != "history"]
    _, without = run(data.schema.select(names), fields=names)
    assert with_history > without + 0.1, (with_history, without)
    # AEFS (k = 3 of 7) started from the fields' validation importance keeps
    # the history (and the item it is compared with) on most rows
    prior = importance_prior(permutation_importance(full, *data.valid_arrays))
    model, aefs = run(data.schema, "aefs", k_ratio=0.5, field_prior=prior)
    kept = dict(zip(data.schema.names, ak.selection_frequency(model, ak.datasets.to_dataset(x, y, 1024))))
    assert kept["history"] > 0.5 and kept["item"] > 0.5, kept
    assert aefs > with_history - 0.02, (aefs, with_history)


def test_csv_list_column_through_read_text(tmp_path):
    from aefs_keras.datasets import csv_format, read_text
    from aefs_keras.schema import dense_features

    path = tmp_path / "d.csv"
    path.write_text("label,item,tags,weights\n1,a,x|y,0.5|1.5\n0,b,,\n1,a,y,2\n")
    fmt = csv_format([("label", "label"), ("item", "categorical"), ("tags", "categorical"),
                      ("weights", "categorical")])
    schema = ak.Schema([ak.Categorical("item", vocabulary=["a", "b"]),
                        ak.MultiCategorical("tags", vocabulary=["x", "y"], weight="weights")])
    ds, _ = read_text(fmt, [str(path)], batch_size=8)
    x, y = next(iter(ds))
    x = dense_features(x, schema)
    assert x["tags"].numpy().tolist() == [[b"x", b"y"], [b"", b""], [b"y", b""]]
    np.testing.assert_allclose(x["weights"].numpy(), [[0.5, 1.5], [0, 0], [2, 0]])
    out = FieldIds(schema)(x)
    np.testing.assert_allclose(out["bag_weights"].numpy()[:, 0], [[0.25, 0.75], [0, 0], [1, 0]])
    with pytest.raises(Exception, match="weights"):  # one weight per value
        FieldIds(schema)({**x, "weights": tf.constant([[1.0], [1.0], [1.0]])})

