"""MLCC: compress, cross, compress (multi-channel when channels > 1)."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.ops import place_fields


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="aefs_keras")
class MLCC(keras.layers.Layer):
    """One MLCC block: field embeddings (B, F, D) -> gated field vectors (B, F, E2).

    1. The embedding of width D = channels * e is cut into `channels`
       slices X_c (B, F, e).
    2. Global compressor, per channel: vec(X_c) @ W1_c gives, per example,
       the weights of `heads` small dynamic MLPs e -> d_1 -> d_2 -> ...
    3. Layered crossing: every field vector goes through every head's
       dynamic MLP; each level's output is kept. Without activation, level
       j is a product of j + 1 factors linear in the embeddings, so scaling
       all embeddings by t scales level 1 by t^2 and level 2 by t^3.
    4. Local compressor, per field: all channels' crosses and the raw
       embedding (the skip path) -> E2 values by a per-field matrix.
    5. SENet gate per field on the mean of those E2 values.

    `channels=1` is MLCC; `channels > 1` is MC-MLCC, which scales by
    channels rather than by a wider crossing.

    Args:
        channels: number of channel slices S; D must be divisible by S.
        heads: dynamic MLPs per channel, H.
        dynamic_widths: widths of the dynamic MLP levels, e.g. [4, 1].
        output_width: E2, values per field after the local compressor.
        activation: applied between dynamic levels (default None, as the
            authors' code; then the crossing is exactly polynomial).
        gate: use the SENet field gate.
        kernel_initializer: of the compressors W1 and W2; default
            Xavier-normal per channel (W1) and per field (W2), as in the
            authors' code (Keras' glorot on the 3-D kernels would count
            the channel / field axis into the fans).

    Example:

    >>> import numpy as np
    >>> MLCC(channels=2)(np.ones((3, 5, 8), "float32")).shape
    TensorShape([3, 5, 8])

    Reference: MLCC and MC-MLCC, arXiv:2602.12041 (2026); layout as in
    the authors' code (see docs/mlcc.md).
    """

    def __init__(self, channels=1, heads=4, dynamic_widths=(4, 1), output_width=8,
                 activation=None, gate=True, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = _positive_int("channels", channels)
        self.heads = _positive_int("heads", heads)
        if isinstance(dynamic_widths, int) or not list(dynamic_widths):
            raise ValueError(
                f"`dynamic_widths` must be a non-empty list of positive integers. "
                f"Received: dynamic_widths={dynamic_widths!r}"
            )
        self.dynamic_widths = [_positive_int("dynamic_widths", int(w)) for w in dynamic_widths]
        self.output_width = _positive_int("output_width", output_width)
        self.activation = activation
        self._activation = keras.activations.get(activation) if activation else None
        self.gate = bool(gate)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "MLCC expects embeddings of shape (batch, fields, dim) with known fields and "
                f"dim. Received: shape={tuple(input_shape)}"
            )
        self.num_fields, width = int(input_shape[1]), int(input_shape[2])
        if width % self.channels:
            raise ValueError(
                f"The embedding width {width} must be divisible by `channels`. "
                f"Received: channels={self.channels}"
            )
        self.channel_width = e = width // self.channels
        sizes = [e, *self.dynamic_widths]
        # Entries of one head's dynamic MLP: e*d1 + d1*d2 + ...
        self._block_sizes = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
        per_head = sum(self._block_sizes)
        self.global_kernel = self.add_weight(
            name="global_kernel", shape=(self.channels, self.num_fields * e, self.heads * per_head),
            initializer=self._initializer(self.num_fields * e, self.heads * per_head))
        cross_width = self.channels * self.heads * sum(self.dynamic_widths)
        self.local_kernel = self.add_weight(
            name="local_kernel", shape=(self.num_fields, cross_width + width, self.output_width),
            initializer=self._initializer(cross_width + width, self.output_width))
        if self.gate:
            reduced = max(1, self.num_fields // 2)
            self.gate_dense_1 = keras.layers.Dense(reduced, activation="relu", name="gate_reduce")
            self.gate_norm = keras.layers.LayerNormalization(center=False, scale=False, name="gate_norm")
            self.gate_dense_2 = keras.layers.Dense(self.num_fields, activation="sigmoid", name="gate_expand")
            self.gate_dense_1.build((None, self.num_fields))
            self.gate_norm.build((None, reduced))
            self.gate_dense_2.build((None, reduced))

    def _initializer(self, fan_in, fan_out):
        if self.kernel_initializer is not None:
            return self.kernel_initializer
        # Truncation at 2 sd shrinks the spread by 0.8796; undo it, as Keras does.
        return keras.initializers.TruncatedNormal(stddev=(2.0 / (fan_in + fan_out)) ** 0.5 / 0.8796)

    def crosses(self, embeddings):
        """The kept crossing levels, a list of (B, S, F, H, d_j)."""
        embeddings = tf.convert_to_tensor(embeddings, dtype=self.compute_dtype)
        if not self.built:
            self.build(tuple(embeddings.shape))
            self.built = True
        s, e, f = self.channels, self.channel_width, self.num_fields
        x = tf.transpose(tf.reshape(embeddings, [-1, f, s, e]), [0, 2, 1, 3])  # (B, S, F, e)
        flat = tf.reshape(x, [-1, s, f * e])
        dynamic = tf.einsum("bsi,sio->bso", flat, self.global_kernel)  # (B, S, H*per_head)
        return self._levels(x, dynamic)

    def _levels(self, x, dynamic):
        """Every field vector of x (B, S, m, e) through every head's dynamic
        MLP, whose weights `dynamic` (B, S, H * per_head) hold."""
        s, e, h = self.channels, self.channel_width, self.heads
        m = tf.shape(x)[2]
        dynamic = tf.reshape(dynamic, [-1, s, h, sum(self._block_sizes)])
        pieces = tf.split(dynamic, self._block_sizes, axis=-1)
        sizes = [e, *self.dynamic_widths]
        # Level 1, all heads at once: per (example, channel) one (m, e) @
        # (e, H * d_1) matmul, instead of tiling x over the heads and running
        # B*S*H separate (m, e) @ (e, d_1) products.
        first = tf.reshape(pieces[0], [-1, s, h, e, sizes[1]])
        first = tf.reshape(tf.transpose(first, [0, 1, 3, 2, 4]), [-1, s, e, h * sizes[1]])
        level = tf.reshape(tf.matmul(x, first), [-1, s, m, h, sizes[1]])
        levels = []
        for j, piece in enumerate(pieces):
            if j:
                weights = tf.reshape(piece, [-1, s, h, sizes[j], sizes[j + 1]])
                level = tf.einsum("bsfhi,bshio->bsfho", level, weights)
            if self._activation is not None and j < len(pieces) - 1:
                level = self._activation(level)
            levels.append(level)
        return levels

    def _local_input(self, levels, embeddings):
        """Per field: every channel's crosses and the raw embedding (B, m, I)."""
        crossed = tf.concat(levels, axis=-1)  # (B, S, m, H, sum d)
        width = self.local_kernel.shape[1] - embeddings.shape[-1]
        crossed = tf.reshape(tf.transpose(crossed, [0, 2, 1, 3, 4]), [-1, tf.shape(embeddings)[1], width])
        return tf.concat([crossed, embeddings], axis=-1)  # the raw embedding is the skip path

    def _compress(self, local):
        out = tf.einsum("bfi,fio->bfo", local, self.local_kernel)  # (B, F, E2)
        if self.gate:
            squeezed = tf.reduce_mean(out, axis=-1)
            weights = self.gate_dense_2(self.gate_norm(self.gate_dense_1(squeezed)))
            out = out * tf.expand_dims(weights, -1)
        return out

    def call(self, embeddings):
        return self._compress(self._local_input(self.crosses(embeddings), embeddings))

    def call_on_fields(self, rows, indices, num_fields):
        """The same as `call(place_fields(rows, indices, num_fields))` for the
        kept fields' rows (B, m, D): the layered crossing runs on the m kept
        fields only (an unkept field's zero vector crosses to zero, and the
        local compressor has no bias). The global compressor is one dense
        product on the placed fields: grouping its backward pass by field
        was slower (docs/scale.md, "The grouped backward pass, measured
        again")."""
        s, e = self.channels, self.channel_width
        m = tf.shape(rows)[1]
        x = tf.transpose(tf.reshape(rows, [-1, m, s, e]), [0, 2, 1, 3])  # (B, S, m, e)
        placed = tf.reshape(place_fields(rows, indices, num_fields), [-1, num_fields, s, e])
        flat = tf.reshape(tf.transpose(placed, [0, 2, 1, 3]), [-1, s, num_fields * e])
        dynamic = tf.einsum("bsi,sio->bso", flat, self.global_kernel)  # (B, S, H*per_head)
        local = self._local_input(self._levels(x, dynamic), rows)
        return self._compress(place_fields(local, indices, num_fields))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_width)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, heads=self.heads, dynamic_widths=self.dynamic_widths,
                      output_width=self.output_width, activation=self.activation, gate=self.gate,
                      kernel_initializer=(keras.initializers.serialize(self.kernel_initializer)
                                          if self.kernel_initializer is not None else None))
        return config
