"""Training on tf.distribute, with step-level backups that survive SIGKILL.

The route is TensorFlow's own: build and compile the model inside the
strategy's scope, and let `model.fit` distribute the tf.data pipeline
(each worker reads its shard of every global batch). Keras'
`BackupAndRestore` writes the weights, the optimizer state and the epoch
every `save_freq` steps; a restarted job loads them and goes on from the
interrupted epoch.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import keras
import tensorflow as tf

STRATEGIES = (None, "default", "mirrored", "multi_worker")


def get_strategy(strategy: str | tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """A `tf.distribute.Strategy` from a name.

    Args:
        strategy: None or "default" (this process, its default device),
            "mirrored" (every local GPU, or the CPU), "multi_worker"
            (several processes or hosts, configured by the `TF_CONFIG`
            environment variable), or a strategy object, returned as is.

    Create a multi-worker strategy first thing in the program, before any
    other TensorFlow op runs: TensorFlow configures collectives at start-up.
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {list(STRATEGIES)} or a tf.distribute.Strategy. "
                         f"Received: strategy={strategy!r}")
    if strategy in (None, "default"):
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if not os.environ.get("TF_CONFIG"):
        raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable "
                         "(cluster and task); see docs/distributed.md.")
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_backup_dir(backup_dir: str) -> str:
    """Each worker backs up to its own directory (the chief to `backup_dir`
    itself): Keras' BackupAndRestore would otherwise have every worker
    write the same files at once."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task or task.get("type") == "chief" or (task.get("type") == "worker" and task.get("index") == 0
                                                    and "chief" not in config.get("cluster", {})):
        return backup_dir
    return os.path.join(backup_dir, f"{task.get('type')}_{task.get('index')}")


def fit(
    build_fn: Callable[[], keras.Model],
    train: tf.data.Dataset,
    epochs: int,
    strategy: str | tf.distribute.Strategy | None = None,
    backup_dir: str | None = None,
    save_freq: int | str = "epoch",
    callbacks: list | tuple = (),
    **fit_kwargs: Any,
):
    """Builds a compiled model under `strategy` and trains it with `model.fit`.

    Args:
        build_fn: returns a compiled model (e.g. `default_compile(build_model(...))`);
            called inside the strategy's scope so its variables are mirrored.
        train: a tf.data pipeline batched with the *global* batch size;
            `fit` shards it across workers.
        epochs: total epochs, counting those done before a restart.
        strategy: see `get_strategy`.
        backup_dir: where to keep the backup; a job started again with the
            same directory resumes from it. It is deleted when training ends.
        save_freq: "epoch" or a number of steps between backups.
        callbacks, fit_kwargs: passed to `model.fit`.

    Returns:
        (model, history).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    strategy = get_strategy(strategy)
    with strategy.scope():
        model = build_fn()
    callbacks = list(callbacks)
    if backup_dir is not None:
        own = worker_backup_dir(backup_dir)
        meta = os.path.join(own, "training_metadata.json")
        if os.path.exists(meta):  # say so: a user rerunning a killed job should see it continue
            with open(meta) as f:
                done = json.load(f)
            epoch = int(done.get("epoch", 0)) + 1
            # Keras restores the weights and optimizer state saved after that
            # step, then runs the saved epoch again from its first batch.
            print(f"Resuming from the backup in {own}: the weights after step {int(done.get('batch', -1)) + 1} "
                  f"of epoch {epoch}; training continues with epoch {epoch} of {epochs}", flush=True)
        callbacks.insert(0, keras.callbacks.BackupAndRestore(own, save_freq=save_freq, delete_checkpoint=True))
    history = model.fit(train, epochs=epochs, callbacks=callbacks, **fit_kwargs)
    return model, history
