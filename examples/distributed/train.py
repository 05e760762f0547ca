"""Train AEFS-DeepFM on the synthetic data, on one process or several.

    # one process
    python examples/distributed/train.py --out /tmp/run
    # two workers on one machine (set TF_CONFIG per worker; see docs/distributed.md)
    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
                "task": {"type": "worker", "index": 0}}' \
        python examples/distributed/train.py --strategy multi_worker --out /tmp/run
    # with step-level backups: kill it any time, start it again, it resumes
    python examples/distributed/train.py --backup-dir /tmp/backup --save-freq 10 --out /tmp/run

The chief writes the test AUC, the weights of the final model and a log
of (epoch, step) of every trained batch to --out.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import aefs_keras as ak  # noqa: E402


class StepLog(keras.callbacks.Callback):
    """Appends "epoch step" per trained batch, and at the start a checksum
    of the weights the run starts from (written line by line: a SIGKILL
    loses nothing logged). `delay` slows each step, to make room for a kill."""

    def __init__(self, path, delay=0.0):
        super().__init__()
        self.path, self.delay = path, delay

    def on_train_begin(self, logs=None):
        # Runs after BackupAndRestore's on_train_begin: shows what was restored.
        checksum = sum(float(np.abs(w).sum()) for w in self.model.get_weights())
        with open(self.path, "a") as f:
            f.write(f"begin {checksum:.6f}\n")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.delay)
        with open(self.path, "a") as f:
            f.write(f"{self.epoch} {batch}\n")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512, help="global batch size")
    parser.add_argument("--backup-dir")
    parser.add_argument("--save-freq", default="epoch")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep after each step")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    save_freq = int(args.save_freq) if args.save_freq.isdigit() else args.save_freq

    # First, before any other TensorFlow op: collectives are configured at start-up.
    strategy = ak.distributed.get_strategy(args.strategy)
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    is_chief = config.get("task", {}).get("index", 0) == 0
    os.makedirs(args.out, exist_ok=True)
    data = ak.datasets.synthetic(num_rows=args.rows, num_categorical=10, num_numeric=4,
                                 vocabulary_size=200, num_informative=4, num_interactions=1,
                                 batch_size=args.batch_size, seed=0)
    # No shuffling: every run sees the same global batches, so runs compare exactly.
    x, y = data.train_arrays
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train = train.with_options(options)

    def build():
        keras.utils.set_random_seed(0)
        return ak.default_compile(ak.build_model(data.schema, "deepfm", ak.AEFS(k_ratio=0.5, dropout=0.0),
                                                 hidden_units=[32, 16], d_main=8))

    callbacks = [StepLog(os.path.join(args.out, "steps.log"), args.step_delay)] if is_chief else []
    model, _ = ak.distributed.fit(build, train, args.epochs, strategy=strategy,
                                  backup_dir=args.backup_dir, save_freq=save_freq,
                                  callbacks=callbacks, verbose=0)
    # Every worker takes part in predict (it is a collective under multi_worker).
    p = model.predict(data.test_arrays[0], verbose=0, batch_size=4096)[:, 0]
    if is_chief:
        np.save(os.path.join(args.out, "predictions.npy"), p)
        with open(os.path.join(args.out, "result.json"), "w") as f:
            json.dump({"auc": ak.metrics.auc_score(data.test_arrays[1], p),
                       "replicas": model.distribute_strategy.num_replicas_in_sync}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
