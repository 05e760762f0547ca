"""Peer check: our DeepFM against DeepCTR's DeepFM, test AUC on the same split.

    python benchmarks/deepctr_accuracy.py --datasets criteo_80k census_kdd frappe --seeds 0 1 2 \
        --out benchmarks/results/deepctr_accuracy.json

Both models get the same integer ids (our preprocessing, fitted on the
training split, applied once and saved to a file) of the benchmark grid's
fixed splits, and the grid's configuration (benchmarks/configs/results.yaml):
embedding width 32, MLP 64-32, dropout 0.2, Adam 1e-3, batch 1024, at most
10 epochs with early stopping on validation AUC (patience 2, best weights
restored); DeepCTR's embedding and linear L2 set to 0 (ours has none).
DeepCTR 0.9.4 runs under legacy Keras (tf-keras) in its own virtual
environment (benchmarks/.deepctr-venv, created by deepctr_peer.py's
`ensure_venv` on first use). Test AUC is computed here, exactly, from both
models' predictions.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

WIDTH, HIDDEN, DROPOUT, BATCH, EPOCHS, PATIENCE = 32, (64, 32), 0.2, 1024, 10, 2

DEEPCTR_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    from deepctr.feature_column import SparseFeat
    from deepctr.models import DeepFM
    d = np.load(sys.argv[1]); seed = int(sys.argv[2]); out = sys.argv[3]
    W, H1, H2, DROP, BATCH, EPOCHS, PATIENCE = json.loads(sys.argv[4])
    tf.keras.utils.set_random_seed(seed)
    sizes = d["sizes"].tolist()
    cols = [SparseFeat(f"f{j}", vocabulary_size=n, embedding_dim=W) for j, n in enumerate(sizes)]
    model = DeepFM(cols, cols, dnn_hidden_units=(H1, H2), dnn_dropout=DROP, l2_reg_embedding=0.0,
                   l2_reg_linear=0.0, task="binary", seed=seed)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")])
    x = lambda a: {f"f{j}": a[:, j] for j in range(a.shape[1])}
    stop = tf.keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=PATIENCE,
                                            restore_best_weights=True)
    h = model.fit(x(d["train_x"]), d["train_y"], batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=True,
                  validation_data=(x(d["valid_x"]), d["valid_y"]), callbacks=[stop])
    np.save(out, model.predict(x(d["test_x"]), batch_size=4096, verbose=0)[:, 0])
    print(json.dumps({"epochs": len(h.history["loss"])}))
""")

OURS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    import aefs_keras as ak
    d = np.load(sys.argv[1]); seed = int(sys.argv[2]); out = sys.argv[3]
    W, H1, H2, DROP, BATCH, EPOCHS, PATIENCE = json.loads(sys.argv[4])
    keras.utils.set_random_seed(seed)
    # vocabulary_size = n - 1 plus the OOV row: n rows per field, as DeepCTR's table.
    schema = ak.Schema([ak.Categorical(f"f{j}", vocabulary_size=int(n) - 1) for j, n in enumerate(d["sizes"])])
    model = ak.default_compile(ak.build_model(schema, "deepfm", d_main=W, hidden_units=[H1, H2], dropout=DROP))
    x = lambda a: {f"f{j}": a[:, j] for j in range(a.shape[1])}
    train = tf.data.Dataset.from_tensor_slices((x(d["train_x"]), d["train_y"])).shuffle(
        100_000, seed=seed).batch(BATCH).prefetch(2)
    valid = tf.data.Dataset.from_tensor_slices((x(d["valid_x"]), d["valid_y"])).batch(BATCH)
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=PATIENCE,
                                         restore_best_weights=True)
    h = model.fit(train, validation_data=valid, epochs=EPOCHS, verbose=0, callbacks=[stop])
    np.save(out, model.predict(x(d["test_x"]), batch_size=4096, verbose=0)[:, 0])
    print(json.dumps({"epochs": len(h.history["loss"])}))
""")


def write_ids(name, path, data_dir):
    """The dataset's fixed splits as per-field integer ids in [0, field size)."""
    import numpy as np
    import tensorflow as tf

    import aefs_keras as ak
    from aefs_keras.layers import FieldIds

    data = ak.datasets.load_benchmark(name, data_dir)
    ids_layer = FieldIds(data.schema)

    def ids(arrays):
        x, y = arrays
        out = []
        for lo in range(0, len(y), 8192):
            part = {k: v[lo:lo + 8192] for k, v in x.items()}
            part = {k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in part.items()}
            out.append(np.asarray(ids_layer(part)))
        return np.concatenate(out).astype("int64"), y.astype("float32")

    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"{split}_x"], arrays[f"{split}_y"] = ids(getattr(data, f"{split}_arrays"))
    np.savez(path, sizes=np.array(data.schema.field_sizes), **arrays)
    return arrays["test_y"]


def run(python, script, data, seed, tmp):
    out = os.path.join(tmp, f"pred_{seed}.npy")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    config = json.dumps([WIDTH, *HIDDEN, DROPOUT, BATCH, EPOCHS, PATIENCE])
    proc = subprocess.run([python, f.name, data, str(seed), out, config], capture_output=True, text=True)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    import numpy as np

    return np.load(out), json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["criteo_80k", "census_kdd", "frappe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    from deepctr_peer import ensure_venv

    from aefs_keras.bench.runner import machine_description
    from aefs_keras.metrics import auc_score

    python = ensure_venv()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            data = os.path.join(tmp, f"{name}.npz")
            y = write_ids(name, data, args.data_dir)
            for seed in args.seeds:  # interleaved, so drift on the machine hits both alike
                for label, py, script in (("DeepCTR 0.9.4 DeepFM (tf-keras)", python, DEEPCTR_SCRIPT),
                                          ("aefs-keras DeepFM (Keras 3)", sys.executable, OURS_SCRIPT)):
                    p, info = run(py, script, data, seed, tmp)
                    r = {"dataset": name, "model": label, "seed": seed, "auc": auc_score(y, p), **info}
                    results.append(r)
                    print(f"{name:<11} {label:<34} seed {seed}: AUC {r['auc']:.4f} ({r['epochs']} epochs)",
                          flush=True)
    lines = ["| dataset | model | test AUC (mean ± sd) | seeds |", "|---|---|---|---|"]
    for name in args.datasets:
        for label in dict.fromkeys(r["model"] for r in results):
            auc = [r["auc"] for r in results if r["dataset"] == name and r["model"] == label]
            sd = statistics.stdev(auc) if len(auc) > 1 else float("nan")
            lines.append(f"| {name} | {label} | {statistics.mean(auc):.4f} ± {sd:.4f} | {len(auc)} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine_description(), "results": results, "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
