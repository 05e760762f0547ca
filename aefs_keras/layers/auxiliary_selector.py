"""AuxiliarySelector: the small model that picks each example's top-k fields."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.layers._selection_stats import add_selection_stats, update_selection_stats
from aefs_keras.layers.field_embedding import (FieldEmbedding, check_field_sizes, check_ids_shape,
                                               ids_shape_of, layout_config)
from aefs_keras.layers.selection_controller import NORM_MOMENTUM, SelectionController
from aefs_keras.ops import hard_top_k
from aefs_keras.checks import check_controller, check_weight_scale, resolve_k


@keras.saving.register_keras_serializable(package="aefs_keras")
class AuxiliarySelector(keras.layers.Layer):
    """Early adaptive selection: picks k fields per example before the big lookup.

    Embeds all F fields at a small width `d_aux` (one table, per-field
    offsets), batch-normalises over the embedding dimension, scores the
    fields with a controller ("mlp" or "mvfs") and keeps each example's
    top-k. Indices come sorted ascending; the kept scores are re-weighted
    to sum to 1. The controller learns only through the kept scores (no
    straight-through trick), as in the paper.

    Args:
        field_sizes: ids per field (`Schema.field_sizes`).
        k: fields kept per example (1 <= k <= F); or give `k_ratio`.
        k_ratio: fraction of F kept when `k` is None (default 0.5).
        d_aux: width of the auxiliary embeddings (default 4).
        controller: "mlp" (default, AdaFS's controller) or "mvfs".
        dropout: controller dropout.
        reweight: renormalise the kept scores to sum to 1.
        output_layer: linear layer before the controller's softmax (default
            True; False is the paper's exact controller, see SelectionController).
        weight_scale: how the returned `weights` (the main lookups') are
            scaled: "mean" (default): times k, so they average 1; "sum":
            they sum to 1 (the paper's form). `mask` (for the auxiliary
            head and the alignment) always holds the paper's weights.
        embeddings_initializer: initializer of the auxiliary table.
        field_prior: F numbers, the controller's initial output bias: a
            starting ranking of the fields (see `SelectionController` and
            `aefs_keras.importance`; default None: zeros).
        warmup_steps: training steps of soft selection before the hard
            top-k (default 0: none). Meanwhile `mask` holds every field's
            soft score (summing to 1) and `warming` is 1, which tells
            `ConditionalEmbedding` to look up all F fields, so every score
            gets a gradient from the main model, as in AdaFS's pretraining;
            the step count is saved with the model. Inference always keeps
            the top k.
        fixed_fields: field positions kept on every row (at most k); the
            other k - len(fixed_fields) are chosen per row (default none).
        num_fixed: with no `fixed_fields`, how many fields every row keeps
            once they are ranked during `fit`: `CTRModel.fit` adds
            `aefs_keras.callbacks.RankFields`, which after `rank_epochs`
            epochs measures the model's permutation importance on
            validation rows and fixes the top `num_fixed` fields
            (`set_fixed_fields`; saved with the model). Until then all k are
            chosen per row.
        rank_epochs: epochs before that ranking (default 1).
        offsets, bag_fields: as in `FieldEmbedding` (shared blocks,
            multi-valued fields).

    Call with ids (B, F) of per-field ids. Returns a dict: `indices`
    (B, k) int32, `weights` (B, k), `mask` (B, F) with the weights at the
    kept fields, `scores` (B, F), `embeddings` (B, F, d_aux) and `warming`
    (B,), 1.0 while a training step is within `warmup_steps`, else 0.0.

    Example:

    >>> import numpy as np
    >>> sel = AuxiliarySelector([10, 10, 10, 10], k=2)
    >>> out = sel(np.array([[1, 2, 3, 4], [0, 0, 9, 9]]))
    >>> out["indices"].shape, out["mask"].shape
    (TensorShape([2, 2]), TensorShape([2, 4]))

    Reference: "Adaptive Early Feature Selection for Efficient CTR
    Prediction", arXiv 2509.12076 (IEEE TKDE 2025).
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        k: int | None = None,
        k_ratio: float | None = None,
        d_aux: int = 4,
        controller: str = "adafs",
        dropout: float = 0.2,
        reweight: bool = True,
        weight_scale: str = "mean",
        output_layer: bool = True,
        embeddings_initializer="uniform",
        warmup_steps: int = 0,
        field_prior=None,
        fixed_fields=(),
        num_fixed: int = 0,
        rank_epochs: int = 1,
        offsets=None,
        bag_fields=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.field_sizes = check_field_sizes(field_sizes)
        self.k = resolve_k(self.num_fields, k, k_ratio)
        if not isinstance(d_aux, int) or d_aux < 1:
            raise ValueError(f"`d_aux` must be a positive integer. Received: d_aux={d_aux!r}")
        self.d_aux = d_aux
        self.controller = check_controller(controller)
        self.dropout = dropout
        self.reweight = bool(reweight)
        self.weight_scale = check_weight_scale(weight_scale)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self._embedding = FieldEmbedding(
            self.field_sizes, d_aux, embeddings_initializer=self.embeddings_initializer,
            offsets=offsets, bag_fields=bag_fields, name="aux_embedding",
        )
        self.offsets, self.bag_fields = self._embedding.offsets, self._embedding.bag_fields
        self._norm = keras.layers.BatchNormalization(axis=-1, momentum=NORM_MOMENTUM, synchronized=True,
                                                     name="aux_norm")
        self._controller = SelectionController(
            self.num_fields, controller=controller, dropout=dropout,
            output_layer=output_layer, field_prior=field_prior, name="controller",
            **self._controller_options(),
        )
        self.output_layer = bool(output_layer)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(
                f"`warmup_steps` must be an integer >= 0. Received: warmup_steps={warmup_steps!r}"
            )
        self.warmup_steps = warmup_steps
        fixed_fields = tuple(int(f) for f in fixed_fields)
        if len(set(fixed_fields)) != len(fixed_fields) or len(fixed_fields) > self.k or any(
                not 0 <= f < self.num_fields for f in fixed_fields):
            raise ValueError(f"`fixed_fields` must be at most k = {self.k} distinct field positions in "
                             f"[0, {self.num_fields}). Received: fixed_fields={fixed_fields!r}")
        for name, value, low in (("num_fixed", num_fixed, 0), ("rank_epochs", rank_epochs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if num_fixed > self.k or (num_fixed and fixed_fields):
            raise ValueError(f"`num_fixed` must be at most k = {self.k}, and 0 when `fixed_fields` are given. "
                             f"Received: num_fixed={num_fixed!r}, fixed_fields={fixed_fields!r}")
        self.fixed_fields, self.num_fixed, self.rank_epochs = fixed_fields, num_fixed, rank_epochs

    @property
    def num_fields(self) -> int:
        return len(self.field_sizes)

    def build(self, ids_shape):
        check_ids_shape("AuxiliarySelector", ids_shape, self.num_fields)
        self._embedding.build(ids_shape)
        emb_shape = (ids_shape_of(ids_shape)[0], self.num_fields, self.d_aux)
        self._norm.build(emb_shape)
        self._controller.build(emb_shape)
        add_selection_stats(self, self.num_fields)
        if self.warmup_steps:
            self.step = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="step",
                aggregation="only_first_replica",  # one training step, however many replicas
            )
        if self.num_fixed:
            # 1 at the fields ranked in fit (all 0 until then).
            self.fixed = self.add_weight(shape=(self.num_fields,), initializer="zeros", trainable=False,
                                         name="fixed", aggregation="only_first_replica")

    def call(self, ids, training=None):
        emb = self._norm(self._embedding(ids), training=training)
        scores = self._controller(emb, training=training)
        # Every field's share of the scores (MvFS scores do not sum to 1).
        soft = scores / (tf.reduce_sum(scores, -1, keepdims=True) + 1e-12)
        keys = self._rank_keys(scores, training)
        lift = self._fixed_lift(scores.dtype)
        if lift is not None:  # far above any score: these are in every row's top k
            keys = (scores if keys is None else keys) + lift
        indices, weights, mask = hard_top_k(scores, self.k, self.reweight, rank_by=keys)
        if self.weight_scale == "mean":
            weights = weights * float(self.k)
        mask = self._aux_mask(mask, soft)
        update_selection_stats(self, indices, self.num_fields, training)
        warming = tf.zeros(tf.shape(scores)[:1], scores.dtype)
        if training and self.warmup_steps:
            on = self.step < float(self.warmup_steps)
            self.step.assign_add(1.0)
            # Every field at its soft score: with the hard top-k the dropped
            # fields get no gradient, so the first kept set would stay kept.
            mask = tf.where(on, soft, mask)
            warming = warming + tf.cast(on, scores.dtype)
        return {
            "indices": indices,
            "weights": weights,
            "mask": mask,
            "scores": scores,
            "embeddings": emb,
            "warming": warming,
        }

    def _fixed_lift(self, dtype):
        """(F,) 1e4 at the fields kept on every row, else 0 (None: none)."""
        if self.fixed_fields:
            return tf.constant([1e4 if f in self.fixed_fields else 0.0 for f in range(self.num_fields)], dtype)
        if not self.num_fixed:
            return None
        return tf.cast(tf.convert_to_tensor(self.fixed), dtype) * 1e4

    @property
    def needs_ranking(self) -> bool:
        """True while fields are to be ranked in fit and are not yet."""
        return bool(self.num_fixed) and not self.fixed_field_positions()

    def set_fixed_fields(self, positions) -> None:
        """Fixes these `num_fixed` fields on every row (the in-fit ranking)."""
        positions = sorted(int(p) for p in positions)
        if not self.num_fixed or len(set(positions)) != self.num_fixed or any(
                not 0 <= p < self.num_fields for p in positions):
            raise ValueError(f"`positions` must be {self.num_fixed} distinct field positions in "
                             f"[0, {self.num_fields}) (num_fixed={self.num_fixed}). Received: {positions!r}")
        self.fixed.assign([1.0 if f in positions else 0.0 for f in range(self.num_fields)])

    def fixed_field_positions(self) -> list[int]:
        """The fields every row keeps: the given ones, or those ranked in
        fit ([] until ranked)."""
        if self.fixed_fields or not self.num_fixed:
            return sorted(self.fixed_fields)
        return [int(f) for f in np.flatnonzero(keras.ops.convert_to_numpy(self.fixed) > 0.5)]

    # Hooks for `aefs_keras.experimental.ExploringSelector`.
    def _controller_options(self):
        return {}

    def _rank_keys(self, scores, training):
        """Keys that choose the kept fields (None: the scores)."""
        return None

    def _aux_mask(self, mask, soft):
        return mask

    OUTPUT_KEYS = ("indices", "weights", "mask", "scores", "embeddings", "warming")

    def activated_parameters(self) -> int:
        """Auxiliary embedding values read per example (all F fields)."""
        return self.num_fields * self.d_aux

    def get_config(self):
        config = super().get_config()
        config.update(
            field_sizes=list(self.field_sizes),
            k=self.k,
            d_aux=self.d_aux,
            controller=self.controller,
            dropout=self.dropout,
            reweight=self.reweight,
            weight_scale=self.weight_scale,
            output_layer=self.output_layer,
            warmup_steps=self.warmup_steps,
            field_prior=self._controller.field_prior,
            fixed_fields=list(self.fixed_fields),
            num_fixed=self.num_fixed,
            rank_epochs=self.rank_epochs,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            **layout_config(self),
        )
        return config

    # Options that moved to `aefs_keras.experimental.ExploringSelector`.
    _MOVED = {"soft_gradient": False, "exploration": 0.0, "score_decay": 0.0}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name, off in cls._MOVED.items():
            if name in config and cls is AuxiliarySelector:
                value = config.pop(name)
                if value != off:
                    raise ValueError(
                        f"This AuxiliarySelector was saved with {name}={value!r}, an option that "
                        "moved to aefs_keras.experimental.ExploringSelector. Received: "
                        f"{name}={value!r}")
        return cls(**config)
