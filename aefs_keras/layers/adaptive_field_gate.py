"""AdaptiveFieldGate: late adaptive selection (AdaFS / MvFS) on full embeddings."""

from __future__ import annotations

import keras

from aefs_keras.layers._selection_stats import add_selection_stats, update_selection_stats
from aefs_keras.layers.selection_controller import SelectionController
from aefs_keras.ops import hard_top_k
from aefs_keras.checks import check_controller, check_weight_scale, resolve_k


@keras.saving.register_keras_serializable(package="aefs_keras")
class AdaptiveFieldGate(keras.layers.Layer):
    """Late adaptive feature selection: the AdaFS baseline.

    Every field is looked up at full width first; a controller scores the
    fields of each example, the top-k are kept (scores re-weighted to sum
    to 1) and the others are zeroed. Nothing is saved on lookups; this is
    the baseline that `AuxiliarySelector` + `ConditionalEmbedding` replace.

    Args:
        num_fields: F.
        k: fields kept per example; or `k_ratio` of F (default 0.5).
        k_ratio: fraction of fields kept when `k` is None.
        controller: "mlp" (default, AdaFS's controller) or "mvfs".
        dropout: controller dropout.
        reweight: renormalise the kept scores to sum to 1.
        output_layer: linear layer before the controller's softmax (default
            True; False is the paper's exact controller, see SelectionController).
        weight_scale: "mean" (default): the re-weighted scores times k, so
            they average 1; "sum": they sum to 1 (the paper's form).

    Returns a dict: `embeddings` (B, F, d) gated, `mask` (B, F),
    `indices` (B, k) and `weights` (B, k).

    Example:

    >>> import numpy as np
    >>> out = AdaptiveFieldGate(4, k=2)(np.random.rand(3, 4, 8).astype("float32"))
    >>> out["indices"].shape, out["embeddings"].shape
    (TensorShape([3, 2]), TensorShape([3, 4, 8]))

    Reference: Lin et al., "AdaFS: Adaptive Feature Selection in Deep
    Recommender System", KDD 2022.
    """

    def __init__(self, num_fields, k=None, k_ratio=None, controller="mlp",
                 dropout=0.2, reweight=True, weight_scale="mean", output_layer=True, **kwargs):
        super().__init__(**kwargs)
        self.num_fields = num_fields
        self.k = resolve_k(num_fields, k, k_ratio)
        self.controller = check_controller(controller)
        self.dropout = dropout
        self.reweight = reweight
        self.weight_scale = check_weight_scale(weight_scale)
        self._controller = SelectionController(
            num_fields, controller=controller, dropout=dropout,
            output_layer=output_layer, name="controller",
        )
        self.output_layer = bool(output_layer)

    def build(self, embeddings_shape):
        self._controller.build(embeddings_shape)
        add_selection_stats(self, self.num_fields)

    def call(self, embeddings, training=None):
        scores = self._controller(embeddings, training=training)
        scale = float(self.k) if self.weight_scale == "mean" else 1.0
        indices, weights, mask = hard_top_k(scores, self.k, self.reweight, scale)
        update_selection_stats(self, indices, self.num_fields, training)
        return {
            "embeddings": embeddings * mask[..., None],
            "mask": mask,
            "indices": indices,
            "weights": weights,
        }

    OUTPUT_KEYS = ("embeddings", "mask", "indices", "weights")

    def compute_output_spec(self, embeddings):
        b = embeddings.shape[0]
        return {
            "embeddings": keras.KerasTensor(embeddings.shape, "float32"),
            "mask": keras.KerasTensor((b, self.num_fields), "float32"),
            "indices": keras.KerasTensor((b, self.k), "int32"),
            "weights": keras.KerasTensor((b, self.k), "float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_fields=self.num_fields, k=self.k, controller=self.controller,
                      dropout=self.dropout, reweight=self.reweight,
                      weight_scale=self.weight_scale, output_layer=self.output_layer)
        return config
