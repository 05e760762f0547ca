"""DeepFM: first-order term + factorization machine + MLP."""

import keras

from aefs_keras.layers.backbone import Backbone, is_group_shapes
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
    head). Takes field groups of mixed widths too (the MLP reads each field
    at its width; the FM projects the narrower ones).

    Example:

    >>> import numpy as np
    >>> DeepFM([8])(np.ones((2, 3, 4), "float32"), np.ones((2, 3, 1), "float32")).shape
    TensorShape([2, 1])

    Reference: Guo et al., "DeepFM: A Factorization-Machine based Neural
    Network for CTR Prediction", IJCAI 2017.
    """

    uses_linear = True
    supports_compact = True
    supports_factored_fill = True
    supports_mixed_widths = True

    def __init__(self, hidden_units=(400, 400, 400), dropout=0.0, batch_norm=False, num_fields=None,
                 **kwargs):
        super().__init__(hidden_units, dropout, batch_norm, num_fields, **kwargs)
        self.fm = FactorizationMachine(name="fm")

    def build(self, embeddings_shape, linear_shape=None, indices_shape=None):
        super().build(embeddings_shape, linear_shape, indices_shape)
        if is_group_shapes(embeddings_shape):  # the FM's projections of the narrow fields
            self.fm.build(embeddings_shape)

    def call(self, embeddings, linear=None, indices=None, training=None, fill_codes=None, fill_weights=None):
        fill = self.fill_of(fill_codes, fill_weights)
        logit = self.head(self.deep(embeddings, indices, training=training, fill=fill))
        # Zero vectors add nothing to the FM or the linear sum, so on compact
        # rows both run over the kept fields only (plus the factored fill).
        logit = logit + self.fm(embeddings, fill)
        if linear is not None:
            logit = logit + self.linear_logit(linear)
        return logit
