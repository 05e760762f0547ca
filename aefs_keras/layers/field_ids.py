"""FieldIds: raw features (a dict, one tensor per field) -> ids (B, F).

With multi-valued or dense numeric fields it returns a dict (see
`FieldIds`); the embedding layers take either form.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.schema import Categorical, DenseNumeric, MultiCategorical, Numeric, as_schema


@keras.saving.register_keras_serializable(package="aefs_keras")
class FieldIds(keras.layers.Layer):
    """Maps raw feature values to per-field ids, all inside the graph.

    Each field's ids lie in [0, field size); the embedding layers add the
    per-field offsets. Lookups, hashing and bucketisation use core TF ops
    only, so a model that starts with this layer serves raw features.

    A schema of `Categorical` and `Numeric` fields gives ids (B, F). With
    `MultiCategorical` or `DenseNumeric` fields the output is a dict:
    `ids` (B, F) (0 at multi-valued fields, whose ids are in the bags; 0
    or 1 for a dense value: present or missing), `values` (B, F) (each
    field vector's multiplier: the normalised value of a dense field, 1
    elsewhere), and `bag_ids` (B, M, L) / `bag_weights` (B, M, L) for the
    M multi-valued fields in schema order: per-field ids, -1 at padding,
    and each value's pooling weight (1/n for a mean of n values).

    Args:
        schema: an `aefs_keras.Schema` (or its config dict / JSON).

    Example:

    >>> import numpy as np
    >>> from aefs_keras import Schema, Categorical, Numeric
    >>> schema = Schema([Categorical("ad", vocabulary=["a", "b"]),
    ...                  Numeric("price", boundaries=[1.0, 10.0])])
    >>> ids = FieldIds(schema)({"ad": np.array(["b", "zz"]),
    ...                         "price": np.array([5.0, np.nan], "float32")})
    >>> ids.numpy().tolist()
    [[2, 1], [0, 3]]
    """

    def __init__(self, schema, **kwargs):
        super().__init__(**kwargs)
        self.schema = as_schema(schema)
        self._lookups = {}
        for f in self.schema.fields:
            if isinstance(f, Categorical) and f.vocabulary is not None:
                self._lookups[f.name] = keras.layers.StringLookup(
                    vocabulary=list(f.vocabulary),
                    num_oov_indices=f.oov_buckets,  # ids 0 .. oov_buckets - 1: hashed unseen values
                    output_mode="int",
                    name=f"lookup_{f.name}",
                )

    def build(self, features_shape=None):
        # Nothing to create: the lookups hold their vocabularies from the
        # start (a build of our own keeps Keras from warning it has none).
        self.built = True

    def call(self, features):
        if not isinstance(features, dict):
            raise ValueError(
                "FieldIds expects a dict of features keyed by field name. "
                f"Received: {type(features).__name__}"
            )
        self.schema.check_feature_dtypes(
            {name: tf.convert_to_tensor(v).dtype for name, v in features.items()}
        )
        extended = bool(self.schema.bag_fields) or self.schema.has_values
        if not extended:
            return tf.stack([self._field_ids(f, features[f.name]) for f in self.schema.fields], axis=1)
        columns, values, bags = [], [], []
        for f in self.schema.fields:
            if isinstance(f, MultiCategorical):
                bags.append(self._bag(f, features))
                # (B,) zeros; a batch of empty lists has width 0, so no [:, 0].
                ids = tf.zeros(tf.shape(bags[-1][0])[:1], bags[-1][0].dtype)
                value = tf.ones(tf.shape(ids), tf.float32)
            elif isinstance(f, DenseNumeric):
                ids, value = self._dense_value(f, features[f.name])
            else:
                ids = self._field_ids(f, features[f.name])
                value = tf.ones(tf.shape(ids), tf.float32)
            columns.append(ids)
            values.append(value)
        out = {"ids": tf.stack(columns, axis=1), "values": tf.stack(values, axis=1)}
        if bags:
            # At least 1: a batch of empty lists (width 0) would leave the
            # lookup's gathers an empty tensor to index.
            length = tf.maximum(tf.reduce_max([tf.shape(b[0])[1] for b in bags]), 1)
            pad = lambda t, v: tf.pad(t, [[0, 0], [0, length - tf.shape(t)[1]]], constant_values=v)
            out["bag_ids"] = tf.stack([pad(i, -1) for i, _ in bags], axis=1)
            out["bag_weights"] = tf.stack([pad(w, 0.0) for _, w in bags], axis=1)
        return out

    def _bag(self, field, features):
        """A multi-valued field's padded ids (B, L) (-1 at padding) and each
        value's pooling weight (B, L)."""
        value = tf.convert_to_tensor(features[field.name])
        if value.shape.rank is not None and value.shape.rank != 2:
            raise ValueError(f"Feature `{field.name}` is multi-valued: a (batch, length) tensor "
                             f"padded with '' or -1. Received shape: {value.shape}")
        if field.max_length is not None:
            value = value[:, :field.max_length]
        present = tf.not_equal(value, "") if value.dtype == tf.string else value >= 0
        flat = tf.reshape(value, [-1])
        ids = tf.reshape(self._field_ids(field, flat, bag=True), tf.shape(value))
        ids = tf.where(present, ids, -1)
        weight = tf.cast(present, tf.float32)
        if field.weight is not None:
            w = tf.cast(tf.convert_to_tensor(features[field.weight]), tf.float32)
            if field.max_length is not None:
                w = w[:, :field.max_length]
            tf.debugging.assert_equal(tf.shape(w), tf.shape(value), message=(
                f"Feature `{field.weight}` (the weights of `{field.name}`) must have one weight "
                f"per value of `{field.name}`"))
            weight = weight * w
        if field.combiner == "mean":
            weight = tf.math.divide_no_nan(weight, tf.reduce_sum(weight, 1, keepdims=True))
        return ids, weight

    @staticmethod
    def _dense_value(field, value):
        x = tf.cast(tf.reshape(tf.convert_to_tensor(value), [-1]), tf.float32)
        missing = tf.math.is_nan(x)
        if field.normalization == "log":
            x = tf.sign(x) * tf.math.log1p(tf.abs(x))
        elif field.normalization == "standard":
            x = (x - field.mean) / field.std
        return tf.cast(missing, tf.int32), tf.where(missing, tf.ones_like(x), x)

    def _field_ids(self, field, value, bag=False):
        value = tf.convert_to_tensor(value)
        if value.shape.rank == 2 and value.shape[-1] == 1:
            value = tf.squeeze(value, -1)  # accept (B, 1) as well as (B,)
        if not bag and value.shape.rank is not None and value.shape.rank != 1:
            raise ValueError(
                f"Feature `{field.name}` must be a batch of scalars, shape "
                f"(batch,) or (batch, 1). Received shape: {value.shape}"
            )
        if isinstance(field, Numeric):
            x = tf.cast(value, tf.float32)
            bucket = tf.raw_ops.Bucketize(input=x, boundaries=list(field.boundaries))
            missing = tf.fill(tf.shape(bucket), len(field.boundaries) + 1)
            return tf.where(tf.math.is_nan(x), missing, bucket)
        if field.vocabulary_size is not None:
            ids = tf.cast(value, tf.int64)
            oov = tf.constant(field.vocabulary_size, tf.int64)
            valid = (ids >= 0) & (ids < oov)
            return tf.cast(tf.where(valid, ids, oov), tf.int32)
        if field.vocabulary is not None:
            return tf.cast(self._lookups[field.name](value), tf.int32)
        if value.dtype != tf.string:
            value = tf.strings.as_string(value)
        return tf.cast(
            tf.strings.to_hash_bucket_fast(value, field.hash_buckets), tf.int32
        )

    def compute_output_spec(self, features):
        batch = next(iter(features.values())).shape[0]
        ids = keras.KerasTensor((batch, self.schema.num_fields), "int32")
        if not (self.schema.bag_fields or self.schema.has_values):
            return ids
        out = {"ids": ids, "values": keras.KerasTensor((batch, self.schema.num_fields), "float32")}
        if self.schema.bag_fields:
            shape = (batch, len(self.schema.bag_fields), None)
            out["bag_ids"] = keras.KerasTensor(shape, "int32")
            out["bag_weights"] = keras.KerasTensor(shape, "float32")
        return out

    def get_config(self):
        config = super().get_config()
        config["schema"] = self.schema.get_config()
        return config
