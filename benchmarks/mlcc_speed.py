"""MLCC against DCN-v2 in wall-clock time, side by side in one process.

    python benchmarks/mlcc_speed.py --out benchmarks/results/mlcc_speed.json

The docs/mlcc.md configuration on criteo-shaped synthetic ids: 39 fields x
10^4 ids (Zipf), 16 values per field, MLP 256-128-64-32 with dropout 0.2,
Adam 1e-3, batch 1024; DCN-v2 with 2 full-rank stacked cross layers; MLCC
with the paper's block (4 heads, dynamic widths 4-1, 8 outputs per field).
`--rounds` interleaved rounds of `model.fit` (median step) and of the
exported `serving_default` at batch 512 (median of 30 calls); each round
gives one MLCC / DCN-v2 ratio.
"""

import argparse
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import _data, _median_step, _serving_time, _summary, write_json  # noqa: E402

MODELS = {"dcn_v2": ("dcn", {"num_cross_layers": 2, "structure": "stacked"}),
          "mlcc": ("mlcc", {}), "mc_mlcc_s4": ("mc_mlcc", {})}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["dcn_v2", "mlcc"], choices=list(MODELS))
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import aefs_keras as ak

    rows, f = 10_000, 39
    x, _, ds = _data(rows, 1024, 8)
    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=rows - 1) for i in range(f)])
    models = {}
    for name in args.models:
        backbone, options = MODELS[name]
        keras.utils.set_random_seed(0)
        d = 64 if name == "mc_mlcc_s4" else 16
        models[name] = ak.default_compile(ak.build_model(
            schema, backbone, d_main=d, hidden_units=[256, 128, 64, 32], dropout=0.2,
            backbone_options=options), jit_compile=False)  # plain steps, as documented
        models[name].fit(ds, epochs=1, verbose=0)
    train = {n: [] for n in models}
    for r in range(args.rounds):
        for n in (list(models) if r % 2 == 0 else list(models)[::-1]):
            train[n].append(1024 / _median_step(models[n], ds, 2))
    tmp = tempfile.mkdtemp(prefix="mlcc_speed_")
    served = {n: tf.saved_model.load(ak.export(m, tmp, n)).signatures["serving_default"]
              for n, m in models.items()}
    xb = {k: tf.constant(v[:512]) for k, v in x.items()}
    for fn in served.values():
        _serving_time(fn, xb, 5)
    serve = {n: [] for n in models}
    for r in range(args.rounds):
        for n in (list(models) if r % 2 == 0 else list(models)[::-1]):
            serve[n].append(512 / _serving_time(served[n], xb, 30))
    costs = {n: ak.model_costs(m)["multiply_adds"] for n, m in models.items()}

    base = args.models[0]
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "multiply_adds_per_example": costs,
              "train_examples_per_s": {n: _summary(v) for n, v in train.items()},
              "serve_examples_per_s": {n: _summary(v) for n, v in serve.items()},
              "train_ratio_vs_" + base: {n: _summary([a / b for a, b in zip(v, train[base])]) for n, v in train.items()},
              "serve_ratio_vs_" + base: {n: _summary([a / b for a, b in zip(v, serve[base])]) for n, v in serve.items()}}
    write_json(result, args.out)


if __name__ == "__main__":
    main()
