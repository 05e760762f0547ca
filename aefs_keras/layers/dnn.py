"""DNN: the plain MLP backbone."""

import keras

from aefs_keras.layers.backbone import Backbone


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

    # The base class's build and call are the DNN.
    supports_compact = True
    supports_factored_fill = True
    supports_mixed_widths = True
