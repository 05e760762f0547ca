"""Field importance by permutation, and a selector prior made from it.

A model without selection is trained briefly; shuffling one field's column
across held-out rows and measuring the AUC lost says how much the model
uses that field (permutation importance, one of the selectors ERASE
benchmarks). `importance_prior` turns those drops into logit offsets for
the AEFS controller (`build_model(field_prior=...)`), so the adaptive
selector starts from a ranking that reflects the label instead of from a
random one (docs/aefs.md, "Importance prior").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aefs_keras.metrics import auc_score


def _probabilities(model, features, batch_size):
    if not hasattr(model, "predict_on_batch"):  # a function of the features
        return np.asarray(model(features)).ravel()
    # Batch by batch through tensors rather than `model.predict`, which
    # rejects string columns held as object arrays (rows read from files).
    n = len(next(iter(features.values())))
    parts = []
    for lo in range(0, n, batch_size):
        out = model.predict_on_batch({k: tf.constant(np.asarray(v)[lo:lo + batch_size])
                                      for k, v in features.items()})
        if isinstance(out, dict):  # AEFS models also return the auxiliary head
            out = out["probability"]
        parts.append(np.asarray(out).ravel())
    return np.concatenate(parts)


def permutation_importance(model, features: dict, labels, seed: int = 0,
                           batch_size: int = 4096) -> np.ndarray:
    """AUC lost when each field's column is shuffled across the rows.

    Args:
        model: a Keras model taking the feature dict and returning the
            click probability (or a dict with "probability"), or a function
            from the feature dict to the probabilities.
        features: field name -> array of held-out rows (not training rows).
        labels: their 0/1 labels.
        seed: seed of the shuffles.
        batch_size: prediction batch size.

    Returns:
        (F,) float array in the order of `features`: AUC with all columns
        minus AUC with that column shuffled (about 0 for an unused field).

    Example:

    >>> import numpy as np, keras
    >>> x = {"a": np.linspace(-1, 1, 200).astype("float32"), "b": np.zeros(200, "float32")}
    >>> inputs = {n: keras.Input((), name=n) for n in x}
    >>> model = keras.Model(inputs, keras.ops.sigmoid(inputs["a"] + 0 * inputs["b"]))
    >>> drops = permutation_importance(model, x, (x["a"] > 0).astype(int))
    >>> bool(drops[0] > 0.3), float(drops[1])
    (True, 0.0)
    """
    if not isinstance(features, dict) or not features:
        raise ValueError("`features` must be a non-empty dict of field name -> column. "
                         f"Received: {type(features).__name__}")
    labels = np.asarray(labels).ravel()
    lengths = {len(np.asarray(v)) for v in features.values()}
    if lengths != {len(labels)}:
        raise ValueError(f"Every column of `features` must have one value per label ({len(labels)}). "
                         f"Received column lengths: {sorted(lengths)}")
    rng = np.random.default_rng(seed)
    base = auc_score(labels, _probabilities(model, features, batch_size))
    drops = []
    for name in features:
        shuffled = dict(features)
        shuffled[name] = np.asarray(features[name])[rng.permutation(len(labels))]
        drops.append(base - auc_score(labels, _probabilities(model, shuffled, batch_size)))
    return np.array(drops)


def importance_prior(importance, scale: float = 1.0, clip: float = 3.0) -> list[float]:
    """Controller logit offsets from per-field importance: the importance
    standardised over fields, clipped to +-`clip` standard deviations (one
    very strong field should not take every row's softmax), times `scale`.
    """
    imp = np.asarray(importance, dtype="float64").ravel()
    if imp.size == 0 or not np.all(np.isfinite(imp)):
        raise ValueError(f"`importance` must be finite numbers, one per field. Received: {imp.tolist()}")
    z = (imp - imp.mean()) / (imp.std() + 1e-12)
    return (scale * np.clip(z, -clip, clip)).tolist()


def most_important(importance, m: int) -> tuple[int, ...]:
    """The indices of the `m` fields with the largest importance, in field
    order (ties go to the earlier field), e.g. for
    `experimental.ResearchAEFS(always_keep=...)`.

    >>> most_important([0.01, 0.03, 0.0, 0.02], 2)
    (1, 3)
    """
    imp = np.asarray(importance, dtype="float64").ravel()
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 0 <= m <= imp.size:
        raise ValueError(f"`m` must be an integer from 0 to the number of fields ({imp.size}). Received: m={m!r}")
    if not np.all(np.isfinite(imp)):
        raise ValueError(f"`importance` must be finite numbers, one per field. Received: {imp.tolist()}")
    return tuple(sorted(int(i) for i in np.argsort(-imp, kind="stable")[:m]))

