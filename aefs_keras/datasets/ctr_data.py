"""CTRData: the one train / valid / test container.

Returned by `synthetic` (as its subclass `SyntheticData`), `load_benchmark`,
the bench runner and `aefs-keras train` on files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from aefs_keras.schema import Schema


def to_dataset(features, labels, batch_size, shuffle=False, seed=0):
    """In-memory (features dict, labels) -> batched, prefetched tf.data."""
    ds = tf.data.Dataset.from_tensor_slices((features, np.asarray(labels, "float32")))
    if shuffle:
        ds = ds.shuffle(min(len(labels), 100_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class CTRData:
    """Train / valid / test splits of a labelled CTR dataset.

    Attributes:
        name: the dataset.
        schema: the fields (preprocessing fitted on `train` only).
        train, valid, test: batched tf.data datasets of (features, label);
            `train` reshuffles each epoch (seeded). `test` may be None.
        train_arrays, valid_arrays, test_arrays: the same rows as numpy
            (features dict, labels); None when streamed from files.
        split: how the rows were split.
        batch_size: rows per batch of the pipelines.
        reports: `ReadReport`s of the files read (streamed data).
    """

    name: str
    schema: Schema
    train: tf.data.Dataset
    valid: tf.data.Dataset | None
    test: tf.data.Dataset | None
    train_arrays: tuple | None = None
    valid_arrays: tuple | None = None
    test_arrays: tuple | None = None
    split: str = ""
    batch_size: int | None = None
    reports: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_arrays(cls, name, schema, train_arrays, valid_arrays, test_arrays, batch_size, seed=0,
                    split="", **extra):
        """The container over in-memory splits, with their pipelines."""
        return cls(name=name, schema=schema,
                   train=to_dataset(*train_arrays, batch_size, shuffle=True, seed=seed),
                   valid=to_dataset(*valid_arrays, batch_size), test=to_dataset(*test_arrays, batch_size),
                   train_arrays=train_arrays, valid_arrays=valid_arrays, test_arrays=test_arrays,
                   split=split, batch_size=batch_size, **extra)

    def pipelines(self, seed: int, fields=None):
        """Fresh (train, valid) pipelines shuffled by `seed`, optionally with
        only the named `fields` (in-memory data only)."""
        if self.train_arrays is None:
            raise ValueError(f"{self.name}: pipelines() needs in-memory arrays; this data is streamed")

        def pick(arrays):
            x, y = arrays
            return ({k: x[k] for k in fields} if fields is not None else x), y

        return (to_dataset(*pick(self.train_arrays), self.batch_size, shuffle=True, seed=seed),
                to_dataset(*pick(self.valid_arrays), self.batch_size))

    def with_train_rows(self, rows: int) -> "CTRData":
        """The same data with the training split cut to its first `rows`."""
        x, y = self.train_arrays
        return dataclasses.replace(self, train_arrays=({k: v[:rows] for k, v in x.items()}, y[:rows]))
