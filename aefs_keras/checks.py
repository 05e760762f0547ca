"""Argument checks shared by the selection layers and the selection objects.

Plain Python (no TensorFlow), so that `aefs_keras.selection` stays cheap.
"""

from __future__ import annotations

import math

WEIGHT_SCALES = ("mean", "sum")
ALIGNMENTS = ("mse", "kl", "huber")
# "adafs" was the MLP controller's first name; saved configs still use it.
CONTROLLERS = ("mlp", "mvfs")
_CONTROLLER_ALIASES = {"adafs": "mlp"}


def check_controller(controller):
    controller = _CONTROLLER_ALIASES.get(controller, controller)
    if controller not in CONTROLLERS:
        raise ValueError(f"`controller` must be one of {CONTROLLERS}. Received: controller={controller!r}")
    return controller


def check_weight_scale(weight_scale):
    if weight_scale not in WEIGHT_SCALES:
        raise ValueError(
            f"`weight_scale` must be one of {WEIGHT_SCALES}. Received: weight_scale={weight_scale!r}"
        )
    return weight_scale


def resolve_k(num_fields: int, k: int | None, k_ratio: float | None) -> int:
    """The number of fields to keep, from `k` or `k_ratio` (default 0.5)."""
    if k is not None and k_ratio is not None:
        raise ValueError(f"Give `k` or `k_ratio`, not both. Received: k={k}, k_ratio={k_ratio}")
    if k is None:
        ratio = 0.5 if k_ratio is None else k_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"`k_ratio` must be in (0, 1]. Received: k_ratio={k_ratio!r}")
        return max(1, int(math.floor(num_fields * ratio)))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_fields:
        raise ValueError(f"`k` must be an integer in [1, {num_fields}]. Received: k={k!r}")
    return k
