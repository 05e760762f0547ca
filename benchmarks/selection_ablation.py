"""AEFS against no selection and late AdaFS on the synthetic default, with ablations.

    python benchmarks/selection_ablation.py --seeds 0 1 2 --out benchmarks/results/ablation.json

Each variant trains DeepFM (MLP 256-128, d_main 32, k = F/2) with early
stopping on the validation split (patience 1) and reports test AUC (mean
and spread over seeds), activated embedding parameters per example, and
how often AEFS kept the planted informative fields against the noise
fields in its last epoch.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import aefs_keras as ak  # noqa: E402

VARIANTS = {
    "none": dict(selection=None),
    "adafs_late": dict(selection="adafs"),
    "aefs": dict(selection="aefs"),
    "aefs_paper_weights": dict(selection="aefs", weight_scale="sum"),
    "aefs_paper_controller": dict(selection="aefs", controller_output_layer=False),
    "aefs_no_alignment": dict(selection="aefs", embedding_alignment=0.0, prediction_alignment=0.0),
    "aefs_mvfs": dict(selection="aefs", controller="mvfs"),
}


def run(variant, seed, rows, epochs):
    data = ak.datasets.synthetic(num_rows=rows, seed=seed)
    kw = dict(VARIANTS[variant])
    selection = kw.pop("selection")
    if selection:
        kw["k_ratio"] = 0.5
    keras.utils.set_random_seed(seed)
    model = ak.default_compile(ak.build_model(data.schema, "deepfm", selection,
                                              hidden_units=[256, 128], **kw))
    freq = [ak.FieldSelectionFrequency()] if selection else []
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=1,
                                         restore_best_weights=True)
    t = time.perf_counter()
    h = model.fit(data.train, validation_data=data.valid, epochs=epochs, verbose=0,
                  callbacks=[stop, *freq])
    seconds = time.perf_counter() - t
    res = model.evaluate(data.test, return_dict=True, verbose=0)
    out = {"variant": variant, "seed": seed, "auc": res["auc"], "logloss": res["logloss"],
           "oracle_auc": data.oracle_auc, "epochs": len(h.history["loss"]),
           "fit_seconds": seconds, "activated": model.activated_embedding_parameters()}
    if freq:
        f, names = freq[0].frequencies[-1], data.schema.names
        inf = [float(f[names.index(n)]) for n in data.informative_fields]
        noise = [float(f[names.index(n)]) for n in data.noise_fields]
        out.update(informative_mean=float(np.mean(inf)), informative_min=min(inf),
                   noise_mean=float(np.mean(noise)), noise_max=max(noise),
                   informative_above_every_noise=sum(x > max(noise) for x in inf))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    results = []
    for variant in a.variants:
        for seed in a.seeds:
            r = run(variant, seed, a.rows, a.epochs)
            results.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'variant':<24} {'test AUC mean':>13} {'std':>7} {'emb/ex':>7} "
          f"{'inform. mean':>12} {'noise mean':>10} {'noise max':>9}")
    for variant in a.variants:
        rs = [r for r in results if r["variant"] == variant]
        aucs = np.array([r["auc"] for r in rs])
        sel = "informative_mean" in rs[0]
        fmt = (lambda key: f"{np.mean([r[key] for r in rs]):.2f}") if sel else (lambda key: "-")
        print(f"{variant:<24} {aucs.mean():>13.4f} {aucs.std(ddof=1) if len(aucs) > 1 else 0:>7.4f} "
              f"{rs[0]['activated']:>7d} {fmt('informative_mean'):>12} {fmt('noise_mean'):>10} "
              f"{fmt('noise_max'):>9}")
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
