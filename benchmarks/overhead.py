"""`model.fit` overhead: our DeepFM against a hand-written training step.

    python benchmarks/overhead.py --out benchmarks/results/overhead.json

Two configurations, each in its own child process:
- `grid`: the benchmark grid's small DeepFM (39 fields x 10^4 ids, d 32,
  MLP 64-32, batch 1024);
- `peer`: the DeepCTR-peer configuration (39 fields x 10^5 ids, d 16,
  MLP 400-400-400, batch 4096).
Both use Keras' Adam (lr 1e-3) and binary cross-entropy on Zipf ids with a
random label. "ours" is what a user writes: `build_model` +
`default_compile` (AUC and log-loss metrics) + `model.fit` on a cached
`tf.data.Dataset` of raw per-field features. "bare" is one `tf.function`
step with the same math: one table gather (per-field offsets), first-order
weights, FM, MLP, sigmoid BCE, and the same Adam on the same variables'
shapes, fed the same batches as one (B, F) id tensor. Rounds interleave the
two; each round times `--steps` steps of each after warm-up and gives one
ours / bare ratio of examples/s.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONFIGS = {
    "grid": {"rows_per_field": 10_000, "d": 32, "hidden": [64, 32], "batch": 1024},
    "peer": {"rows_per_field": 100_000, "d": 16, "hidden": [400, 400, 400], "batch": 4096},
}
F = 39


def _batches(cfg, n_batches, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = cfg["batch"] * n_batches
    ranks = np.minimum(rng.zipf(1.1, size=(n, F)), cfg["rows_per_field"]) - 1
    y = (rng.random(n) < 0.2).astype("float32")
    return ranks.astype("int64"), y


def _bare_step(cfg):
    """A hand-written DeepFM training step: returns (step_fn, variables)."""
    import keras
    import tensorflow as tf

    d, sizes = cfg["d"], [cfg["rows_per_field"] + 1] * F
    offsets = tf.constant([sum(sizes[:i]) for i in range(F)], tf.int64)
    init = keras.initializers.RandomUniform(-0.05, 0.05)
    table = keras.Variable(init((sum(sizes), d)), name="embeddings")
    linear = keras.Variable(tf.zeros((sum(sizes), 1)), name="linear")
    dims = [F * d] + cfg["hidden"] + [1]
    glorot = keras.initializers.GlorotUniform()
    kernels = [keras.Variable(glorot((a, b)), name=f"k{i}") for i, (a, b) in enumerate(zip(dims, dims[1:]))]
    biases = [keras.Variable(tf.zeros((b,)), name=f"b{i}") for i, b in enumerate(dims[1:])]
    variables = [table, linear, *kernels, *biases]
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(variables)

    @tf.function
    def step(ids, y):
        rows = ids + offsets
        with tf.GradientTape() as tape:
            emb = tf.gather(table.value, rows)
            logit = tf.reduce_sum(tf.gather(linear.value, rows), axis=[1, 2])[:, None]
            s = tf.reduce_sum(emb, 1)
            logit += 0.5 * tf.reduce_sum(s * s - tf.reduce_sum(emb * emb, 1), -1, keepdims=True)
            h = tf.reshape(emb, [-1, F * d])
            for i, (k, b) in enumerate(zip(kernels, biases)):
                h = tf.matmul(h, k.value) + b.value
                if i < len(kernels) - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y[:, None], h + logit))
        optimizer.apply_gradients(zip(tape.gradient(loss, [v.value for v in variables]), variables))
        return loss

    return step


def run(name):
    import keras
    import tensorflow as tf

    import aefs_keras as ak

    cfg = CONFIGS[name]
    ids, y = _batches(cfg, 8)
    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=cfg["rows_per_field"]) for i in range(F)])
    keras.utils.set_random_seed(0)
    model = ak.default_compile(ak.build_model(schema, "deepfm", d_main=cfg["d"], hidden_units=cfg["hidden"],
                                              embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05)))
    features = {f"C{i}": ids[:, i] for i in range(F)}
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(cfg["batch"]).cache()
    bare_ds = tf.data.Dataset.from_tensor_slices((ids, y)).batch(cfg["batch"]).cache()
    step = _bare_step(cfg)
    bare_batches = list(bare_ds)

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    def ours(epochs):
        timer = Timer()
        timer.times = []
        model.fit(ds.repeat(epochs), epochs=1, verbose=0, callbacks=[timer])
        return timer.times

    def bare(epochs):
        times = []
        for _ in range(epochs):
            for xb, yb in bare_batches:
                t = time.perf_counter()
                step(xb, yb).numpy()
                times.append(time.perf_counter() - t)
        return times

    ours(1)
    bare(1)
    rounds = []
    for r in range(cfg.get("rounds", 3)):
        pair = {}
        for fn in ((ours, bare) if r % 2 == 0 else (bare, ours)):
            pair[fn.__name__] = cfg["batch"] / statistics.median(fn(2))
        rounds.append(pair)
    ratios = [p["ours"] / p["bare"] for p in rounds]
    return {"config": name, **cfg, "rounds": rounds, "ratio_mean": statistics.mean(ratios),
            "ratio_sd": statistics.stdev(ratios), "steps_per_round": 16}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS) + [[]])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run(args.child)))
        return
    results = []
    for name in args.configs:
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        res = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
            "config": name, "error": (out.stderr.strip().splitlines() or [f"rc {out.returncode}"])[-1]}
        results.append(res)
        print(json.dumps(res), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
