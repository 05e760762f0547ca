"""Validation and test AUC several times an epoch: where each model peaks.

    python benchmarks/validation_curve.py benchmarks/configs/results.yaml \\
        fair_aux_width_5_seeds/criteo_80k/dcn/none/-/lr_3e-3 \\
        fair_aux_width_5_seeds/criteo_80k/dcn/aefs_adafs/0.5/mixed_d_aux_8_lr_3e-3 \\
        --seeds 0 1 2 --checks-per-epoch 4 --epochs 2 --out benchmarks/results/validation_curve.json

The bench validates once per epoch. On criteo_80k every DCN and MLCC run at
lr 3e-3 has its best validation AUC after epoch 1 (docs/aefs.md), so a
model that would peak part-way through an epoch is scored at an epoch end.
This trains runs of a bench config (each named by its key without the seed:
the same settings, model and seeds as the bench) and measures validation and
test AUC `--checks-per-epoch` times per epoch, with the served sub-graph.
Per run it reports the best point on validation and the test AUC there, and
the same with epoch ends only (what the bench sees); test never chooses.
"""

import argparse
import json
import math
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _best(points):
    """The point with the highest validation AUC (the earliest on a tie)."""
    return max(points, key=lambda p: (p["val_auc"], -p["epochs"]))


def curve(spec, data, settings, checks_per_epoch, epochs):
    import keras

    from aefs_keras.bench.runner import _predict, build_run_model
    from aefs_keras.metrics import auc_score
    from aefs_keras.serving import inference_model

    model, settings, fields = build_run_model(spec, data, settings)  # fields: the static baseline's
    serving = inference_model(model)
    train, _ = data.pipelines(spec.seed, fields)
    steps = math.ceil(len(data.train_arrays[1]) / int(settings["batch_size"]))
    at = {round(j * steps / checks_per_epoch) for j in range(1, checks_per_epoch + 1)}
    splits = {name: (x if fields is None else {k: x[k] for k in fields}, y)
              for name, (x, y) in (("val_auc", data.valid_arrays), ("test_auc", data.test_arrays))}
    points = []

    class Checks(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in at:
                point = {"epochs": round(self.epoch + (batch + 1) / steps, 4), "epoch_end": batch + 1 == steps}
                for name, (x, y) in splits.items():
                    point[name] = auc_score(y, _predict(serving, x, len(y))[0])
                points.append(point)

    model.fit(train, epochs=epochs, verbose=0, callbacks=[Checks()])
    best, best_end = _best(points), _best([p for p in points if p["epoch_end"]])
    return {"key": spec.key, "seed": spec.seed, "points": points, "best": best, "best_at_epoch_ends": best_end}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("runs", nargs="+", help="run keys without the seed, e.g. GRID/DATASET/BACKBONE/none/-/VARIANT")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checks-per-epoch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.checks_per_epoch < 1 or args.epochs < 1:
        parser.error(f"--checks-per-epoch and --epochs must be at least 1. Received: "
                     f"{args.checks_per_epoch}, {args.epochs}")

    from aefs_keras.bench.config import load_config
    from aefs_keras.bench.runner import load_data, machine_description

    config = load_config(args.config)
    settings = dict(config.settings, **({"data_dir": args.data_dir} if args.data_dir else {}))
    specs = {}
    for name in args.runs:
        found = {s.seed: s for s in config.runs if s.key.rsplit("/", 1)[0] == name}
        missing = [seed for seed in args.seeds if seed not in found]
        if missing:
            parser.error(f"no run {name} with seeds {missing} in {args.config}")
        specs[name] = [found[seed] for seed in args.seeds]
    datasets = {}
    out = {"config": args.config, "checks_per_epoch": args.checks_per_epoch, "epochs": args.epochs,
           "machine": machine_description(), "runs": {}}
    for name, runs in specs.items():
        results = []
        for spec in runs:
            if spec.dataset not in datasets:
                datasets[spec.dataset] = load_data(spec.dataset, settings)
            r = curve(spec, datasets[spec.dataset], settings, args.checks_per_epoch, args.epochs)
            print(f"{spec.key}: best validation at epoch {r['best']['epochs']:g} (test AUC "
                  f"{r['best']['test_auc']:.4f}); at epoch ends, epoch {r['best_at_epoch_ends']['epochs']:g} "
                  f"(test AUC {r['best_at_epoch_ends']['test_auc']:.4f})", flush=True)
            results.append(r)
        summary = {}
        for which in ("best", "best_at_epoch_ends"):
            aucs = [r[which]["test_auc"] for r in results]
            summary[which] = {"test_auc_mean": statistics.mean(aucs),
                              "test_auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                              "epochs": [r[which]["epochs"] for r in results]}
        out["runs"][name] = {"seeds": results, "summary": summary}
        for which, s in summary.items():
            print(f"{name} [{which}]: test AUC {s['test_auc_mean']:.4f} ± {s['test_auc_sd']:.4f}, "
                  f"at epochs {s['epochs']}", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
