"""WarmupFields: which fields the main model reads on this step."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.ops import warmup_fields


@keras.saving.register_keras_serializable(package="aefs_keras")
class WarmupFields(keras.layers.Layer):
    """The kept fields and their weights, or every field during a warm-up.

    An `AuxiliarySelector` with `warmup_steps` sets its `warming` flag on its
    first training steps; then the main model reads all F fields, each scaled
    by its soft score, so that every score gets a gradient. This layer makes
    that switch for the compact path: on a training call with the flag set
    it returns (every field (B, F), `warmup_weights` (B, F)), else
    (`indices` (B, k), `weights` (B, k)). Inference always returns the
    kept fields. `ConditionalEmbedding(output_mode="compact")`, the
    backbones and `AlignmentLoss` all take the result, so nothing depends
    on m being k.

    Example:

    >>> import numpy as np
    >>> idx, w = WarmupFields()(np.array([[2, 0]]), np.array([[0.7, 0.3]], "float32"),
    ...                         np.array([[0.1, 0.2, 0.7]], "float32"), np.array([1.0], "float32"),
    ...                         training=True)
    >>> idx.numpy().tolist(), w.numpy().tolist()
    ([[0, 1, 2]], [[0.10000000149011612, 0.20000000298023224, 0.699999988079071]])

    Reference: "Adaptive Early Feature Selection for Efficient CTR
    Prediction", arXiv 2509.12076 (IEEE TKDE 2025); the warm-up is ours
    (docs/aefs.md).
    """

    def call(self, indices, weights, warmup_weights, warming, training=None):
        if not training:
            return tf.cast(indices, tf.int32), tf.cast(weights, self.compute_dtype)
        return warmup_fields(indices, weights, warmup_weights, warming,
                             warmup_weights.shape[1], self.compute_dtype)

    def compute_output_spec(self, indices, weights, warmup_weights, warming, training=None):
        # The inference shapes; a warming training step returns m = F columns.
        return (keras.KerasTensor(indices.shape, "int32"),
                keras.KerasTensor(weights.shape, self.compute_dtype))
