"""WideDeep: a wide linear part over the ids plus a deep MLP."""

import keras

from aefs_keras.layers.backbone import Backbone


@keras.saving.register_keras_serializable(package="aefs_keras")
class WideDeep(Backbone):
    """logit = sum(linear) + Dense(MLP(flatten(embeddings))).

    The wide part is one learned weight per id (`linear`, (B, F, 1)),
    looked up by the model like the embeddings.

    Args:
        hidden_units: MLP widths.
        dropout: MLP dropout.
        batch_norm: batch normalisation in the MLP.

    Example:

    >>> import numpy as np
    >>> WideDeep([8])(np.ones((2, 3, 4), "float32"), np.ones((2, 3, 1), "float32")).shape
    TensorShape([2, 1])

    Reference: Cheng et al., "Wide & Deep Learning for Recommender
    Systems", DLRS 2016.
    """

    uses_linear = True
    supports_compact = True
    supports_factored_fill = True
    supports_mixed_widths = True

    def call(self, embeddings, linear=None, indices=None, training=None, fill_codes=None, fill_weights=None):
        fill = self.fill_of(fill_codes, fill_weights)
        logit = self.head(self.deep(embeddings, indices, training=training, fill=fill))
        if linear is not None:
            logit = logit + self.linear_logit(linear)
        return logit
