"""A served model under sustained load: throughput, tail latency, errors, memory.

    python benchmarks/serve_load.py --seconds 120 --out benchmarks/results/serve_load.json

Exports a DeepFM + AEFS model (the demo's 39 Criteo-shaped fields, string
categoricals; trained one epoch on synthetic rows), then for each of 1, 4
and 16 client threads and batches of 1 and 64 rows starts a fresh process
that imports TensorFlow only (never aefs_keras), loads the export's
`serving_default` and calls it from the threads for `--seconds`, each call
with other rows (a pool of 256 prepared batches). It reports examples/s,
calls/s, p50 / p99 / p99.9 latency per call, errors, and resident memory
(VmRSS) after 30 s and at the end. docs/serving.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(export: str, threads: int, batch: int, seconds: float) -> dict:
    """Runs in a process with TensorFlow only."""
    import numpy as np
    import tensorflow as tf

    assert "aefs_keras" not in sys.modules
    fn = tf.saved_model.load(export).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    rng = np.random.default_rng(0)

    def column(spec):
        shape = [batch] + ([3] if spec.shape.rank == 2 else [])
        if spec.dtype == tf.string:
            return tf.constant(np.array([f"v{v}".encode() for v in rng.integers(0, 5000, int(np.prod(shape)))],
                                        dtype=object).reshape(shape))
        if spec.dtype.is_integer:
            return tf.constant(rng.integers(-2, 5000, shape), spec.dtype)
        return tf.constant(rng.gamma(1.0, 10.0, shape).astype(spec.dtype.as_numpy_dtype))

    pool = [{name: column(spec) for name, spec in specs.items()} for _ in range(256)]
    for request in pool[:20]:  # warm-up: the first calls trace and allocate
        fn(**request)
    latencies = [[] for _ in range(threads)]
    errors = [0] * threads
    stop = threading.Event()
    memory = {}

    def client(i):
        k = i
        while not stop.is_set():
            request = pool[k % len(pool)]
            k += threads
            start = time.perf_counter()
            try:
                out = fn(**request)
                if out["probability"].shape[0] != batch:
                    errors[i] += 1
            except Exception:  # noqa: BLE001 (counted: the figure is the count)
                errors[i] += 1
            latencies[i].append(time.perf_counter() - start)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(min(30.0, seconds))
    memory["rss_30s_mb"] = rss_mb()
    time.sleep(max(seconds - 30.0, 0.0))
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    memory["rss_end_mb"] = rss_mb()
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    calls = len(lat)
    return {"threads": threads, "batch": batch, "seconds": round(elapsed, 1), "calls": calls,
            "calls_per_s": round(calls / elapsed, 1), "examples_per_s": round(calls * batch / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "p99_9_ms": round(float(np.percentile(lat, 99.9)), 3), "errors": int(sum(errors)),
            **{k: round(v, 1) for k, v in memory.items()},
            "rss_growth": round(memory["rss_end_mb"] / memory["rss_30s_mb"], 3)}


def export_model(directory: str) -> str:
    """DeepFM + AEFS on the demo's schema, trained one epoch, exported."""
    import aefs_keras as ak

    data = ak.datasets.synthetic(num_rows=50_000, categorical_dtype="string", seed=0, batch_size=1024)
    model = ak.default_compile(ak.build_model(data.schema, "deepfm", "aefs", k_ratio=0.5, d_main=32,
                                              hidden_units=[256, 128]))
    model.fit(data.train, epochs=1, verbose=0)
    return ak.export(model, directory, "load")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="per run (default 120)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--export", help="an export version directory to load (default: build one)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", nargs=4, metavar=("EXPORT", "THREADS", "BATCH", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        export, threads, batch, seconds = args.child
        print(json.dumps(child(export, int(threads), int(batch), float(seconds))))
        return 0
    export = args.export or export_model(tempfile.mkdtemp(prefix="serve_load_"))
    print(f"load: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; export {export}", flush=True)
    results = []
    for batch in args.batches:
        for threads in args.threads:
            proc = subprocess.run([sys.executable, __file__, "--child", export, str(threads), str(batch),
                                   str(args.seconds)], capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"threads {threads:>2} batch {batch:>3}: {r['examples_per_s']:>9,.0f} ex/s "
                  f"{r['calls_per_s']:>8,.0f} calls/s  p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} "
                  f"p99.9 {r['p99_9_ms']:.2f} ms  errors {r['errors']}  RSS {r['rss_30s_mb']:.0f} -> "
                  f"{r['rss_end_mb']:.0f} MB ({r['rss_growth']:.3f}x)", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"seconds": args.seconds, "cpus": os.cpu_count(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
