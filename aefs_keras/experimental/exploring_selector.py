"""ExploringSelector: AuxiliarySelector with exploration and soft gradients."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.layers.auxiliary_selector import AuxiliarySelector


@keras.saving.register_keras_serializable(package="aefs_keras")
class ExploringSelector(AuxiliarySelector):
    """`AuxiliarySelector` with three ways to reach the fields it drops.

    Args:
        soft_gradient: the returned `mask` is the hard mask in the forward
            pass but differentiates like the soft scores of all F fields
            (straight-through), so a dropped field whose auxiliary embedding
            would lower the loss gets its score raised (default False).
        exploration: Gumbel noise scale of the training-time top-k (0:
            plain top-k; 1: k fields sampled without replacement from the
            scores). Inference always keeps the top k.
        score_decay: L2 penalty on the controller's output layer (see
            `SelectionController`; default 0).
        always_keep: field indices every row keeps (at most k; default
            none); the other k - len(always_keep) are chosen per row as
            usual. Their weights are still their scores, so the controller
            keeps learning how much each matters.
        **kwargs: as `AuxiliarySelector`.

    Example:

    >>> import numpy as np
    >>> sel = ExploringSelector([10, 10, 10, 10], k=2, exploration=1.0)
    >>> sel(np.array([[1, 2, 3, 4]]), training=True)["indices"].shape
    TensorShape([1, 2])
    """

    def __init__(self, field_sizes, soft_gradient=False, exploration=0.0, score_decay=0.0, always_keep=(),
                 **kwargs):
        if isinstance(exploration, bool) or not isinstance(exploration, (int, float)) or exploration < 0:
            raise ValueError(f"`exploration` must be a number >= 0. Received: exploration={exploration!r}")
        self.soft_gradient = bool(soft_gradient)
        self.exploration = float(exploration)
        self.score_decay = score_decay  # checked by SelectionController
        super().__init__(field_sizes, **kwargs)
        always_keep = tuple(int(f) for f in always_keep)
        if len(set(always_keep)) != len(always_keep) or len(always_keep) > self.k or any(
                not 0 <= f < self.num_fields for f in always_keep):
            raise ValueError(f"`always_keep` must be at most k = {self.k} distinct field indices in "
                             f"[0, {self.num_fields}). Received: always_keep={always_keep!r}")
        self.always_keep = always_keep
        self._explore_seed = keras.random.SeedGenerator() if self.exploration > 0 else None

    def _controller_options(self):
        return {"score_decay": self.score_decay}

    def _rank_keys(self, scores, training):
        keys = None
        if training and self.exploration > 0:
            # Gumbel top-k: k fields drawn without replacement from the scores,
            # so a dropped field is sometimes kept and its score gets a gradient.
            u = keras.random.uniform(tf.shape(scores), 1e-9, 1.0, seed=self._explore_seed)
            keys = tf.math.log(scores + 1e-12) - self.exploration * tf.math.log(-tf.math.log(u))
        if self.always_keep:
            # Far above any score or log-score: these are in every row's top k.
            lift = [1e4 if f in self.always_keep else 0.0 for f in range(self.num_fields)]
            keys = (scores if keys is None else keys) + tf.constant(lift, scores.dtype)
        return keys

    def _aux_mask(self, mask, soft):
        if not self.soft_gradient:
            return mask
        return mask + (soft - tf.stop_gradient(soft))  # forward: hard; backward: also soft

    def get_config(self):
        config = super().get_config()
        config.update(soft_gradient=self.soft_gradient, exploration=self.exploration,
                      score_decay=self._controller.score_decay, always_keep=list(self.always_keep))
        return config
