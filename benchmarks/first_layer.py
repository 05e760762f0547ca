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
    parser.add_argument("--out")
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    main()
