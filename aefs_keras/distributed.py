"""Training on tf.distribute, with step-level backups that survive SIGKILL.

The route is TensorFlow's own: build and compile the model inside the
strategy's scope, and let `model.fit` distribute the tf.data pipeline
(each worker reads its shard of every global batch). Keras'
`BackupAndRestore` writes the weights, the optimizer state and the epoch
every `save_freq` steps; a restarted job loads them and goes on from the
interrupted epoch.
"""

from __future__ import annotations

import errno
import json
import os
import resource
from typing import Any, Callable

import keras
import numpy as np
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


_META = "training_metadata.json"
_WEIGHTS = "latest.weights.h5"


def _read_meta(path):
    try:
        with open(path) as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) and "epoch" in meta else None
    except (OSError, ValueError):
        return None


def _readable_weights(path):
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except (OSError, ValueError):
        return False


def check_backup(backup_dir: str) -> dict | None:
    """The backup's metadata ({"epoch", "batch"}) when `backup_dir` holds
    one to resume from, else None.

    Keras' `BackupAndRestore` writes the weights, then the metadata, each
    in place, so a kill during a write can leave an empty or cut-off file.
    A latest backup that cannot be read is replaced by the previous one
    (kept as ".bkp" files) when that one is whole, with a printed line;
    when there is none, the unreadable files are removed and training
    starts over, also with a printed line. A metadata file without weights
    is not resumed from: the epoch count would go on with fresh weights.
    """
    meta_path, weights_path = os.path.join(backup_dir, _META), os.path.join(backup_dir, _WEIGHTS)
    if not os.path.exists(meta_path) and not os.path.exists(weights_path):
        return None
    meta = _read_meta(meta_path)
    if meta is not None and _readable_weights(weights_path):
        return meta
    prev = _read_meta(meta_path + ".bkp")
    if prev is not None and _readable_weights(weights_path + ".bkp"):
        print(f"The latest backup in {backup_dir} was cut off while being written; resuming from the one "
              "before it", flush=True)
        os.replace(weights_path + ".bkp", weights_path)
        os.replace(meta_path + ".bkp", meta_path)
        return prev
    for name in (_META, _WEIGHTS, _META + ".bkp", _WEIGHTS + ".bkp"):
        if os.path.exists(os.path.join(backup_dir, name)):
            os.remove(os.path.join(backup_dir, name))
    print(f"The backup in {backup_dir} was cut off while being written and there is no earlier one; "
          "training starts over", flush=True)
    return None


class _RoomCheckedBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that first checks the backup fits: the free space
    of its folder and the process' file-size limit. HDF5 crashes the whole
    process (SIGSEGV) when a weights write fails half way (h5py 3, on a full
    disk or past RLIMIT_FSIZE); this raises a clear OSError before the write
    starts instead, with the previous backup untouched."""

    def _save_model(self):
        need = sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype).split(".")[-1]).itemsize
                   for v in [*self.model.variables, *getattr(self.model.optimizer, "variables", [])])
        need = int(need * 1.1) + (1 << 20)  # HDF5's own structures
        folder = os.path.dirname(os.path.abspath(self._weights_path))
        os.makedirs(folder, exist_ok=True)
        stat = os.statvfs(folder)
        free = stat.f_bavail * stat.f_frsize
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if free < 2 * need:  # the latest and the previous backup side by side
            raise OSError(errno.ENOSPC, f"no room for a training backup of about {need / 1e6:,.1f} MB in {folder} "
                                        f"({free / 1e6:,.1f} MB free); the previous backup is kept")
        if limit != resource.RLIM_INFINITY and limit < need:
            raise OSError(errno.EFBIG, f"a training backup of about {need / 1e6:,.1f} MB exceeds this process' "
                                       f"file size limit ({limit:,} bytes); the previous backup is kept")
        super()._save_model()


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
        done = check_backup(own)
        if done is not None:  # say so: a user rerunning a killed job should see it continue
            epoch = int(done.get("epoch", 0)) + 1
            # Keras restores the weights and optimizer state saved after that
            # step, then runs the saved epoch again from its first batch.
            print(f"Resuming from the backup in {own}: the weights after step {int(done.get('batch', -1)) + 1} "
                  f"of epoch {epoch}; training continues with epoch {epoch} of {epochs}", flush=True)
        # double_checkpoint: the previous backup is kept beside the latest,
        # so a kill while the latest is being written loses one backup's
        # steps, not the run.
        callbacks.insert(0, _RoomCheckedBackup(own, save_freq=save_freq, delete_checkpoint=True,
                                               double_checkpoint=True))
    history = model.fit(train, epochs=epochs, callbacks=callbacks, **fit_kwargs)
    return model, history
