"""Latency of exported SavedModels through `serving_default`: p50 and p99 at
batch 1 and 512, measured in one process with the models interleaved.

    python benchmarks/serving_latency.py --out benchmarks/results/serving_latency.json
    python benchmarks/serving_latency.py --export saved_models/serving/demo_aefs/1

Without `--export` it trains DeepFM with no selection and with AEFS
(the demo's shape: 39 fields, string categoricals, d_main 32, MLP 256-128,
k = F/2) on 20k synthetic rows for one epoch, exports both and compares
them; AEFS also with `specialize=False` (its Keras graph, which the
specialised served graph replaces). This is in-process TensorFlow (the same runtime TF Serving embeds),
without HTTP or gRPC overhead.
"""

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _batch(signature, arrays, size):
    out = {}
    for name, spec in signature.structured_input_signature[1].items():
        v = arrays[name]
        v = np.resize(v, size)
        out[name] = tf.constant(v.tolist() if v.dtype == object else v, dtype=spec.dtype)
    return out


def _export_demo_models(tmp):
    import keras

    import aefs_keras as ak
    from aefs_keras.mixed_serving import why_not_specialised

    data = ak.datasets.synthetic(num_rows=20_000, categorical_dtype="string", seed=0)
    paths = {}
    for selection in (None, "aefs"):
        keras.utils.set_random_seed(0)
        kw = {"k_ratio": 0.5} if selection else {}
        model = ak.default_compile(ak.build_model(data.schema, "deepfm", selection,
                                                  hidden_units=[256, 128], d_main=32, **kw))
        model.fit(data.train, epochs=1, verbose=0)
        paths[selection or "none"] = ak.export(model, tmp, f"demo_{selection or 'none'}")
        if selection and not why_not_specialised(model):  # specialised: also its Keras graph
            paths[f"{selection} (Keras graph)"] = ak.export(model, tmp, f"demo_{selection}_keras_graph",
                                                          specialize=False)
    return paths, data.test_arrays[0]


def _arrays_from_signature(signature, rows=512, seed=0):
    # Random raw values of the right dtype for a given export.
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string:
            out[name] = np.array([format(int(i), "08x") for i in rng.integers(0, 2**32, rows)], dtype=object)
        elif spec.dtype.is_integer:
            out[name] = rng.integers(0, 1000, rows).astype(spec.dtype.as_numpy_dtype)
        else:
            out[name] = rng.lognormal(1.0, 1.0, rows).astype(spec.dtype.as_numpy_dtype)
    return out


def measure(paths, arrays, batches, runs, warmup):
    fns = {label: tf.saved_model.load(p).signatures["serving_default"] for label, p in paths.items()}
    if arrays is None:
        arrays = _arrays_from_signature(next(iter(fns.values())))
    times = {(label, b): [] for label in fns for b in batches}
    inputs = {(label, b): _batch(fn, arrays, b) for label, fn in fns.items() for b in batches}
    for (label, b), x in inputs.items():
        for _ in range(warmup):
            fns[label](**x)
    for b in batches:
        for _ in range(runs[b]):
            for label, fn in fns.items():  # interleaved: drift hits every model alike
                x = inputs[(label, b)]
                t = time.perf_counter()
                out = fn(**x)
                out["probability"].numpy()
                times[(label, b)].append(time.perf_counter() - t)
    rows = []
    for (label, b), ts in times.items():
        ms = np.array(ts) * 1e3
        rows.append({"model": label, "batch": b, "runs": len(ts), "p50_ms": float(np.percentile(ms, 50)),
                     "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                     "examples_per_s": float(b / np.median(ts))})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", nargs="*", help="version directories to measure (default: train and export the demo pair)")
    parser.add_argument("--runs-1", type=int, default=500)
    parser.add_argument("--runs-512", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.export:
            paths, arrays = {p: p for p in args.export}, None
        else:
            paths, arrays = _export_demo_models(tmp)
        rows = measure(paths, arrays, (1, 512), {1: args.runs_1, 512: args.runs_512}, args.warmup)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; TF {tf.__version__}"
    print(f"Serving latency ({machine}); serving_default in process")
    print(f"{'model':<30} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'ex/s (p50)':>11}")
    for r in rows:
        print(f"{r['model']:<30} {r['batch']:>5} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['examples_per_s']:>11.0f}")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
