"""FieldIds: raw features (a dict, one tensor per field) -> ids (B, F)."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.schema import Categorical, Numeric, as_schema


@keras.saving.register_keras_serializable(package="aefs_keras")
class FieldIds(keras.layers.Layer):
    """Maps raw feature values to per-field ids, all inside the graph.

    Each field's ids lie in [0, field size); the embedding layers add the
    per-field offsets. Lookups, hashing and bucketisation use core TF ops
    only, so a model that starts with this layer serves raw features.

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

    def call(self, features):
        if not isinstance(features, dict):
            raise ValueError(
                "FieldIds expects a dict of features keyed by field name. "
                f"Received: {type(features).__name__}"
            )
        self.schema.check_feature_dtypes(
            {name: tf.convert_to_tensor(v).dtype for name, v in features.items()}
        )
        columns = [self._field_ids(f, features[f.name]) for f in self.schema.fields]
        return tf.stack(columns, axis=1)

    def _field_ids(self, field, value):
        value = tf.convert_to_tensor(value)
        if value.shape.rank == 2 and value.shape[-1] == 1:
            value = tf.squeeze(value, -1)  # accept (B, 1) as well as (B,)
        if value.shape.rank is not None and value.shape.rank != 1:
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

    def compute_output_shape(self, input_shape):
        first = next(iter(input_shape.values()))
        return (first[0], self.schema.num_fields)

    def get_config(self):
        config = super().get_config()
        config["schema"] = self.schema.get_config()
        return config
