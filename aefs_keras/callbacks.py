"""Training callbacks."""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np

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
    over `dataset` (batches of features, or (features, label)) and returns
    an array (F,): the fraction of rows that kept each field.
    `FieldSelectionFrequency` counts training batches instead.
    """
    selector = selector_of(model, required="selection_frequency")
    serving = inference_model(model)
    counts = np.zeros(selector.num_fields, "int64")
    rows = 0
    for batch in dataset:
        x = batch[0] if isinstance(batch, tuple) else batch
        picked = keras.ops.convert_to_numpy(serving(x, training=False)["selected_fields"])
        counts += np.bincount(picked.ravel(), minlength=len(counts))
        rows += picked.shape[0]
    if rows == 0:
        raise ValueError("`dataset` has no rows.")
    return counts / rows


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
