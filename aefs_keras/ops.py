"""Small tensor functions shared by the selection layers."""

from __future__ import annotations

import math

import tensorflow as tf


def resolve_k(num_fields: int, k: int | None, k_ratio: float | None) -> int:
    """The number of fields to keep, from `k` or `k_ratio` (default 0.5)."""
    if k is not None and k_ratio is not None:
        raise ValueError(
            f"Give `k` or `k_ratio`, not both. Received: k={k}, "
            f"k_ratio={k_ratio}"
        )
    if k is None:
        ratio = 0.5 if k_ratio is None else k_ratio
        if not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"`k_ratio` must be in (0, 1]. Received: k_ratio={k_ratio!r}"
            )
        return max(1, int(math.floor(num_fields * ratio)))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_fields:
        raise ValueError(
            f"`k` must be an integer between 1 and the number of fields "
            f"({num_fields}). Received: k={k!r}"
        )
    return k


WEIGHT_SCALES = ("mean", "sum")


def check_weight_scale(weight_scale):
    if weight_scale not in WEIGHT_SCALES:
        raise ValueError(
            f"`weight_scale` must be one of {WEIGHT_SCALES}. Received: weight_scale={weight_scale!r}"
        )
    return weight_scale


def hard_top_k(scores, k: int, reweight: bool = True, scale: float = 1.0, rank_by=None):
    """Per-row hard top-k over field scores.

    Args:
        scores: (B, F) non-negative field scores.
        k: fields kept per row.
        reweight: renormalise the kept scores to sum to 1 per row.
        scale: multiply the weights by this (k makes re-weighted weights
            average 1, so a kept field's embedding keeps its size).
        rank_by: (B, F) keys that choose the kept fields (default `scores`);
            the weights are still the kept fields' scores.

    Returns:
        indices (B, k) int32 sorted ascending, weights (B, k) and the mask
        (B, F) holding the weights at the kept fields and 0 elsewhere.
        Gradients reach `scores` only through the kept values.
    """
    num_fields = scores.shape[-1]
    _, top = tf.math.top_k(scores if rank_by is None else rank_by, k=k, sorted=False)
    indices = tf.sort(top, axis=-1)
    weights = tf.gather(scores, indices, batch_dims=1)
    if reweight:
        weights = weights / (tf.reduce_sum(weights, -1, keepdims=True) + 1e-12)
    if scale != 1.0:
        weights = weights * scale
    mask = scatter_fields(weights, indices, num_fields)
    return indices, weights, mask


def scatter_fields(values, indices, num_fields: int):
    """Place per-row values (B, k, ...) at field positions -> (B, F, ...).

    Positions not in `indices` are zero. Differentiable in `values`.
    """
    indices = tf.cast(indices, tf.int32)
    shape = tf.shape(indices)
    rows = tf.broadcast_to(tf.range(shape[0])[:, None], shape)
    where = tf.stack([rows, indices], axis=-1)
    out_shape = tf.concat(
        [[shape[0], num_fields], tf.shape(values)[2:]], axis=0
    )
    return tf.scatter_nd(where, values, out_shape)
