"""MLP: the dense tower shared by the backbones."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.ops import fill_vectors, kept_fields_matmul, place_fields, placed_matmul


# From this many rows, the first layer takes a factored fill folded into its
# kernel (`ops.fill_matmul`: a fixed cost per call, then e / d of the dense
# work per row); below it, as vectors added to the placed rows (no fixed
# cost). The crossover measured on a 2-core CPU, F = 39, d 64, h 400, lies
# between 128 and 256 rows (`benchmarks/fill_fold.py`, docs/scale.md).
FOLD_MIN_BATCH = 256


def check_hidden_units(hidden_units):
    units = [int(u) for u in hidden_units]
    if any(u < 1 for u in units):
        raise ValueError(
            f"`hidden_units` must be positive integers. Received: hidden_units={list(hidden_units)!r}"
        )
    return units


@keras.saving.register_keras_serializable(package="aefs_keras")
class MLP(keras.layers.Layer):
    """Dense -> (BatchNorm) -> activation -> Dropout, for each width.

    Args:
        hidden_units: widths of the hidden layers.
        activation: activation of every hidden layer.
        dropout: dropout rate after each hidden layer.
        batch_norm: add batch normalisation before each activation.

    Example:

    >>> import numpy as np
    >>> MLP([8, 4])(np.ones((2, 5), "float32")).shape
    TensorShape([2, 4])
    """

    def __init__(self, hidden_units=(400, 400, 400), activation="relu", dropout=0.0,
                 batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_hidden_units(hidden_units)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.blocks = []
        for i, units in enumerate(self.hidden_units):
            self.blocks.append(keras.layers.Dense(units, name=f"dense_{i}"))
            if batch_norm:
                self.blocks.append(keras.layers.BatchNormalization(synchronized=True, name=f"norm_{i}"))
            self.blocks.append(keras.layers.Activation(activation, name=f"act_{i}"))
            if dropout:
                self.blocks.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))

    def build(self, input_shape):
        shape = input_shape
        for layer in self.blocks:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, x, training=None):
        for layer in self.blocks:
            x = layer(x, training=training)
        return x

    def call_on_fields(self, rows, indices, num_fields, training=None, fill=None):
        """`call(flatten(place_fields(rows, indices, num_fields)))`: the kept
        rows placed and one dense product, or, where most of each row's
        fields are kept by every row of the batch (AEFS's fixed fields), the
        first layer split into a dense product over those fields' kernel
        blocks and the rest grouped by field (`ops.kept_fields_matmul`;
        grouping all of a row's fields was slower: docs/scale.md, "The
        grouped backward pass, measured again").

        `fill`: None, or (codes, weights) of a low-rank fill added to the
        placed rows (`aefs_keras.ops.fill_vectors`); from `FOLD_MIN_BATCH`
        rows the first layer takes it folded (`ops.fill_matmul`), without
        the (B, F, d) tensor."""
        if not self.hidden_units:
            placed = place_fields(rows, indices, num_fields)
            if fill is not None:
                placed = placed + fill_vectors(*fill)
            return tf.reshape(placed, [-1, num_fields * rows.shape[-1]])
        with tf.name_scope(self.name):
            first = self.blocks[0]
            kernel = tf.convert_to_tensor(first.kernel)
            if fill is None:
                x = kept_fields_matmul(rows, indices, kernel, num_fields, training=training)
            else:
                x = tf.cond(tf.shape(rows)[0] >= FOLD_MIN_BATCH,
                            lambda: kept_fields_matmul(rows, indices, kernel, num_fields, fill=fill,
                                                       training=training),
                            lambda: placed_matmul(place_fields(rows, indices, num_fields) + fill_vectors(*fill),
                                                  kernel))
            if first.use_bias:
                x = tf.nn.bias_add(x, tf.convert_to_tensor(first.bias))
            for layer in self.blocks[1:]:
                x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        if not self.hidden_units:
            return input_shape
        return (*input_shape[:-1], self.hidden_units[-1])

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, activation=self.activation,
                      dropout=self.dropout, batch_norm=self.batch_norm)
        return config
