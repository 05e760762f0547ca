"""DCN: DCN-v2 cross network (keras-rs FeatureCross) with an MLP."""

import keras
import keras_rs
import tensorflow as tf

from aefs_keras.layers.backbone import Backbone

STRUCTURES = ("stacked", "parallel")


@keras.saving.register_keras_serializable(package="aefs_keras")
class DCN(Backbone):
    """DCN-v2: x_{l+1} = x0 * (W x_l + b) + x_l, then an MLP.

    "stacked" feeds the cross output to the MLP; "parallel" runs the cross
    network and the MLP side by side on x0 and concatenates them.

    Args:
        num_cross_layers: number of cross layers.
        structure: "stacked" or "parallel".
        projection_dim: low-rank projection of the cross layers (None: full).
        hidden_units: MLP widths.
        dropout: MLP dropout.
        batch_norm: batch normalisation in the MLP.

    Example:

    >>> import numpy as np
    >>> DCN(num_cross_layers=2, hidden_units=[8])(np.ones((2, 3, 4), "float32")).shape
    TensorShape([2, 1])

    Reference: Wang et al., "DCN V2: Improved Deep & Cross Network",
    WWW 2021.
    """

    supports_compact = True
    supports_mixed_widths = True  # the cross layers act on the flat vector, any width

    def __init__(self, num_cross_layers=3, structure="stacked", projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_cross_layers, int) or num_cross_layers < 1:
            raise ValueError(
                f"`num_cross_layers` must be a positive integer. Received: "
                f"num_cross_layers={num_cross_layers!r}"
            )
        if structure not in STRUCTURES:
            raise ValueError(f"`structure` must be one of {STRUCTURES}. Received: structure={structure!r}")
        self.num_cross_layers = num_cross_layers
        self.structure = structure
        self.projection_dim = projection_dim
        self.crosses = [
            keras_rs.layers.FeatureCross(projection_dim=projection_dim, name=f"cross_{i}")
            for i in range(num_cross_layers)
        ]

    def build(self, embeddings_shape, linear_shape=None, indices_shape=None):
        flat = self.flat_shape(embeddings_shape, indices_shape)
        for cross in self.crosses:
            cross.build(flat)
            # FeatureCross.build creates its Dense layers but leaves them
            # unbuilt; build them here so that .keras reload finds their weights.
            if cross.projection_dim is not None:
                cross.down_proj_dense.build(flat)
                cross.dense.build((flat[0], cross.projection_dim))
            else:
                cross.dense.build(flat)
        self.mlp.build(flat)
        width = self.mlp.compute_output_shape(flat)[-1]
        if self.structure == "parallel":
            width += flat[-1]
        self.head.build((flat[0], width))

    def call(self, embeddings, linear=None, indices=None, training=None):
        # The cross layers multiply by x0 elementwise, so they need the
        # scattered x0; the parallel MLP takes the same flat input.
        x0 = self.flat_input(embeddings, indices)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        if self.structure == "stacked":
            return self.head(self.mlp(x, training=training))
        return self.head(tf.concat([x, self.mlp(x0, training=training)], axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(num_cross_layers=self.num_cross_layers, structure=self.structure,
                      projection_dim=self.projection_dim)
        return config
