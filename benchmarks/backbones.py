"""DNN, DCN-v2, MLCC and MC-MLCC side by side on the shared real datasets.

    python benchmarks/backbones.py --seeds 0 1 2 --out benchmarks/results/backbones.json
    python benchmarks/backbones.py --quick      # one dataset, one seed, a smoke run

Every model: field embeddings of 16 per channel, MLP 256-128-64-32 with
dropout 0.2 (the MLCC authors' tower, used for all), Adam 1e-3, batch 1024,
early stopping on validation AUC (patience 2, at most 10 epochs, best
weights restored), test AUC and log-loss on the held-out split. Dense
parameters and multiply-adds per example from `ak.model_costs`; training
examples/s over the epochs after the first (no tracing); serving
examples/s of the inference graph at batch 512 (median of 30 calls).
Splits are fixed (split seed 0); the seeds vary initialisation and
shuffling, so the spread is training noise.
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import aefs_keras as ak  # noqa: E402

MODELS = {
    "DNN": dict(backbone="dnn", d_main=16),
    "DCN-v2": dict(backbone="dcn", d_main=16, backbone_options={"num_cross_layers": 2}),
    "MLCC": dict(backbone="mlcc", d_main=16),
    "MC-MLCC S=2": dict(backbone="mc_mlcc", d_main=32, backbone_options={"channels": 2}),
    "MC-MLCC S=4": dict(backbone="mc_mlcc", d_main=64, backbone_options={"channels": 4}),
}
DATASETS = ("criteo_80k", "census_kdd", "frappe")


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self._t]


def serving_examples_per_s(model, arrays, batch=512, calls=30):
    serving = ak.inference_model(model)
    fn = tf.function(lambda x: serving(x, training=False))
    x = {k: tf.constant(np.resize(v, batch).tolist() if v.dtype == object else np.resize(v, batch))
         for k, v in arrays.items()}
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)["probability"].numpy()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def run(data, label, seed, max_epochs):
    spec = dict(MODELS[label])
    keras.utils.set_random_seed(seed)
    model = ak.default_compile(ak.build_model(data.schema, hidden_units=[256, 128, 64, 32], dropout=0.2,
                                              **spec), jit_compile=False)  # plain steps, as documented
    timer = EpochTimer()
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2,
                                         restore_best_weights=True)
    model.fit(data.train, validation_data=data.valid, epochs=max_epochs, verbose=0,
              callbacks=[stop, timer])
    res = model.evaluate(data.test, return_dict=True, verbose=0)
    n_train = len(data.train_arrays[1])
    # Epoch time includes the validation pass, as a user's fit would.
    steady = timer.times[1:] or timer.times
    costs = ak.model_costs(model)
    return {
        "dataset": data.name, "model": label, "seed": seed, "auc": res["auc"], "logloss": res["logloss"],
        "epochs": len(timer.times), **costs,
        "train_examples_per_s": n_train / statistics.median(steady),
        "serving_examples_per_s": serving_examples_per_s(model, data.test_arrays[0]),
    }


def table(results):
    lines = ["| dataset | model | test AUC (mean ± sd) | log-loss | dense params | mult-adds / ex | "
             "emb. params | train ex/s | serve ex/s (b=512) | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in results:
        if (r["dataset"], r["model"]) not in keys:
            keys.append((r["dataset"], r["model"]))
    for ds, m in keys:
        rs = [r for r in results if r["dataset"] == ds and r["model"] == m]
        auc = [r["auc"] for r in rs]
        sd = statistics.stdev(auc) if len(auc) > 1 else float("nan")
        lines.append(
            f"| {ds} | {m} | {statistics.mean(auc):.4f} ± {sd:.4f} | "
            f"{statistics.mean(r['logloss'] for r in rs):.4f} | {rs[0]['dense_parameters']:,} | "
            f"{rs[0]['multiply_adds']:,} | {rs[0]['embedding_parameters']:,} | "
            f"{statistics.mean(r['train_examples_per_s'] for r in rs):,.0f} | "
            f"{statistics.mean(r['serving_examples_per_s'] for r in rs):,.0f} | {len(rs)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="frappe, seed 0, 3 epochs")
    parser.add_argument("--out", help="JSON results (a .md table is written beside it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.max_epochs = ["frappe"], [0], 3
    results = []
    for name in args.datasets:
        data = ak.datasets.load_benchmark(name, args.data_dir, batch_size=1024)
        for label in args.models:
            for seed in args.seeds:
                r = run(data, label, seed, args.max_epochs)
                results.append(r)
                print(f"{name:<11} {label:<12} seed {seed}: AUC {r['auc']:.4f} logloss {r['logloss']:.4f} "
                      f"epochs {r['epochs']} train {r['train_examples_per_s']:.0f}/s "
                      f"serve {r['serving_examples_per_s']:.0f}/s", flush=True)
                if args.out:  # keep partial results: a long run that dies loses nothing done
                    _write(args.out, results)
    print(table(results))
    if args.out:
        _write(args.out, results)


def _write(path, results):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores; TF {tf.__version__}, Keras {keras.__version__}"
    with open(path + ".tmp", "w") as f:
        json.dump({"machine": machine, "results": results}, f, indent=1)
    os.replace(path + ".tmp", path)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(f"Machine: {machine}\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
