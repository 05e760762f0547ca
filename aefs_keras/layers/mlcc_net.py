"""MLCCNet: MLCC blocks, then an MLP, as a backbone ("mlcc", "mc_mlcc")."""

import keras
import tensorflow as tf

from aefs_keras.layers.backbone import Backbone
from aefs_keras.layers.mlcc import MLCC, _positive_int


@keras.saving.register_keras_serializable(package="aefs_keras")
class MLCCNet(Backbone):
    """Field embeddings -> `num_blocks` MLCC blocks -> flatten -> MLP -> logit.

    Unselected fields (AEFS, AdaFS) arrive as zero vectors: they add
    nothing to the global compressor and their crosses are zero.

    Args:
        channels: 1 for MLCC, > 1 for MC-MLCC (the embedding width and
            `output_width` must be divisible by it).
        heads, dynamic_widths, output_width, activation, gate: see `MLCC`.
        num_blocks: MLCC blocks stacked; later blocks take the previous
            block's (B, F, output_width) as their embeddings.
        hidden_units, dropout, batch_norm: the MLP (authors: 256-128-64-32,
            dropout 0.2).

    Example:

    >>> import numpy as np
    >>> MLCCNet(channels=2, hidden_units=[8])(np.ones((2, 5, 8), "float32")).shape
    TensorShape([2, 1])

    Reference: MLCC and MC-MLCC, arXiv:2602.12041 (2026).
    """

    supports_compact = True

    def __init__(self, channels=1, heads=4, dynamic_widths=(4, 1), output_width=8,
                 activation=None, gate=True, num_blocks=1, **kwargs):
        super().__init__(**kwargs)
        self.num_blocks = _positive_int("num_blocks", num_blocks)
        if num_blocks > 1 and output_width % channels:
            raise ValueError(
                f"Stacked blocks need `output_width` divisible by `channels`. Received: "
                f"output_width={output_width}, channels={channels}"
            )
        self.blocks = [
            MLCC(channels=channels, heads=heads, dynamic_widths=dynamic_widths,
                 output_width=output_width, activation=activation, gate=gate, name=f"mlcc_{i}")
            for i in range(num_blocks)
        ]
        first = self.blocks[0]
        self.channels, self.heads = first.channels, first.heads
        self.dynamic_widths, self.output_width = first.dynamic_widths, first.output_width
        self.activation, self.gate = activation, first.gate

    def build(self, embeddings_shape, linear_shape=None, indices_shape=None):
        shape = self.field_shape(embeddings_shape, indices_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        flat = (shape[0], shape[1] * shape[2])
        self.mlp.build(flat)
        self.head.build(self.mlp.compute_output_shape(flat))

    def call(self, embeddings, linear=None, indices=None, training=None):
        if indices is None:
            x = self.blocks[0](embeddings)
        else:  # the first block crosses the kept fields only
            with tf.name_scope(self.blocks[0].name):
                x = self.blocks[0].call_on_fields(embeddings, indices, self.num_fields)
        for block in self.blocks[1:]:
            x = block(x)
        return self.head(self.mlp(self.flatten(x), training=training))

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, heads=self.heads, dynamic_widths=self.dynamic_widths,
                      output_width=self.output_width, activation=self.activation, gate=self.gate,
                      num_blocks=self.num_blocks)
        return config
