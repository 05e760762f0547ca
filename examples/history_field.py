"""A planted signal in a user history: what the list field is worth and
which fields AEFS keeps (the table in docs/data.md, "A planted signal in a
history field").

    python examples/history_field.py [--seed 0] [--export saved_models/serving]

With --export, the model with every field is exported as `history` for TF
Serving (examples/serving/history_request_*.json are requests for it).

About a minute on 2 cores.
"""

import argparse

import keras
import numpy as np

import aefs_keras as ak
from aefs_keras.importance import importance_prior, permutation_importance
from aefs_keras.metrics import auc_score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--export", help="TF Serving base directory for the model with every field")
    args = parser.parse_args(argv)
    data = ak.datasets.history_data(num_rows=args.rows, num_items=100, num_groups=4)
    x, y = data.test_arrays

    def run(schema, selection=None, fields=None, **options):
        keras.utils.set_random_seed(args.seed)
        model = ak.default_compile(ak.build_model(schema, "deepfm", selection, hidden_units=[32], d_main=16,
                                                  **options), learning_rate=3e-3)
        train, _ = data.pipelines(args.seed, fields)
        model.fit(train, epochs=6, verbose=0)
        p = model.predict({k: x[k] for k in (fields or x)}, verbose=0, batch_size=1024)
        auc = auc_score(y, np.ravel(p["probability"] if isinstance(p, dict) else p))
        kept = "-"
        if selection is not None:
            share = dict(zip(schema.names, ak.selection_frequency(model, ak.datasets.to_dataset(x, y, 1024))))
            kept = f"{share['history']:.2f} / {share['item']:.2f}"
        return model, auc, kept

    print("| model | test AUC | rows keeping `history` / `item` |\n|---|---|---|")
    full, auc, _ = run(data.schema)
    print(f"| DeepFM, all {data.schema.num_fields} fields | {auc:.3f} | - |")
    if args.export:
        print(f"Exported to {ak.export(full, args.export, 'history')}")
    names = [n for n in data.schema.names if n != "history"]
    _, auc, _ = run(data.schema.select(names), fields=names)
    print(f"| DeepFM without `history` | {auc:.3f} | - |")
    _, auc, kept = run(data.schema, "aefs", k_ratio=0.5)
    print(f"| AEFS k = 3, defaults | {auc:.3f} | {kept} |")
    _, auc, kept = run(data.schema, "aefs", k_ratio=0.5, warmup_steps=94, controller="mvfs")
    print(f"| AEFS k = 3, `warmup_steps=94`, `controller=\"mvfs\"` | {auc:.3f} | {kept} |")
    prior = importance_prior(permutation_importance(full, *data.valid_arrays))
    _, auc, kept = run(data.schema, "aefs", k_ratio=0.5, field_prior=prior)
    print(f"| AEFS k = 3, `field_prior` from the first model's validation permutation importance "
          f"| {auc:.3f} | {kept} |")


if __name__ == "__main__":
    main()
