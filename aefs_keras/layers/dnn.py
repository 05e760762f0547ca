"""DNN: the plain MLP backbone."""

import keras

from aefs_keras.layers._backbone import Backbone


@keras.saving.register_keras_serializable(package="aefs_keras")
class DNN(Backbone):
    """Flattened field embeddings -> MLP -> logit.

    Args:
        hidden_units: MLP widths.
        dropout: MLP dropout.
        batch_norm: batch normalisation in the MLP.

    Example:

    >>> import numpy as np
    >>> DNN([8])(np.ones((2, 3, 4), "float32")).shape
    TensorShape([2, 1])
    """

    def build(self, embeddings_shape, linear_shape=None):
        self.check_embeddings("DNN", embeddings_shape)
        flat = (embeddings_shape[0], embeddings_shape[1] * embeddings_shape[2])
        self.mlp.build(flat)
        self.head.build(self.mlp.compute_output_shape(flat))

    def call(self, embeddings, linear=None, training=None):
        return self.head(self.mlp(self.flatten(embeddings), training=training))
