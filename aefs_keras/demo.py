"""`aefs-keras demo`: DeepFM without selection and with AEFS, side by side,
on the built-in synthetic data with planted fields; saves and exports AEFS."""

from __future__ import annotations

import os

import keras

import aefs_keras as ak
from aefs_keras.callbacks import TrainingThroughput


def _train_and_measure(model, data, epochs, patience):
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=patience, restore_best_weights=True
    )
    timer = TrainingThroughput()
    history = model.fit(data.train, validation_data=data.valid, epochs=epochs,
                        callbacks=[stop, timer], verbose=2)
    result = model.evaluate(data.test, return_dict=True, verbose=0)
    return {
        "auc": result["auc"],
        "logloss": result["logloss"],
        "epochs": len(history.history["loss"]),
        "train_examples_per_s": timer.examples_per_s(len(data.train_arrays[1])),
        "activated": model.activated_embedding_parameters(),
    }


def run(args) -> int:
    """`aefs-keras demo`: see `aefs_keras.cli` for the arguments."""
    print(f"Synthetic Criteo-shaped data: {args.rows} rows, seed {args.seed}")
    # String categoricals, as served models receive them (Criteo-like tokens).
    data = ak.datasets.synthetic(num_rows=args.rows, seed=args.seed, batch_size=args.batch_size,
                                 categorical_dtype="string")
    print(f"  {data.schema.num_fields} fields; oracle test AUC {data.oracle_auc:.4f}; planted informative "
          "fields (oracle AUC without each): "
          + ", ".join(f"{n} {data.oracle_auc_without[n]:.4f}" for n in data.informative_fields))
    if args.warmup_epochs < 0:
        raise SystemExit(f"--warmup-epochs must be >= 0. Received: {args.warmup_epochs}")
    steps_per_epoch = -(-len(data.train_arrays[1]) // args.batch_size)
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    print(f"  AEFS: soft warm-up for the first {warmup_steps} training steps "
          f"({args.warmup_epochs:g} epoch(s)), then the hard top-k")
    options = dict(hidden_units=args.hidden_units, d_main=args.d_main)
    results = {}
    models = {}
    for selection in (None, "aefs"):
        label = selection or "none"
        print(f"\n== {args.backbone}, selection={label} ==")
        keras.utils.set_random_seed(args.seed)
        kw = dict(options)
        if selection:
            # The paper's form (per-row choice of all k): the demo shows which fields the selector finds.
            sel = dict(k_ratio=args.k_ratio, warmup_steps=warmup_steps, aux_backbone=args.aux_backbone,
                       resolution="single")
            if args.importance_prior:
                # The no-selection model just trained says which fields it uses; the
                # selector starts from that ranking (docs/aefs.md, "Importance prior").
                drops = ak.importance.permutation_importance(models["none"], *data.valid_arrays,
                                                             seed=args.seed)
                sel["field_prior"] = ak.importance.importance_prior(drops)
                top = sorted(zip(drops, data.schema.names), reverse=True)[:10]
                print("  controller prior from the no-selection model's permutation importance "
                      "(validation AUC lost by shuffling each field; top 10): "
                      + ", ".join(f"{n} {d:.4f}" for d, n in top))
            kw["selection"] = ak.AEFS(**sel)
        model = ak.default_compile(ak.build_model(data.schema, args.backbone, **kw))
        results[label] = _train_and_measure(model, data, args.epochs, args.patience)
        models[label] = model

    print("\nTest split (held out; early stopping used the validation split):")
    header = f"{'selection':<10} {'AUC':>8} {'logloss':>8} {'emb. params/ex':>15} {'train ex/s':>11} {'epochs':>7}"
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(f"{label:<10} {r['auc']:>8.4f} {r['logloss']:>8.4f} {r['activated']:>15d} "
              f"{r['train_examples_per_s']:>11.0f} {r['epochs']:>7d}")
    cut = 1 - results["aefs"]["activated"] / results["none"]["activated"]
    print(f"AEFS: AUC {results['aefs']['auc'] - results['none']['auc']:+.4f} against no selection, "
          f"{cut:.1%} fewer activated embedding parameters per example.")

    model = models["aefs"]
    # On the held-out rows, as served (inference-mode selector).
    f = ak.selection_frequency(model, data.test)
    names = data.schema.names
    order = sorted(range(len(names)), key=lambda i: -f[i])
    k = model.get_layer("selector").k
    print(f"\nShare of test rows that kept each field (k={k} of {len(names)}; * = planted), "
          "most kept first:")
    print("  " + ", ".join(f"{names[i]}{'*' if names[i] in data.informative_fields else ''} {f[i]:.2f}"
                           for i in order))
    noise_max = max(f[names.index(n)] for n in data.noise_fields)
    below = [n for n in data.informative_fields if f[names.index(n)] <= noise_max]
    print(f"  planted fields kept no more often than the most kept noise field ({noise_max:.2f}): "
          f"{below or 'none'}")

    os.makedirs(args.out, exist_ok=True)
    keras_path = os.path.join(args.out, "demo_aefs.keras")
    model.save(keras_path)
    path = ak.export(model, os.path.join(args.out, "serving"), "demo_aefs",
                     version=args.version, overwrite=True)
    print(f"\nSaved {keras_path} and the TF Serving export {path}")
    return 0
