"""DeepFM: first-order term + factorization machine + MLP."""

import keras

from aefs_keras.layers._backbone import Backbone
from aefs_keras.layers.factorization_machine import FactorizationMachine


@keras.saving.register_keras_serializable(package="aefs_keras")
class DeepFM(Backbone):
    """logit = sum(linear) + FM(embeddings) + Dense(MLP(flatten(embeddings))).

    Args:
        hidden_units: MLP widths.
        dropout: MLP dropout.
        batch_norm: batch normalisation in the MLP.

    Call with embeddings (B, F, d) and optionally `linear` (B, F, 1), the
    first-order weight of each field's id (absent for the small auxiliary
    head).

    Example:

    >>> import numpy as np
    >>> DeepFM([8])(np.ones((2, 3, 4), "float32"), np.ones((2, 3, 1), "float32")).shape
    TensorShape([2, 1])

    Reference: Guo et al., "DeepFM: A Factorization-Machine based Neural
    Network for CTR Prediction", IJCAI 2017.
    """

    uses_linear = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fm = FactorizationMachine(name="fm")

    def build(self, embeddings_shape, linear_shape=None):
        self.check_embeddings("DeepFM", embeddings_shape)
        flat = (embeddings_shape[0], embeddings_shape[1] * embeddings_shape[2])
        self.mlp.build(flat)
        self.head.build(self.mlp.compute_output_shape(flat))

    def call(self, embeddings, linear=None, training=None):
        logit = self.head(self.mlp(self.flatten(embeddings), training=training))
        logit = logit + self.fm(embeddings)
        if linear is not None:
            logit = logit + self.linear_logit(linear)
        return logit
