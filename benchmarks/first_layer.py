"""The first MLP layer on the kept fields: which forms are fast on this CPU.

    python benchmarks/first_layer.py --out benchmarks/results/first_layer.json

F = 39 fields, k = 19 kept per row (a random top-k), d = 64, h = 400, float32.
Forms of the forward pass, at batches 16, 512 and 4096:
- `dense over all F`: the layer without selection, (B, F*d) @ (F*d, h);
- `scatter_nd + dense`: today's scattered form (`ops.scatter_fields`);
- `place_fields + dense`: the gather placement of `ops.place_fields`;
- `grouped`: the kept (row, field) pairs grouped by field, one (n_f, d) @
  (d, h) product per field and a segment sum per row (writes B*k*h partial
  outputs; the form the fast path does not use for the forward pass).
Forward + backward at batch 4096: TF's gradient of the dense layer on the
scattered input against `experimental.grouped_first_layer.fields_matmul` (grouped backward).
Each form: the median of `--calls` calls, in `--rounds` interleaved rounds;
mean and sd over the rounds.

    python benchmarks/first_layer.py --split --rounds 5 --split-shapes 64x400 32x400 32x64 --out benchmarks/results/first_layer_split.json

`--split`: AEFS at mixed resolution's layout (14 fields kept on every row, 5
more chosen per row, each row's fields sorted): the dense layer on the
placed rows against `ops.kept_fields_matmul` with the split forced
(`ops.SPLIT_MIN_BATCH`, `SPLIT_MIN_WORK` and `SPLIT_MIN_WORK_TRAINING` set
to 0), forward only at batches 1 to 4096 and forward + backward at 128 to
4096, for each `--split-shapes` d x h of the first layer (default 64x400
32x400; the accuracy grid's is 32x64); each ratio split / dense per round.
"""

import argparse
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import _summary, interleaved_ms, write_json  # noqa: E402

F, K, D, H = 39, 19, 64, 400


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--split", action="store_true", help="time the split first layer (see above)")
    parser.add_argument("--split-shapes", type=lambda v: tuple(int(x) for x in v.split("x")), nargs="+",
                        default=[(64, 400), (32, 400)], help="--split: d x h of the first layer, e.g. 32x64")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.split:
        return split_main(args)

    import numpy as np
    import tensorflow as tf

    from aefs_keras.experimental.grouped_first_layer import _group_by_field, fields_matmul
    from aefs_keras.ops import place_fields, scatter_fields

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(F * D, H)).astype("float32") * 0.01)

    def grouped(rows, idx):
        b = tf.shape(rows)[0]
        dest, counts = _group_by_field(idx, F)
        order = tf.scatter_nd(dest[:, None], tf.range(b * K), [b * K])
        x = tf.split(tf.gather(tf.reshape(rows, [-1, D]), order), counts, num=F)
        blocks = tf.reshape(kernel, [F, D, H])
        partial = tf.concat([tf.matmul(x[f], blocks[f]) for f in range(F)], 0)
        return tf.math.unsorted_segment_sum(partial, order // K, b)

    def dense_on(placed):
        return tf.matmul(tf.reshape(placed, [-1, F * D]), kernel)

    forms = {
        "dense over all F": lambda full, rows, idx: dense_on(full),
        "scatter_nd + dense": lambda full, rows, idx: dense_on(scatter_fields(rows, idx, F)),
        "place_fields + dense": lambda full, rows, idx: dense_on(place_fields(rows, idx, F)),
        "grouped": lambda full, rows, idx: grouped(rows, idx),
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
        "TF gradient of scatter_nd + dense": with_backward(
            lambda rows, idx, w: tf.matmul(tf.reshape(scatter_fields(rows, idx, F), [-1, F * D]), w)),
        "fields_matmul (grouped backward)": with_backward(lambda rows, idx, w: fields_matmul(rows, idx, w, F)),
    }

    results = {}
    for batch in (16, 512, 4096):
        scores = rng.random((batch, F)).astype("float32")
        idx = tf.constant(np.sort(np.argsort(-scores, axis=1)[:, :K], axis=1).astype("int32"))
        rows = tf.constant(rng.normal(size=(batch, K, D)).astype("float32"))
        full = tf.constant(rng.normal(size=(batch, F, D)).astype("float32"))
        fns = {name: tf.function(fn) for name, fn in forms.items()}
        ms = interleaved_ms(fns, args.rounds, args.calls, full, rows, idx)
        results[f"forward ms, batch {batch}"] = {n: _summary(v) for n, v in ms.items()}
        if batch == 4096:
            ms = interleaved_ms(backward_forms, args.rounds, args.calls, rows, idx, kernel)
            results["forward + backward ms, batch 4096"] = {n: _summary(v) for n, v in ms.items()}
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "F": F, "k": K, "d": D, "h": H,
                "results": results}, args.out)


def split_main(args, fixed=14, chosen=5):
    import numpy as np
    import tensorflow as tf

    from aefs_keras import ops

    ops.SPLIT_MIN_BATCH = ops.SPLIT_MIN_WORK = ops.SPLIT_MIN_WORK_TRAINING = 0  # forced: this measures where the thresholds should be
    rng = np.random.default_rng(0)
    fixed_fields = rng.choice(F, fixed, replace=False)
    others = np.setdiff1d(np.arange(F), fixed_fields)

    def dense(rows, idx, kernel):
        return ops.placed_matmul(ops.place_fields(rows, idx, F), kernel)

    def split(rows, idx, kernel):
        return ops.kept_fields_matmul(rows, idx, kernel, F)

    def forward(layer):
        return tf.function(lambda rows, idx, kernel, up: layer(rows, idx, kernel))

    def with_backward(layer):
        @tf.function
        def step(rows, idx, kernel, up):
            with tf.GradientTape() as tape:
                tape.watch([rows, kernel])
                y = tf.reduce_sum(layer(rows, idx, kernel) * up)
            return tape.gradient(y, [rows, kernel])
        return step

    results = []
    for d, h in args.split_shapes:
        kernel = tf.constant(rng.normal(size=(F * d, h)).astype("float32") * 0.01)
        for mode, batches, wrap in (("forward", (1, 16, 64, 256, 512, 1024, 4096), forward),
                                    ("forward + backward", (128, 256, 512, 1024, 4096), with_backward)):
            for batch in batches:
                idx = np.stack([np.sort(np.concatenate([fixed_fields, rng.choice(others, chosen, replace=False)]))
                                for _ in range(batch)]).astype("int32")
                rows = tf.constant(rng.normal(size=(batch, fixed + chosen, d)).astype("float32"))
                up = tf.constant(rng.normal(size=(batch, h)).astype("float32"))
                ms = interleaved_ms({"dense": wrap(dense), "split": wrap(split)}, args.rounds,
                                    args.calls, rows, tf.constant(idx), kernel, up)
                ratio = [a / b for a, b in zip(ms["split"], ms["dense"])]
                results.append({"d": d, "h": h, "mode": mode, "batch": batch, "dense_ms": _summary(ms["dense"]),
                                "split_ms": _summary(ms["split"]), "split_over_dense": _summary(ratio)})
                print(d, h, mode, batch, round(_summary(ratio)["mean"], 3), flush=True)
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "F": F, "fixed": fixed,
                "chosen": chosen, "results": results}, args.out)


if __name__ == "__main__":
    main()
