"""XLA in training: `jit_compile=True` against the default, side by side.

    python benchmarks/xla_training.py --out benchmarks/results/xla_training.json

For each size (`big`: d_main 64, MLP 400-400-400, batch 4096, 39 fields x
10^5 ids; `grid`: the accuracy grid's d 32, MLP 64-32, batch 1024, 2,000
ids per field) and each model (no selection and the `--selection` forms of
benchmarks/scale.py), in its own child process: two copies of the model with
the same initial weights, compiled with `jit_compile=False` (what Keras'
"auto" gives on CPU) and `jit_compile=True`, for each optimizer (Keras' Adam,
and SparseAdam row-wise Adagrad, whose sparse update calls `tf.unique`).

Reported per pair:
- `effective_jit_compile`: `model.jit_compile` after the first step (Keras
  turns it off when a layer says it cannot be compiled);
- `error`: the first line of the error when the compiled step fails;
- exactness: the forward pass of one batch compiled both ways from the same
  weights (largest difference, share of rows off by more than 1e-5); and,
  after the timed rounds, with dropout off, 3 steps from one saved state
  (weights and optimizer slots) by the default twice and by the compiled
  step: the largest difference of their losses and of any weight, the
  latter in units of the learning rate (an Adam step moves a weight by
  at most about one);
- speed: per round the median step of one `fit` over the cached batches
  (rounds interleaved), and the jit / default ratio of examples/s.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from scale import _data, _summary, write_json  # noqa: E402

SIZES = {
    "big": {"rows_per_field": 100_000, "d_main": 64, "hidden": [400, 400, 400], "batch": 4096},
    "grid": {"rows_per_field": 2_000, "d_main": 32, "hidden": [64, 32], "batch": 1024},
}


def _pair(cfg):
    import keras
    import numpy as np
    import tensorflow as tf

    import aefs_keras as ak
    from scale import _median_step, _model

    _, _, ds = _data(cfg["rows_per_field"], cfg["batch"], 4)
    selection = None if cfg["selection"] == "none" else cfg["selection"]
    models = {}
    for jit in (False, True):
        model = _model(cfg["rows_per_field"], selection, cfg["d_main"], cfg["optimizer"], cfg["hidden"])
        ak.default_compile(model, optimizer=model.optimizer, jit_compile=jit)
        models[jit] = model
    models[True].set_weights(models[False].get_weights())
    out = {**cfg}
    # The forward pass alone, same weights, same batch: how many rows'
    # probabilities differ by more than 1e-5 (a selector's top-k flips on
    # near-ties when XLA rounds the scores differently).
    x, _ = next(iter(ds))
    model = models[False]
    probs = {}
    for jit in (False, True):
        fn = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        p = fn(x)
        probs[jit] = (p["probability"] if isinstance(p, dict) else p).numpy()
    gap = np.abs(probs[True] - probs[False])
    out["forward_max_abs_diff"] = float(gap.max())
    out["forward_rows_off_by_1e-5"] = float(np.mean(gap > 1e-5))
    # The first fit: does the compiled step run? (It also ranks the fixed
    # fields of AEFS at mixed resolution, once, in each model.)
    for jit, model in models.items():
        try:
            model.fit(ds, epochs=1, verbose=0)
        except Exception as e:  # the compiled step's failure is the finding
            lines = str(e).strip().splitlines() or ["?"]
            said = [x for x in lines if "unsupported" in x.lower() or "concrete values" in x or "node" in x]
            out["error"] = f"{type(e).__name__}: " + " | ".join(said[:3] or lines[:1])[:600]
            out["effective_jit_compile"] = models[True].jit_compile
            return out
    out["effective_jit_compile"] = models[True].jit_compile
    times = {False: [], True: []}
    for r in range(cfg["rounds"]):
        for jit in ((False, True) if r % 2 == 0 else (True, False)):
            times[jit].append(cfg["batch"] / _median_step(models[jit], ds, cfg["epochs"]))
    out["train_examples_per_s"] = {"default": _summary(times[False]), "jit": _summary(times[True])}
    out["jit_over_default"] = _summary([j / d for j, d in zip(times[True], times[False])])
    # Exactness: three steps on the same batches from the same weights and
    # optimizer state, with dropout off (XLA draws other random numbers from
    # the same seed, so with dropout the two runs differ by design).
    for model in models.values():
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        model.make_train_function(force=True)
    weights = models[False].get_weights()
    slots = [keras.ops.convert_to_numpy(v) for v in models[False].optimizer.variables]

    class BatchLosses(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    def three_steps(model):
        model.set_weights(weights)
        for v, value in zip(model.optimizer.variables, slots):
            v.assign(value)
        losses = BatchLosses()
        model.fit(ds.take(3), epochs=1, verbose=0, callbacks=[losses])
        return np.array(losses.losses), [keras.ops.convert_to_numpy(v) for v in model.weights]

    # The default against itself from the same state is the floor: CPU
    # kernels that sum in parallel need not round the same way twice, and
    # Adam turns a rounding difference in a near-zero gradient into up to
    # a whole step.
    runs = {"default": three_steps(models[False]), "default_again": three_steps(models[False]),
            "jit": three_steps(models[True])}
    lr = float(keras.ops.convert_to_numpy(models[False].optimizer.learning_rate))
    for name in ("default_again", "jit"):
        (la, wa), (lb, wb) = runs["default"], runs[name]
        worst, where = 0.0, None
        for v, a, b in zip(models[False].weights, wa, wb):
            if a.size and a.dtype.kind == "f" and float(np.max(np.abs(a - b))) > worst:
                worst, where = float(np.max(np.abs(a - b))), v.path
        out[f"{name}_vs_default"] = {"loss_max_abs_diff": float(np.max(np.abs(la - lb))),
                                     "weight_max_abs_diff_in_learning_rates": worst / lr, "at": where}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--selection", nargs="+", default=["aefs", "aefs_single", "mixed_dimension"])
    parser.add_argument("--optimizers", nargs="+", default=["adam", "rowwise_adagrad"],
                        choices=["adam", "lazy_adam", "rowwise_adagrad"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the 4 cached batches per round")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per child")
    parser.add_argument("--out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_pair(json.loads(args.child))))
        return
    results = []
    for size in args.sizes:
        for optimizer in args.optimizers:
            for selection in ("none", *args.selection):
                cfg = {"size": size, **SIZES[size], "selection": selection, "optimizer": optimizer,
                       "rounds": args.rounds, "epochs": args.epochs}
                try:
                    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True,
                                          text=True, timeout=args.timeout)
                    res = (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else
                           {**cfg, "error": (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]})
                except subprocess.TimeoutExpired:
                    res = {**cfg, "error": f"timed out after {args.timeout} s"}
                results.append(res)
                print(json.dumps({k: res.get(k) for k in ("size", "optimizer", "selection", "effective_jit_compile",
                                                          "error", "forward_max_abs_diff", "jit_vs_default",
                                                          "jit_over_default")}), flush=True)
    write_json({"results": results}, args.out)


if __name__ == "__main__":
    main()
