"""Our DeepFM against DeepCTR's DeepFM, side by side on the same data.

    python benchmarks/deepctr_peer.py --out benchmarks/results/deepctr_peer.json

Configuration (the Scale issue's): 39 categorical fields x 100k ids each
(Zipf-distributed), embedding width 16, MLP 400-400-400, batch 4096, Adam
1e-3, 2 epochs; labels from a planted logistic model, so the held-out AUC
means something. DeepCTR 0.9.4 runs under legacy Keras (tf-keras) in its
own virtual environment, which this script creates on first use in
benchmarks/.deepctr-venv. Training examples/s is measured on the second
epoch (the first includes tracing). Every model runs in its own process,
one after another, with the machine otherwise idle as far as we control.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".deepctr-venv")
F, VOCAB, WIDTH, BATCH, EPOCHS = 39, 100_000, 16, 4096, 2


def make_data(path, train_rows, test_rows, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = train_rows + test_rows
    ids = np.empty((n, F), "int64")
    for j in range(F):
        ranks = np.minimum(rng.zipf(1.1, size=n), VOCAB) - 1
        ids[:, j] = rng.permutation(VOCAB)[ranks]
    logit = np.zeros(n)
    for j in rng.choice(F, 8, replace=False):
        logit += rng.normal(0, 0.8, VOCAB)[ids[:, j]]
    logit += -1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    np.savez(path, ids=ids, y=y, train_rows=train_rows)


DEEPCTR_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    from deepctr.feature_column import SparseFeat, get_feature_names
    from deepctr.models import DeepFM
    d = np.load(sys.argv[1]); n = int(d["train_rows"]); ids, y = d["ids"], d["y"]
    F, VOCAB, WIDTH, BATCH, EPOCHS = [int(v) for v in sys.argv[2:7]]
    tf.random.set_seed(0)
    cols = [SparseFeat(f"C{j}", vocabulary_size=VOCAB, embedding_dim=WIDTH) for j in range(F)]
    model = DeepFM(cols, cols, dnn_hidden_units=(400, 400, 400), task="binary", seed=0)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
    x = {f"C{j}": ids[:n, j] for j in range(F)}
    times = []
    class T(tf.keras.callbacks.Callback):
        def on_epoch_begin(s, e, logs=None): s.t = time.perf_counter()
        def on_epoch_end(s, e, logs=None): times.append(time.perf_counter() - s.t)
    model.fit(x, y[:n], batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[T()])
    xt = {f"C{j}": ids[n:, j] for j in range(F)}
    t = time.perf_counter(); p = model.predict(xt, batch_size=BATCH, verbose=0)[:, 0]; pt = time.perf_counter() - t
    print(json.dumps({"model": "DeepCTR 0.9.4 DeepFM (tf-keras, Adam)", "epoch_seconds": times,
                      "predictions": p.tolist(), "predict_seconds": pt, "tf": tf.__version__}))
""")

OURS_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    import aefs_keras as ak
    from aefs_keras.optimizers import SparseAdam
    d = np.load(sys.argv[1]); n = int(d["train_rows"]); ids, y = d["ids"], d["y"]
    F, VOCAB, WIDTH, BATCH, EPOCHS = [int(v) for v in sys.argv[2:7]]
    variant = sys.argv[7]
    keras.utils.set_random_seed(0)
    # vocabulary_size=VOCAB - 1 plus the OOV row: VOCAB rows per field, as DeepCTR.
    schema = ak.Schema([ak.Categorical(f"C{j}", vocabulary_size=VOCAB - 1) for j in range(F)])
    model = ak.build_model(schema, "deepfm", d_main=WIDTH, hidden_units=[400, 400, 400])
    opt = SparseAdam(1e-3) if variant == "sparse_adam" else keras.optimizers.Adam(1e-3)
    ak.default_compile(model, optimizer=opt, jit_compile=False)  # plain steps, as DeepCTR's
    x = {f"C{j}": ids[:n, j] for j in range(F)}
    times = []
    class T(keras.callbacks.Callback):
        def on_epoch_begin(s, e, logs=None): s.t = time.perf_counter()
        def on_epoch_end(s, e, logs=None): times.append(time.perf_counter() - s.t)
    ds = tf.data.Dataset.from_tensor_slices((x, y[:n])).batch(BATCH).prefetch(2)
    model.fit(ds, epochs=EPOCHS, verbose=0, callbacks=[T()])
    xt = {f"C{j}": ids[n:, j] for j in range(F)}
    t = time.perf_counter(); p = model.predict(xt, batch_size=BATCH, verbose=0)[:, 0]; pt = time.perf_counter() - t
    name = "aefs-keras DeepFM (Keras 3, " + ("SparseAdam lazy" if variant == "sparse_adam" else "Adam") + ")"
    print(json.dumps({"model": name, "epoch_seconds": times, "predictions": p.tolist(),
                      "predict_seconds": pt, "tf": tf.__version__}))
""")


def ensure_venv():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    import tensorflow as tf

    check = subprocess.run([python, "-c", "import deepctr, tf_keras"], capture_output=True)
    if check.returncode != 0:
        # The same TensorFlow as ours, legacy Keras beside it, and DeepCTR.
        subprocess.run([python, "-m", "pip", "install", "-q", f"tensorflow=={tf.__version__}",
                        f"tf-keras=={tf.__version__.rsplit('.', 1)[0]}.*", "deepctr==0.9.4"], check=True)
    return python


def run(python, script, data, *extra):
    args = [str(v) for v in (F, VOCAB, WIDTH, BATCH, EPOCHS)]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    out = subprocess.run([python, f.name, data, *args, *extra], capture_output=True, text=True)
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=60 * BATCH)
    parser.add_argument("--test-rows", type=int, default=50_000)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from aefs_keras.metrics import auc_score

    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        make_data(data, args.train_rows, args.test_rows)
        y_test = np.load(data)["y"][args.train_rows:]
        results = []
        for label, py, script, extra in [
            ("deepctr", python, DEEPCTR_SCRIPT, ()),
            ("ours_adam", sys.executable, OURS_SCRIPT, ("adam",)),
            ("ours_sparse_adam", sys.executable, OURS_SCRIPT, ("sparse_adam",)),
        ]:
            r = run(py, script, data, *extra)
            p = np.array(r.pop("predictions"))
            r.update(key=label, auc=auc_score(y_test, p),
                     train_examples_per_s=args.train_rows / r["epoch_seconds"][-1],
                     predict_examples_per_s=len(y_test) / r["predict_seconds"])
            results.append(r)
            print(f"{r['model']:<45} train {r['train_examples_per_s']:>8.0f} ex/s  "
                  f"predict {r['predict_examples_per_s']:>8.0f} ex/s  AUC {r['auc']:.4f}", flush=True)
    base = results[0]["train_examples_per_s"]
    for r in results:
        r["train_speedup_vs_deepctr"] = r["train_examples_per_s"] / base
    print("training speed-up against DeepCTR: " +
          ", ".join(f"{r['key']} {r['train_speedup_vs_deepctr']:.2f}x" for r in results))
    if args.out:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}"
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "config": {"fields": F, "ids_per_field": VOCAB, "width": WIDTH,
                                                      "mlp": [400, 400, 400], "batch": BATCH, "epochs": EPOCHS,
                                                      "train_rows": args.train_rows, "test_rows": args.test_rows},
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
