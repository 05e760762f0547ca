"""Two workers on 127.0.0.1: AEFS against no selection, step time and bytes
exchanged per step.

    python benchmarks/distributed_step.py --out benchmarks/results/distributed_step.json

DeepFM, d_main 64, MLP 400-400-400, 39 fields x `--rows-per-field` ids
(Zipf), SparseAdam row-wise Adagrad, global batch 4096 (2048 per worker),
MultiWorkerMirroredStrategy over two processes on this machine. Each worker
builds the model without selection and with AEFS (k = 19) and trains them in
`--rounds` interleaved rounds; per model and round it reports the median
step of `model.fit` and the bytes
that crossed the loopback interface during them (both workers' traffic,
/proc/net/dev "lo", divided by the steps: the gradient exchange plus
collective bookkeeping). Also the gradient payload per worker and step
computed from one local step's gradients: dense gradients count their size,
`IndexedSlices` their rows (B*F for the main table without selection, B*k
with AEFS) plus indices. Both workers share the machine's 2 cores, so the
step times say more about the exchange than about a real cluster.
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import _summary, write_json  # noqa: E402

F = 39


def _lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                fields = rest.split()
                return int(fields[8])  # transmitted bytes (= received on lo)
    return 0


def worker(args):
    import aefs_keras as ak

    strategy = ak.distributed.get_strategy("multi_worker")
    import keras
    import numpy as np
    import tensorflow as tf

    from aefs_keras.optimizers import SparseAdam

    rng = np.random.default_rng(0)
    n = 4096 * 6
    ranks = np.minimum(rng.zipf(1.1, size=(n, F)), args.rows_per_field - 1) - 1
    x = {f"C{i}": ranks[:, i].astype("int64") for i in range(F)}
    y = (rng.random(n) < 0.2).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4096).cache()
    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=args.rows_per_field - 1) for i in range(F)])
    models = {}
    for name, selection in (("none", None), ("aefs", "aefs")):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = ak.build_model(schema, "deepfm", selection, d_main=64, hidden_units=[400, 400, 400],
                                   memory_check="rowwise_adagrad")
            ak.default_compile(model, optimizer=SparseAdam(1e-3, embedding_rule="rowwise_adagrad",
                                                          embedding_learning_rate=0.05))
        model.fit(ds, epochs=1, verbose=0)  # trace and warm up
        models[name] = model

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    out = {n: {"step_ms_median": [], "loopback_bytes_per_step": []} for n in models}
    for r in range(args.rounds):  # interleaved, so a slow spell of the machine hits both
        for name in (("none", "aefs") if r % 2 == 0 else ("aefs", "none")):
            timer = Timer()
            timer.times = []
            before = _lo_bytes()
            models[name].fit(ds.repeat(args.epochs), epochs=1, verbose=0, callbacks=[timer])
            moved = _lo_bytes() - before
            out[name]["step_ms_median"].append(1e3 * statistics.median(timer.times))
            out[name]["loopback_bytes_per_step"].append(moved / len(timer.times))
    for name, model in models.items():
        # Gradient payload of one worker's step (its 2048 rows), from the structure.
        xb = {k: tf.constant(v[:2048]) for k, v in x.items()}
        with tf.GradientTape() as tape:
            # Inference mode: the same gradient structure, no state updates.
            pred = model(xb, training=False)
            if isinstance(pred, dict):
                loss = tf.reduce_mean(pred["probability"]) + tf.reduce_mean(pred["aux_probability"])
            else:
                loss = tf.reduce_mean(pred)
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        payload = 0
        for g, v in zip(grads, model.trainable_variables):
            if g is None:  # a dense gradient in training
                payload += int(np.prod(v.shape)) * 4
            elif isinstance(g, tf.IndexedSlices):
                payload += int(tf.size(g.values)) * 4 + int(tf.size(g.indices)) * g.indices.dtype.size
            else:
                payload += int(tf.size(g)) * 4
        out[name]["gradient_payload_bytes_per_worker_step"] = payload
    print(json.dumps(out), flush=True)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-field", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the 6 cached batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    parser.add_argument("--timeout", type=int, default=1200)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", "--rows-per-field",
                                           str(args.rows_per_field), "--epochs", str(args.epochs),
                                           "--rounds", str(args.rounds)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outs = [p.communicate(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for i, (stdout, stderr) in enumerate(outs):
        if procs[i].returncode != 0:
            raise SystemExit(f"worker {i} failed: {(stderr.strip().splitlines() or ['?'])[-1]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    chief = results[0]

    def ratios(key):
        return _summary([a / b for a, b in zip(chief["aefs"][key], chief["none"][key])])

    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "workers": results,
               "step_time_ratio_aefs_over_none": ratios("step_ms_median"),
               "loopback_bytes_ratio_aefs_over_none": ratios("loopback_bytes_per_step"),
               "payload_ratio_aefs_over_none": (chief["aefs"]["gradient_payload_bytes_per_worker_step"]
                                                / chief["none"]["gradient_payload_bytes_per_worker_step"])}
    write_json(summary, args.out)


if __name__ == "__main__":
    main()
