"""The contract shared by backbone layers.

A backbone maps field embeddings (B, F, d), and optionally per-field
first-order weights `linear` (B, F, 1), to one logit (B, 1). Unselected
fields arrive as zero vectors.

With early selection a backbone can also be called on the kept fields only:
`embeddings` (B, m, d) and `linear` (B, m, 1) hold the fields `indices`
(B, m), and the result must equal the call on the scattered (B, F, d) form
(zeros at the other fields). That needs `num_fields` (F) at construction.
Backbones that set `supports_compact` do so; the builder then never builds
the zero-filled tensor that only the MLP's first layer needs.
"""

import keras
import tensorflow as tf

from aefs_keras.layers.mlp import MLP
from aefs_keras.ops import place_fields


class Backbone(keras.layers.Layer):
    uses_linear = False
    # A subclass sets this once its `call` takes `indices` (the built-in ones
    # do); a user's backbone keeps getting the scattered form until then.
    supports_compact = False

    def __init__(self, hidden_units=(400, 400, 400), dropout=0.0, batch_norm=False,
                 num_fields=None, **kwargs):
        super().__init__(**kwargs)
        self.mlp = MLP(hidden_units, dropout=dropout, batch_norm=batch_norm, name="mlp")
        self.hidden_units = self.mlp.hidden_units
        self.dropout = dropout
        self.batch_norm = batch_norm
        if num_fields is not None and (isinstance(num_fields, bool) or not isinstance(num_fields, int)
                                       or num_fields < 1):
            raise ValueError(f"`num_fields` must be None or a positive integer. "
                             f"Received: num_fields={num_fields!r}")
        self.num_fields = num_fields
        self.head = keras.layers.Dense(1, name="head")

    @staticmethod
    def flatten(embeddings):
        shape = embeddings.shape
        return tf.reshape(embeddings, [-1, shape[1] * shape[2]])

    @staticmethod
    def check_embeddings(name, shape):
        if len(shape) != 3 or shape[2] is None:
            raise ValueError(
                f"{name} expects embeddings of shape (batch, fields, dim) with known "
                f"fields and dim. Received: shape={tuple(shape)}"
            )

    def field_shape(self, embeddings_shape, indices_shape=None):
        """The scattered (B, F, d) shape, also when built on compact rows."""
        name = type(self).__name__
        self.check_embeddings(name, embeddings_shape)
        if indices_shape is None:
            if embeddings_shape[1] is None:
                raise ValueError(f"{name} expects embeddings of shape (batch, fields, dim) with "
                                 f"known fields. Received: shape={tuple(embeddings_shape)}")
            return tuple(embeddings_shape)
        if self.num_fields is None:
            raise ValueError(f"{name} called with `indices` (compact kept fields) needs "
                             "`num_fields`. Received: num_fields=None")
        if len(indices_shape) != 2:
            raise ValueError(f"{name} expects `indices` of shape (batch, m). "
                             f"Received: shape={tuple(indices_shape)}")
        return (embeddings_shape[0], self.num_fields, embeddings_shape[2])

    def flat_input(self, embeddings, indices=None):
        """(B, F * d): the flattened scattered embeddings."""
        if indices is None:
            return self.flatten(embeddings)
        placed = place_fields(embeddings, indices, self.num_fields)
        return tf.reshape(placed, [-1, self.num_fields * embeddings.shape[-1]])

    def deep(self, embeddings, indices=None, training=None):
        """MLP(flatten(embeddings)); on compact rows, without the zero blocks
        in the first layer's backward pass."""
        if indices is None:
            return self.mlp(self.flatten(embeddings), training=training)
        return self.mlp.call_on_fields(embeddings, indices, self.num_fields, training=training)

    def build_deep(self, field_shape):
        flat = (field_shape[0], field_shape[1] * field_shape[2])
        self.mlp.build(flat)
        self.head.build(self.mlp.compute_output_shape(flat))

    @staticmethod
    def linear_logit(linear):
        return tf.reduce_sum(tf.reshape(linear, [tf.shape(linear)[0], -1]), -1, keepdims=True)

    def compute_output_shape(self, embeddings_shape, *args, **kwargs):
        # One logit per row, whatever else `call` takes (a subclass's call
        # need not have `linear` or `indices`).
        return (embeddings_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      batch_norm=self.batch_norm, num_fields=self.num_fields)
        return config
