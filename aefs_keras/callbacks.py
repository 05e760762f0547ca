"""Training callbacks."""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.inputs import model_inputs
from aefs_keras.serving import inference_model, selector_of


class FieldSelectionFrequency(keras.callbacks.Callback):
    """Records, per epoch, how often each field was selected in training.

    Reads the exact counters the selecting layer (`AuxiliarySelector` or
    `AdaptiveFieldGate`) keeps over training batches, so it costs no extra
    pass. After `fit`, `frequencies` is a list (one per epoch) of arrays
    (F,) with the fraction of training examples that kept each field, and
    `field_names` names them when the model has a schema.

    Args:
        verbose: print the most selected fields at each epoch end.
    """

    def __init__(self, verbose: int = 0):
        super().__init__()
        self.verbose = verbose
        self.frequencies: list[np.ndarray] = []
        self.field_names: list[str] | None = None

    def _selector(self):
        return selector_of(self.model, required="FieldSelectionFrequency")

    def on_train_begin(self, logs=None):
        schema = getattr(self.model, "schema", None)
        self.field_names = schema.names if schema is not None else None
        self._selector()

    def on_epoch_begin(self, epoch, logs=None):
        sel = self._selector()
        sel.selection_counts.assign(np.zeros(sel.selection_counts.shape, "float32"))
        sel.selection_rows.assign(0.0)

    def on_epoch_end(self, epoch, logs=None):
        sel = self._selector()
        rows = float(keras.ops.convert_to_numpy(sel.selection_rows))
        counts = keras.ops.convert_to_numpy(sel.selection_counts)
        freq = counts / max(rows, 1.0)
        self.frequencies.append(freq)
        if self.verbose:
            names = self.field_names or [str(i) for i in range(len(freq))]
            top = np.argsort(-freq)[:8]
            print("selected most: " + ", ".join(f"{names[i]} {freq[i]:.2f}" for i in top))


def selection_frequency(model: keras.Model, dataset) -> np.ndarray:
    """How often each field is kept when `model` serves `dataset`.

    Runs the inference graph (`aefs_keras.serving.inference_model`: the
    selector in inference mode, with its batch norms' moving statistics)
    over `dataset` (a dataset of batches of features, or (features, label);
    or a dict of arrays, as `predict` takes) and returns
    an array (F,): the fraction of rows that kept each field.
    `FieldSelectionFrequency` counts training batches instead.
    """
    selector = selector_of(model, required="selection_frequency")
    serving = inference_model(model)
    counts = np.zeros(selector.num_fields, "int64")
    rows = 0
    dataset = model_inputs(getattr(model, "schema", None), dataset)
    if isinstance(dataset, dict):
        # Plain arrays: one pass in batches, as `predict` would.
        dataset = tf.data.Dataset.from_tensor_slices(dataset).batch(4096)
    for batch in dataset:
        x = batch[0] if isinstance(batch, tuple) else batch
        picked = keras.ops.convert_to_numpy(serving(x, training=False)["selected_fields"])
        counts += np.bincount(picked.ravel(), minlength=len(counts))
        rows += picked.shape[0]
    if rows == 0:
        raise ValueError("`dataset` has no rows.")
    return counts / rows


def labelled_rows(data, rows: int):
    """Up to `rows` rows of `data` ((features, labels) arrays, or a dataset of
    such batches) -> (feature dict of numpy arrays, labels)."""
    if isinstance(data, (tuple, list)) and len(data) >= 2 and isinstance(data[0], dict):
        x, y = data[0], data[1]
        n = min(rows, len(np.asarray(y)))
        return {k: np.asarray(v)[:n] for k, v in x.items()}, np.asarray(y).ravel()[:n]
    xs, ys, n = {}, [], 0
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("RankFields needs labelled rows: batches of (features, labels). "
                             f"Received a batch of type {type(batch).__name__}")
        for name, value in batch[0].items():
            xs.setdefault(name, []).append(keras.ops.convert_to_numpy(value))
        ys.append(np.asarray(batch[1]).ravel())
        n += len(ys[-1])
        if n >= rows:
            break
    if not ys:
        raise ValueError("RankFields: the ranking data has no rows")
    return {k: _concat_padded(v)[:rows] for k, v in xs.items()}, np.concatenate(ys)[:rows]


def _concat_padded(parts):
    """Batches of a column -> one array; list columns (batch, length) are
    padded to the longest length as the model pads them ("" or -1; 0 for
    weights)."""
    if parts[0].ndim < 2 or len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts)
    width = max(p.shape[1] for p in parts)
    kind = parts[0].dtype.kind
    pad = b"" if kind in "SO" else ("" if kind == "U" else (-1 if kind in "iu" else 0))
    return np.concatenate([np.pad(p, [(0, 0), (0, width - p.shape[1])] + [(0, 0)] * (p.ndim - 2),
                                  constant_values=pad) for p in parts])


class RankFields(keras.callbacks.Callback):
    """Fixes the fields an AEFS model at mixed resolution keeps on every
    row, ranked by the model's own permutation importance (validation AUC
    lost when a field's column is shuffled) after its selector's
    `rank_epochs` epochs. `CTRModel.fit` adds it when the selector has
    fields to rank (with `validation_data`, else the training rows);
    the ranking is then part of the saved model.

    Args:
        data: labelled rows: (features, labels) arrays, or a dataset of
            (features, labels) batches.
        rows: rows the importance is measured on (default 8192).
        seed: seed of the shuffles.
        verbose: print the fixed fields by name.
    """

    def __init__(self, data, rows: int = 8192, seed: int = 0, verbose: int = 0):
        super().__init__()
        self.data, self.rows, self.seed, self.verbose = data, rows, seed, verbose
        self.importance: np.ndarray | None = None

    def on_epoch_end(self, epoch, logs=None):
        sel = selector_of(self.model)
        if sel is None or not getattr(sel, "needs_ranking", False) or epoch + 1 < sel.rank_epochs:
            return
        from aefs_keras.importance import most_important, permutation_importance

        x, y = labelled_rows(self.data, self.rows)
        if len(np.unique(y)) < 2:
            raise ValueError(f"RankFields: the {len(y):,} ranking rows have one label only; permutation "
                             "importance needs both (give more rows)")
        names = self.model.schema.names if getattr(self.model, "schema", None) is not None else sorted(x)
        x = {name: x[name] for name in names}  # importance in field order
        # The served graph called directly: `predict_on_batch` under a
        # multi-worker strategy returns every worker's rows.
        serving = inference_model(self.model)

        def predict(features, batch=4096):
            n = len(y)
            return np.concatenate([keras.ops.convert_to_numpy(serving(
                {k: tf.constant(np.asarray(v)[lo:lo + batch]) for k, v in features.items()},
                training=False)["probability"]).ravel() for lo in range(0, n, batch)])

        self.importance = permutation_importance(predict, x, y, seed=self.seed)
        fixed = most_important(self.importance, sel.num_fixed)
        sel.set_fixed_fields(fixed)
        if self.verbose:
            print(f"Fields fixed on every row (permutation importance after epoch {epoch + 1}): "
                  + ", ".join(names[i] for i in fixed))


class TrainingThroughput(keras.callbacks.Callback):
    """Training time per epoch, the clock stopped while validation runs.

    The one definition of "train ex/s" that the demo, the CLI and the
    benchmarks report: training examples over the median epoch time of the
    epochs after the first (which includes tracing), validation excluded.

    Example:

    >>> timer = TrainingThroughput()
    >>> timer.times = [3.0, 1.0, 2.0]
    >>> timer.examples_per_s(300)
    200.0
    """

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self.times.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()  # no validation this epoch

    def examples_per_s(self, examples_per_epoch: int) -> float:
        steady = self.times[1:] or self.times
        return examples_per_epoch / statistics.median(steady) if steady else float("nan")
