"""FactorizationMachine: the pairwise interaction term of DeepFM."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="aefs_keras")
class FactorizationMachine(keras.layers.Layer):
    """Sum over field pairs of <e_i, e_j>, in O(F d): 0.5 ((sum e)^2 - sum e^2).

    Zero vectors (unselected fields) add nothing to the sum.

    Example:

    >>> import numpy as np
    >>> e = np.array([[[1., 2.], [3., 4.]]], "float32")
    >>> FactorizationMachine()(e).numpy().tolist()  # 1*3 + 2*4
    [[11.0]]

    Reference: Rendle, "Factorization Machines", ICDM 2010.
    """

    def call(self, embeddings):
        square_of_sum = tf.square(tf.reduce_sum(embeddings, axis=1))
        sum_of_square = tf.reduce_sum(tf.square(embeddings), axis=1)
        return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)
