"""DroppedFieldFill: a learned vector in the place of each field a row dropped."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.ops import place_fields


@keras.saving.register_keras_serializable(package="aefs_keras")
class DroppedFieldFill(keras.layers.Layer):
    """The main embeddings of all F fields, with a learned per-field vector
    where a row dropped the field (`ResearchAEFS(dropped_fill="learned")`).

    Early selection zero-fills the dropped fields, so the backbone cannot
    tell "dropped" from "an embedding near zero". A learned fill m_f (one
    vector per field, no lookup: the same for every row) is mean imputation
    with an indicator: the backbone sees what a dropped field usually says.
    It starts at zeros, so an untrained fill is AEFS's zero-fill.

    Args:
        num_fields: F.
        compact: True when called with the kept fields' embeddings
            (B, m, d) and their `indices` (B, m); False when the embeddings
            are already (B, F, d) with zeros at the dropped fields.

    Example:

    >>> import numpy as np
    >>> fill = DroppedFieldFill(3)
    >>> out = fill(np.ones((1, 2, 2), "float32"), np.array([[0, 2]]))
    >>> fill.fill.assign(np.full((3, 2), 5.0, "float32"))
    >>> fill(np.ones((1, 2, 2), "float32"), np.array([[0, 2]])).numpy()[0].tolist()
    [[1.0, 1.0], [5.0, 5.0], [1.0, 1.0]]
    """

    def __init__(self, num_fields, compact=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_fields, bool) or not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(f"`num_fields` must be a positive integer. Received: num_fields={num_fields!r}")
        self.num_fields, self.compact = num_fields, bool(compact)

    def build(self, embeddings_shape, indices_shape=None):
        self.fill = self.add_weight(name="fill", shape=(self.num_fields, embeddings_shape[-1]),
                                    initializer="zeros")

    def call(self, embeddings, indices):
        indices = tf.cast(indices, tf.int32)
        placed = place_fields(embeddings, indices, self.num_fields) if self.compact else embeddings
        kept = tf.reduce_max(tf.one_hot(indices, self.num_fields, dtype=placed.dtype), axis=1)  # (B, F)
        return placed + (1.0 - kept)[..., None] * tf.cast(self.fill, placed.dtype)[None]

    def compute_output_shape(self, embeddings_shape, indices_shape=None):
        return (embeddings_shape[0], self.num_fields, embeddings_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "compact": self.compact}
