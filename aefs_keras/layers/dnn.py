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

    supports_compact = True

    def build(self, embeddings_shape, linear_shape=None, indices_shape=None):
        self.build_deep(self.field_shape(embeddings_shape, indices_shape))

    def call(self, embeddings, linear=None, indices=None, training=None):
        return self.head(self.deep(embeddings, indices, training=training))
