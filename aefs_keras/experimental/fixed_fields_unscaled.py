"""FixedFieldsUnscaled: weight 1 for the always-kept fields, the score for the rest."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="aefs_keras")
class FixedFieldsUnscaled(keras.layers.Layer):
    """The kept fields' main-path weights, with the `fields` that every row
    keeps (`always_keep`) at 1 and no gradient, and the per-row choices at
    their scores (`ResearchAEFS(main_weighting="unit_fixed")`).

    Args:
        fields: the always-kept field indices.

    Call with weights (B, m) and the kept field indices (B, m); without
    indices the weights are taken to be over all fields in order.

    Example:

    >>> import numpy as np
    >>> layer = FixedFieldsUnscaled([2])
    >>> layer(np.array([[0.5, 1.5]], "float32"), np.array([[0, 2]])).numpy()
    array([[0.5, 1. ]], dtype=float32)
    """

    def __init__(self, fields=(), **kwargs):
        super().__init__(**kwargs)
        self.fields = tuple(int(f) for f in fields)

    def call(self, weights, indices=None):
        if indices is None:
            indices = tf.broadcast_to(tf.range(tf.shape(weights)[-1]), tf.shape(weights))
        fixed = tf.reduce_any(tf.equal(tf.cast(indices, tf.int32)[..., None],
                                       tf.constant(self.fields or (-1,), tf.int32)), axis=-1)
        return tf.where(fixed, tf.ones_like(weights), weights)

    def compute_output_shape(self, weights_shape, indices_shape=None):
        return weights_shape

    def get_config(self):
        return {**super().get_config(), "fields": list(self.fields)}
