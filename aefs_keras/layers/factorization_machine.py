"""FactorizationMachine: the pairwise interaction term of DeepFM."""

import keras
import tensorflow as tf

from aefs_keras.ops import field_sums, fill_sums


@keras.saving.register_keras_serializable(package="aefs_keras")
class FactorizationMachine(keras.layers.Layer):
    """Sum over field pairs of <e_i, e_j>, in O(F d): 0.5 ((sum e)^2 - sum e^2).

    Zero vectors (unselected fields) add nothing to the sum.

    Example:

    >>> import numpy as np
    >>> e = np.array([[[1., 2.], [3., 4.]]], "float32")
    >>> FactorizationMachine()(e).numpy().round(4).tolist()  # 1*3 + 2*4
    [[11.0]]

    Reference: Rendle, "Factorization Machines", ICDM 2010.
    """

    def call(self, embeddings, fill=None):
        """`fill`: None, or (codes, weights) of a low-rank fill for the
        fields whose `embeddings` are zero (`aefs_keras.ops.fill_sums`): the
        FM of the filled fields without their (B, F, d) vectors. The codes
        must be zero where a field has an embedding (no cross terms)."""
        total, squares = field_sums(embeddings)
        if fill is not None:
            fill_total, fill_squares = fill_sums(*fill)
            total, squares = total + fill_total, squares + fill_squares
        return 0.5 * (tf.reduce_sum(tf.square(total), -1, keepdims=True) - squares[:, None])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)
