"""Two workers on 127.0.0.1: early selection against no selection, step time
and bytes exchanged per step, on plain loopback or on a rate-limited one.

    python benchmarks/distributed_step.py --out benchmarks/results/distributed_step.json
    python benchmarks/distributed_step.py --gbits 0.5 1 2.5 --selection aefs aefs_single mixed_dimension \
        --out benchmarks/results/distributed_bandwidth.json

`--gbits R ...` (needs root, `ip` and `tc`): for each rate, the two workers
run inside a network namespace of this script's own whose loopback device is
shaped with `tc qdisc ... tbf rate R gbit`, using only 127.0.0.1; the
namespace is deleted afterwards, also on error. Both workers' traffic shares
that one device, so a rate R here is what a full-duplex link of R/2 in each
direction would give two hosts (docs/scale.md, "Across hosts").

DeepFM, d_main 64, MLP 400-400-400, 39 fields x `--rows-per-field` ids
(Zipf), SparseAdam row-wise Adagrad, global batch 4096 (2048 per worker),
MultiWorkerMirroredStrategy over two processes on this machine. Each worker
builds the model without selection and with each `--selection` (k = 19;
the names of benchmarks/scale.py) and trains them in `--rounds`
interleaved rounds; per model and round it reports the median
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

    rng = np.random.default_rng(0)
    n = 4096 * 6
    ranks = np.minimum(rng.zipf(1.1, size=(n, F)), args.rows_per_field - 1) - 1
    x = {f"C{i}": ranks[:, i].astype("int64") for i in range(F)}
    y = (rng.random(n) < 0.2).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4096).cache()
    from scale import _model

    models = {}
    for name in ("none", *args.selection):
        with strategy.scope():
            models[name] = _model(args.rows_per_field, None if name == "none" else name, 64, "rowwise_adagrad",
                                  [400, 400, 400])
        models[name].fit(ds, epochs=1, verbose=0)  # trace and warm up

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    out = {n: {"step_ms_median": [], "loopback_bytes_per_step": []} for n in models}
    for r in range(args.rounds):  # interleaved, so a slow spell of the machine hits both
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
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
            outs = pred.values() if isinstance(pred, dict) else [pred]
            loss = tf.add_n([tf.reduce_mean(p) for p in outs])
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        dense = sparse = 0  # all-reduced, and all-gathered (IndexedSlices)
        for g, v in zip(grads, model.trainable_variables):
            if g is None:  # a dense gradient in training
                dense += int(np.prod(v.shape)) * 4
            elif isinstance(g, tf.IndexedSlices):
                sparse += int(tf.size(g.values)) * 4 + int(tf.size(g.indices)) * g.indices.dtype.size
            else:
                dense += int(tf.size(g)) * 4
        out[name]["gradient_payload_bytes_per_worker_step"] = dense + sparse
        out[name]["dense_payload_bytes"], out[name]["sparse_payload_bytes"] = dense, sparse
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
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per pair of workers")
    parser.add_argument("--gbits", type=float, nargs="+",
                        help="rates (Gbit/s) of the shaped loopback, one run each (default: plain loopback)")
    parser.add_argument("--table", metavar="JSON",
                        help="only print the bandwidth table and the projection (docs/scale.md) of a --gbits run")
    parser.add_argument("--selection", nargs="+", default=["aefs"],
                        help="selections beside no selection (benchmarks/scale.py's names: aefs, aefs_single, "
                             "mixed_dimension, static, ...)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.table:
        print(tables(args.table))
        return
    runs = []
    for gbits in args.gbits or [None]:
        results, qdisc = _run_pair(args, gbits)
        chief = results[0]

        def ratios(key, name):
            return _summary([a / b for a, b in zip(chief[name][key], chief["none"][key])])

        runs.append({"gbits": gbits, "qdisc": qdisc, "workers": results,
                     "step_time_ratio": {n: ratios("step_ms_median", n) for n in args.selection},
                     "loopback_bytes_ratio": {n: ratios("loopback_bytes_per_step", n) for n in args.selection},
                     "payload_ratio": {n: chief[n]["gradient_payload_bytes_per_worker_step"]
                                       / chief["none"]["gradient_payload_bytes_per_worker_step"]
                                       for n in args.selection}})
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "workers"}), flush=True)
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "selections": args.selection,
                "runs": runs}, args.out)


def tables(path, links=(10, 25), workers=(2, 8, 32, 128)):
    """Markdown: step time and bytes per step at each measured rate, and
    the cost model's projection to faster links and more workers.

    The model: a worker's step is its compute time plus its bytes on the
    link at the link's rate, T = T_c + B(N) * 8 / R, with B(N) = 2 (N-1)/N D
    (ring all-reduce of the dense gradients, D bytes) + (N-1) S (all-gather
    of the `IndexedSlices`, S bytes per worker). T_c and the bytes actually
    serialised come from a least-squares line of the measured step time
    against 1/R (R the shaped loopback's rate, which both workers share)."""
    import numpy as np

    with open(path) as f:
        res = json.load(f)
    runs = sorted((r for r in res["runs"] if r["gbits"]), key=lambda r: r["gbits"])
    names = ["none", *res["selections"]]
    label = {"none": "none", "aefs": "AEFS", "aefs_single": "AEFS (paper's form)",
             "mixed_dimension": "MixedDimension", "static": "static top-k"}
    chief = [r["workers"][0] for r in runs]
    step = {n: [statistics.median(c[n]["step_ms_median"]) for c in chief] for n in names}
    mb = {n: [statistics.median(c[n]["loopback_bytes_per_step"]) / 1e6 for c in chief] for n in names}
    lines = ["| loopback rate (Gbit/s, both workers) | " + " | ".join(
        f"{label.get(n, n)}: step ms (MB/step)" for n in names) + " | " + " | ".join(
        f"{label.get(n, n)} / none: step (bytes)" for n in names[1:]) + " |",
        "|---" * (2 * len(names)) + "|"]
    for i, r in enumerate(runs):
        lines.append(f"| {r['gbits']:g} | " + " | ".join(f"{step[n][i]:,.0f} ({mb[n][i]:.1f})" for n in names)
                     + " | " + " | ".join(
                         f"{step[n][i] / step['none'][i]:.2f} ({mb[n][i] / mb['none'][i]:.2f})" for n in names[1:])
                     + " |")
    inv = np.array([1.0 / r["gbits"] for r in runs])
    fit = {}
    for n in names:
        slope, t_c = np.polyfit(inv, np.array(step[n]), 1)  # ms, and ms per (1 / Gbit/s) = Mbit
        fit[n] = (t_c, slope / 8)  # compute ms; MB serialised per step
    lines += ["", "| model | T_c: compute ms (fit) | MB serialised per step (fit) | MB over loopback per step"
              " (measured) | D: dense MB per worker | S: sparse MB per worker |", "|---|---|---|---|---|---|"]
    payload = {n: (chief[0][n]["dense_payload_bytes"] / 1e6, chief[0][n]["sparse_payload_bytes"] / 1e6)
               for n in names}
    for n in names:
        lines.append(f"| {label.get(n, n)} | {fit[n][0]:,.0f} | {fit[n][1]:.1f} | {statistics.median(mb[n]):.1f} "
                     f"| {payload[n][0]:.1f} | {payload[n][1]:.1f} |")
    lines += ["", "| link (Gbit/s each way) | workers | " + " | ".join(
        f"{label.get(n, n)}: B(N) MB, step ms" for n in names) + " | " + " | ".join(
        f"{label.get(n, n)} / none: step" for n in names[1:]) + " |", "|---" * (2 + 2 * len(names) - 1) + "|"]
    for rate in links:
        for n_workers in workers:
            row, proj = [], {}
            for n in names:
                d, s_ = payload[n]
                b = 2 * (n_workers - 1) / n_workers * d + (n_workers - 1) * s_
                proj[n] = fit[n][0] + b * 8 / rate
                row.append(f"{b:,.0f}, {proj[n]:,.0f}")
            lines.append(f"| {rate} | {n_workers} | " + " | ".join(row) + " | "
                         + " | ".join(f"{proj[n] / proj['none']:.2f}" for n in names[1:]) + " |")
    return "\n".join(lines)


def _run_pair(args, gbits):
    """The two workers, in a rate-limited namespace when `gbits` is given.
    Returns their results and the qdisc's statistics (sent, dropped)."""
    namespace = f"aefs_bw_{os.getpid()}" if gbits else None
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    procs, qdisc = [], None
    try:
        if namespace:
            rate = int(gbits * 1e9)
            # The bucket holds at least a 64 KB loopback packet and 4 ms at the rate.
            burst = max(256 * 1024, rate // 8 // 250)
            for cmd in (["ip", "netns", "add", namespace],
                        [*prefix, "ip", "link", "set", "lo", "up"],
                        [*prefix, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", f"{rate}bit",
                         "burst", str(burst), "latency", "200ms"]):
                subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        ports = _free_ports(2)  # in this namespace; the new one has no listener at all
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        for i in range(2):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            procs.append(subprocess.Popen([*prefix, sys.executable, __file__, "--worker", "--rows-per-field",
                                           str(args.rows_per_field), "--epochs", str(args.epochs),
                                           "--rounds", str(args.rounds), "--selection", *args.selection],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outs = [p.communicate(timeout=args.timeout) for p in procs]
        if namespace:
            qdisc = subprocess.run([*prefix, "tc", "-s", "qdisc", "show", "dev", "lo"], capture_output=True,
                                   text=True, timeout=30).stdout.strip()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        if namespace:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)
    results = []
    for i, (stdout, stderr) in enumerate(outs):
        if procs[i].returncode != 0:
            raise SystemExit(f"worker {i} failed: {(stderr.strip().splitlines() or ['?'])[-1]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results, qdisc


if __name__ == "__main__":
    main()
