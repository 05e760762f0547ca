"""Training callbacks."""

from __future__ import annotations

import keras
import numpy as np

from aefs_keras.layers.adaptive_field_gate import AdaptiveFieldGate
from aefs_keras.layers.auxiliary_selector import AuxiliarySelector


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
        found = [l for l in self.model.layers if isinstance(l, (AuxiliarySelector, AdaptiveFieldGate))]
        if len(found) != 1:
            raise ValueError(
                "FieldSelectionFrequency needs a model with exactly one AuxiliarySelector "
                f"or AdaptiveFieldGate. Found: {len(found)}"
            )
        return found[0]

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
