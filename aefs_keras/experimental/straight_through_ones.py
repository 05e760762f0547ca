"""StraightThroughOnes: ones in the forward pass, identity in the backward pass."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="aefs_keras")
class StraightThroughOnes(keras.layers.Layer):
    """Returns ones shaped like the input, with the input's gradient.

    Used on AEFS's main-path weights (`ResearchAEFS(main_weighting=
    "straight_through")`): the kept main embeddings enter the backbone
    unscaled, so the controller cannot pass what it saw of the *dropped*
    fields to the main model through per-example weights, yet it still
    learns from the main loss (the gradient is that of scaling by the
    weights).

    Example:

    >>> import numpy as np
    >>> StraightThroughOnes()(np.array([[0.2, 1.8]], "float32")).numpy()
    array([[1., 1.]], dtype=float32)

    Args:
        gradient: False returns plain ones (no gradient to the weights:
            `main_weighting="unit"`, where the controller learns only from
            the auxiliary head and the alignment losses).
    """

    def __init__(self, gradient: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gradient = bool(gradient)

    def call(self, weights):
        if not self.gradient:
            return tf.ones_like(weights)
        return weights - tf.stop_gradient(weights) + tf.ones_like(weights)

    def get_config(self):
        return {**super().get_config(), "gradient": self.gradient}

    def compute_output_shape(self, input_shape):
        return input_shape
