"""The first training step's cost (tracing): traced once or twice.

    python benchmarks/first_step.py --rounds 3 --out benchmarks/results/first_step.json

Keras (3.15) without a distribution strategy builds the optimizer, the
compiled loss and the metrics inside the first trace of its train function;
a `tf.function` that creates variables is traced twice. `CTRModel` builds
them before that trace (`CTRModel._build_before_tracing`). This times the
first `train_on_batch` of DeepFM (39 fields x 10^4 ids, d_main 32, MLP 64-32,
batch 1024) with no selection and with AEFS, each in a fresh child process,
with our build ("ours") and with Keras' own deferral ("keras": the method
made a no-op), rounds alternating the order; it reports the seconds, the
number of traces of `train_step`, and the ratio keras / ours per round.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

F = 39


def child(selection, mode):
    import keras
    import numpy as np

    import aefs_keras as ak

    traced = []
    step = ak.CTRModel.train_step
    ak.CTRModel.train_step = lambda self, d: traced.append(1) or step(self, d)
    if mode == "keras":
        ak.CTRModel._build_before_tracing = lambda self, data_batch=None: None
    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=9_999) for i in range(F)])
    rng = np.random.default_rng(0)
    x = {f"C{i}": rng.integers(0, 10_000, 1024) for i in range(F)}
    y = (rng.random(1024) < 0.2).astype("float32")
    keras.utils.set_random_seed(0)
    kw = {"k_ratio": 0.5} if selection else {}
    model = ak.default_compile(ak.build_model(schema, "deepfm", selection, d_main=32, hidden_units=[64, 32], **kw),
                               jit_compile=False)
    t = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t
    t = time.perf_counter()
    model.train_on_batch(x, y)
    return {"first_s": first, "second_s": time.perf_counter() - t, "traces": len(traced)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(None if args.child[0] == "none" else args.child[0], args.child[1])))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for selection in ("none", "aefs"):
        runs = {"ours": [], "keras": []}
        for r in range(args.rounds):
            for mode in (("ours", "keras") if r % 2 == 0 else ("keras", "ours")):
                proc = subprocess.run([sys.executable, __file__, "--child", selection, mode], env=env,
                                      capture_output=True, text=True, timeout=900, check=True)
                runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        ratios = [k["first_s"] / o["first_s"] for o, k in zip(runs["ours"], runs["keras"])]
        results[selection] = {
            **{m: {"first_s": [round(v["first_s"], 3) for v in vs], "traces": [v["traces"] for v in vs],
                   "second_s": [round(v["second_s"], 4) for v in vs]} for m, vs in runs.items()},
            "keras_over_ours": {"median": statistics.median(ratios), "values": ratios}}
        print(selection, json.dumps(results[selection]))
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "command": " ".join(sys.argv),
           "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
