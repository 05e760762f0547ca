"""The factored fill in the first MLP layer's forward pass: folded into the
kernel, or as vectors added to the placed rows. Sets `FOLD_MIN_BATCH`.

    python benchmarks/fill_fold.py --out benchmarks/results/fill_fold.json

F = 39 fields, k = 19 kept per row (random), d = 64, h = 400, codes of width
e = 5 (d_aux 4 plus the constant), float32, forward only (serving), at
batches 64 to 4096:
- `dense`: the kept rows placed into (B, F * d) and one matmul with the
  kernel, no fill (AEFS's fast path; the floor);
- `fold`: that plus `ops.fill_matmul` (the kernel's field blocks folded into
  the fill's weights, then a (B, F * e) matmul): the path from
  `FOLD_MIN_BATCH` rows;
- `vectors`: the fill's (B, F, d) vectors (`ops.fill_vectors`) added to the
  placed rows before the one matmul: the path below it;
- `fold_weights`: the fold's per-call fixed part alone (F small matmuls).
Each: the median of `--calls` calls, in `--rounds` interleaved rounds; mean
and sd over the rounds.
"""

import argparse
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import _summary, interleaved_ms, write_json  # noqa: E402

F, K, E, D, H = 39, 19, 5, 64, 400


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from aefs_keras.experimental.grouped_first_layer import fields_matmul
    from aefs_keras.ops import fill_matmul, fill_vectors, place_fields

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(F * D, H)).astype("float32"))
    weights = tf.constant(rng.normal(size=(F, E, D)).astype("float32"))

    def dense(rows, idx, codes):
        return fields_matmul(rows, idx, kernel, F)

    def fold(rows, idx, codes):
        return fields_matmul(rows, idx, kernel, F) + fill_matmul(codes, weights, kernel)

    def vectors(rows, idx, codes):
        placed = place_fields(rows, idx, F) + fill_vectors(codes, weights)
        return tf.matmul(tf.reshape(placed, [-1, F * D]), kernel)

    def fold_weights(rows, idx, codes):
        return tf.einsum("fed,fdh->feh", weights, tf.reshape(kernel, [F, D, H]))

    forms = {name: tf.function(fn) for name, fn in
             (("dense", dense), ("fold", fold), ("vectors", vectors), ("fold_weights", fold_weights))}
    results = {}
    for b in args.batches:
        idx = np.stack([rng.permutation(F)[:K] for _ in range(b)]).astype("int32")
        dropped = np.ones((b, F), "float32")
        np.put_along_axis(dropped, idx, 0.0, 1)
        inputs = (tf.constant(rng.normal(size=(b, K, D)).astype("float32")), tf.constant(idx),
                  tf.constant(rng.normal(size=(b, F, E)).astype("float32") * dropped[..., None]))
        np.testing.assert_allclose(forms["fold"](*inputs), forms["vectors"](*inputs), rtol=1e-3, atol=1e-2)
        ms = interleaved_ms(forms, args.rounds, args.calls, *inputs)
        results[f"batch {b}"] = {n: _summary(v) for n, v in ms.items()}
        print(b, {n: round(sum(v) / len(v), 3) for n, v in ms.items()}, flush=True)
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "F": F, "k": K, "e": E, "d": D,
                "h": H, "results": results}, args.out)


if __name__ == "__main__":
    main()
