"""The contract shared by backbone layers.

A backbone maps field embeddings (B, F, d), and optionally per-field
first-order weights `linear` (B, F, 1), to one logit (B, 1). Unselected
fields arrive as zero vectors.
"""

import keras
import tensorflow as tf

from aefs_keras.layers.mlp import MLP


class Backbone(keras.layers.Layer):
    uses_linear = False

    def __init__(self, hidden_units=(400, 400, 400), dropout=0.0, batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.mlp = MLP(hidden_units, dropout=dropout, batch_norm=batch_norm, name="mlp")
        self.hidden_units = self.mlp.hidden_units
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.head = keras.layers.Dense(1, name="head")

    @staticmethod
    def flatten(embeddings):
        shape = embeddings.shape
        return tf.reshape(embeddings, [-1, shape[1] * shape[2]])

    @staticmethod
    def check_embeddings(name, shape):
        if len(shape) != 3 or shape[1] is None or shape[2] is None:
            raise ValueError(
                f"{name} expects embeddings of shape (batch, fields, dim) with known "
                f"fields and dim. Received: shape={tuple(shape)}"
            )

    @staticmethod
    def linear_logit(linear):
        return tf.reduce_sum(tf.reshape(linear, [tf.shape(linear)[0], -1]), -1, keepdims=True)

    def compute_output_shape(self, embeddings_shape, linear_shape=None):
        return (embeddings_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      batch_norm=self.batch_norm)
        return config
