"""What a model reads and computes per example."""

from __future__ import annotations

import keras

from aefs_keras.layers.auxiliary_selector import AuxiliarySelector
from aefs_keras.layers.conditional_embedding import ConditionalEmbedding
from aefs_keras.layers.field_embedding import FieldEmbedding

_EMBEDDING_LAYERS = (FieldEmbedding, AuxiliarySelector, ConditionalEmbedding)


def _graph_layers(model):
    # Top-level layers only: a selector's own FieldEmbedding is counted by
    # the selector, not twice. Nested models are walked.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _graph_layers(layer)
        else:
            yield layer


def activated_embedding_parameters(model: keras.Model) -> int:
    """Embedding values looked up per example, all tables counted.

    No selection and late selection read F * d per table; AEFS reads
    F * d_aux (auxiliary) + k * d per main table. This is the paper's
    "activated embedding parameters", with first-order (width-1) tables
    included.
    """
    total = 0
    for layer in _graph_layers(model):
        if isinstance(layer, _EMBEDDING_LAYERS):
            total += layer.activated_parameters()
    return total
