"""The mixed form's dropped-field fill: the plain path against the assembled one.

    python benchmarks/fill_speed.py --out benchmarks/results/fill_speed.json

`DroppedFieldFill(from_aux=True)` on compact rows: every field a row dropped
gets m_f + a_f P_f. F = 39 fields, k = 20 kept per row (random), d_aux = 4,
batch 4096, float32, forward and backward (gradients for the rows, the
auxiliary embeddings and both weights), d = 32 and 64.
- `plain`: the kept rows placed into (B, F, d) (`ops.place_fields`), a
  (B, F) kept mask, the fill as an einsum, `placed + (1 - kept) * fill`
  (the layer before the assembled path; still its path for compact=False);
- `assembled`: the fill as one field-major matmul with m_f folded in,
  assembled with the kept rows by one gather (`ops.assemble_fields`), the
  layer's path for compact rows.
Also the forward pass alone (serving) at batches 512 and 4096.
Each form: the median of `--calls` calls, in `--rounds` interleaved rounds;
mean and sd over the rounds, and the ratio assembled / plain per round.
"""

import argparse
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import _summary, interleaved_ms, write_json  # noqa: E402

F, K, D_AUX, BATCH = 39, 20, 4, 4096


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from aefs_keras.experimental.dropped_field_fill import DroppedFieldFill
    from aefs_keras.ops import place_fields

    rng = np.random.default_rng(0)
    idx = tf.constant(np.stack([rng.permutation(F)[:K] for _ in range(BATCH)]).astype("int32"))
    aux = tf.constant(rng.normal(size=(BATCH, F, D_AUX)).astype("float32"))

    results = {}
    for d in (32, 64):
        rows = tf.constant(rng.normal(size=(BATCH, K, d)).astype("float32"))
        upstream = tf.constant(rng.normal(size=(BATCH, F, d)).astype("float32"))
        assembled = DroppedFieldFill(F, compact=True, from_aux=True)
        plain = DroppedFieldFill(F, compact=False, from_aux=True)
        assembled(rows, idx, aux), plain(place_fields(rows, idx, F), idx, aux)
        plain.set_weights(assembled.get_weights())
        forms = {"plain": lambda r, a: plain(place_fields(r, idx, F), idx, a),
                 "assembled": lambda r, a: assembled(r, idx, a)}

        def step_of(name, fn):
            layer = plain if name == "plain" else assembled

            @tf.function
            def step(r, a):
                with tf.GradientTape() as tape:
                    tape.watch([r, a])
                    loss = tf.reduce_sum(fn(r, a) * upstream)
                return tape.gradient(loss, [r, a, *layer.trainable_weights])
            return step

        steps = {name: step_of(name, fn) for name, fn in forms.items()}
        ms = interleaved_ms(steps, args.rounds, args.calls, rows, aux)
        ratio = [a / p for a, p in zip(ms["assembled"], ms["plain"])]
        results[f"forward + backward ms, d {d}"] = {**{n: _summary(v) for n, v in ms.items()},
                                                    "assembled / plain": _summary(ratio)}
        for batch in (512, BATCH):  # forward only: serving
            r_, a_, i_ = rows[:batch], aux[:batch], idx[:batch]
            fwd = {"plain": lambda r, a: plain(place_fields(r, i_, F), i_, a),
                   "assembled": lambda r, a: assembled(r, i_, a)}
            calls = {name: tf.function(fn) for name, fn in fwd.items()}
            ms = interleaved_ms(calls, args.rounds, args.calls, r_, a_)
            ratio = [a / p for a, p in zip(ms["assembled"], ms["plain"])]
            results[f"forward ms, d {d}, batch {batch}"] = {**{n: _summary(v) for n, v in ms.items()},
                                                            "assembled / plain": _summary(ratio)}
    write_json({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "F": F, "k": K, "d_aux": D_AUX,
                "batch": BATCH, "results": results}, args.out)


if __name__ == "__main__":
    main()
