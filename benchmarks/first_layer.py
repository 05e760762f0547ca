"""The first MLP layer on the kept fields: which forms are fast on this CPU.

    python benchmarks/first_layer.py --out benchmarks/results/first_layer.json

F = 39 fields, k = 19 kept per row, d = 64, h = 400, float32. Two kinds of
selection: `uniform` (each row's k fields at random: every field kept by
about half the rows, the worst case for splitting) and `trained` (a top-k
over per-field preferences plus Gumbel noise, which keeps some fields on
nearly every row and others rarely, as the selectors of
`benchmarks/scale.py aefs` and of the criteo_80k grid do).
Forms of the forward pass, at batches 16, 512, 1024 and 4096:
- `dense over all F`: the layer without selection, (B, F*d) @ (F*d, h);
- `scatter_nd + dense`: the scattered form (`ops.scatter_fields`);
- `place_fields + dense`: the gather placement, then the same matmul;
- `grouped`: every kept (row, field) pair grouped by field, one
  (n_f, d) @ (d, h) product per field, summed per row
  (`ops.fields_matmul(dense_share=2)`);
- `fields_matmul`: as the layers call it (below `ops.SMALL_BATCH` rows one
  matmul on all placed fields, else common fields dense and rare fields
  grouped at `ops.DENSE_SHARE`); the split forced at every batch size; and
  with `--shares` other splits.
Forward + backward at batch 4096: TF's gradient of the dense layer on the
scattered input against `ops.fields_matmul` and the all-grouped form.
Each form: the median of `--calls` calls, in `--rounds` interleaved rounds;
mean and sd over the rounds.
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import _summary, write_json  # noqa: E402

F, K, D, H = 39, 19, 64, 400


def selection(rng, batch, kind):
    """(batch, K) kept fields per row, sorted; `kind` "uniform" or "trained"."""
    import numpy as np

    preference = np.zeros(F) if kind == "uniform" else np.linspace(4.0, -4.0, F)
    keys = preference[None] + rng.gumbel(size=(batch, F))
    return np.sort(np.argsort(-keys, axis=1)[:, :K], axis=1).astype("int32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--shares", type=float, nargs="*", default=[],
                        help="other `dense_share` splits to time beside the default")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import statistics

    import numpy as np
    import tensorflow as tf

    from aefs_keras.ops import DENSE_SHARE, fields_matmul, place_fields, scatter_fields

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(F * D, H)).astype("float32") * 0.01)

    def dense_on(placed):
        return tf.matmul(tf.reshape(placed, [-1, F * D]), kernel)

    def split(share):
        return lambda full, rows, idx: fields_matmul(rows, idx, kernel, F, dense_share=share, small_batch=0)

    forms = {
        "dense over all F": lambda full, rows, idx: dense_on(full),
        "scatter_nd + dense": lambda full, rows, idx: dense_on(scatter_fields(rows, idx, F)),
        "place_fields + dense": lambda full, rows, idx: dense_on(place_fields(rows, idx, F)),
        "grouped": split(2.0),
        f"fields_matmul (dense_share {DENSE_SHARE})": (lambda full, rows, idx: fields_matmul(rows, idx, kernel, F)),
        "fields_matmul, split at every batch size": (
            lambda full, rows, idx: fields_matmul(rows, idx, kernel, F, small_batch=0)),
        **{f"fields_matmul (dense_share {s}, split at every batch size)": (
            lambda full, rows, idx, s=s: fields_matmul(rows, idx, kernel, F, dense_share=s, small_batch=0))
           for s in args.shares},
    }

    def with_backward(layer):
        @tf.function
        def step(rows, idx, w):
            with tf.GradientTape() as tape:
                tape.watch([rows, w])
                y = tf.reduce_sum(tf.nn.relu(layer(rows, idx, w)))
            return tape.gradient(y, [rows, w])
        return step

    backward_forms = {
        "dense over all F, TF gradient": None,
        "TF gradient of scatter_nd + dense": with_backward(
            lambda rows, idx, w: tf.matmul(tf.reshape(scatter_fields(rows, idx, F), [-1, F * D]), w)),
        "grouped": with_backward(lambda rows, idx, w: fields_matmul(rows, idx, w, F, dense_share=2.0,
                                                                    backward_share=2.0)),
        f"fields_matmul (dense_share {DENSE_SHARE})": with_backward(
            lambda rows, idx, w: fields_matmul(rows, idx, w, F)),
    }

    @tf.function
    def dense_step(full, w):
        with tf.GradientTape() as tape:
            tape.watch([full, w])
            y = tf.reduce_sum(tf.nn.relu(tf.matmul(tf.reshape(full, [-1, F * D]), w)))
        return tape.gradient(y, [full, w])

    def timed(fn, *a):
        for _ in range(3):
            fn(*a)
        ts = []
        for _ in range(args.calls):
            t = time.perf_counter()
            tf.nest.map_structure(lambda v: v.numpy(), fn(*a))
            ts.append(time.perf_counter() - t)
        return 1e3 * statistics.median(ts)

    results = {}
    for kind in ("uniform", "trained"):
        for batch in (16, 512, 1024, 4096):
            idx_np = selection(rng, batch, kind)
            idx = tf.constant(idx_np)
            rows = tf.constant(rng.normal(size=(batch, K, D)).astype("float32"))
            full = tf.constant(rng.normal(size=(batch, F, D)).astype("float32"))
            shares = np.bincount(idx_np.ravel(), minlength=F) / batch
            fns = {name: tf.function(fn) for name, fn in forms.items()}
            ms = {name: [] for name in fns}
            for r in range(args.rounds):
                for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                    ms[name].append(timed(fns[name], full, rows, idx))
            key = f"{kind}, batch {batch}"
            results[f"forward ms, {key}"] = {n: _summary(v) for n, v in ms.items()}
            results[f"fields kept by >= {DENSE_SHARE} of the rows, {key}"] = int((shares >= DENSE_SHARE).sum())
            if batch == 4096:
                ms = {name: [] for name in backward_forms}
                for r in range(args.rounds):
                    for name in (list(backward_forms) if r % 2 == 0 else list(backward_forms)[::-1]):
                        fn = backward_forms[name]
                        ms[name].append(timed(dense_step, full, kernel) if fn is None
                                        else timed(fn, rows, idx, kernel))
                results[f"forward + backward ms, {key}"] = {n: _summary(v) for n, v in ms.items()}
            print(key, {n: round(v["mean"], 2) for n, v in results[f"forward ms, {key}"].items()}, flush=True)
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "F": F, "k": K, "d": D, "h": H,
                "results": results}, args.out)


if __name__ == "__main__":
    main()
