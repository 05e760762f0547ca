"""Why a `tf.data` dataset's labels are not checked in `fit`: the cost of a
per-batch check in the input pipeline.

    python benchmarks/label_check.py --rounds 6 --out benchmarks/results/label_check.json
    python benchmarks/label_check.py --rounds 12 --out benchmarks/results/label_check_12_rounds.json

DeepFM with no selection at the accuracy grid's size (39 fields x 2,000 ids,
d_main 32, MLP 64-32, batch 1024, `default_compile`: an XLA step) fits 3
epochs of a cached dataset of 32 batches, in alternating rounds, plain and
with the check a `map` would add: each batch's labels in [0, 1] asserted
(`tf.debugging.Assert`), the features passed through. An assertion inside
the step itself is dropped by XLA. Reports the seconds per round and the
ratio checked / plain per round.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

F = 39


def with_label_check(ds):
    def check(features, labels):
        values = tf.cast(labels, tf.float32)
        ok = tf.reduce_all((values >= 0.0) & (values <= 1.0))
        with tf.control_dependencies([tf.debugging.Assert(ok, ["labels outside [0, 1]"])]):
            return features, tf.identity(labels)

    return ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import numpy as np

    import aefs_keras as ak

    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=1999) for i in range(F)])
    rng = np.random.default_rng(0)
    x = {f"C{i}": rng.integers(0, 2000, 1024 * 32) for i in range(F)}
    y = (rng.random(1024 * 32) < 0.2).astype("float32")
    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(1024).cache()
    data = {"plain": plain, "checked": with_label_check(plain)}
    model = ak.default_compile(ak.build_model(schema, "deepfm", None, d_main=32, hidden_units=[64, 32]))
    for ds in data.values():
        model.fit(ds, epochs=1, verbose=0)  # trace and warm up both
    seconds = {k: [] for k in data}
    for r in range(args.rounds):
        for k in (("plain", "checked") if r % 2 == 0 else ("checked", "plain")):
            t = time.perf_counter()
            model.fit(data[k], epochs=3, verbose=0)
            seconds[k].append(time.perf_counter() - t)
    ratios = [c / p for p, c in zip(seconds["plain"], seconds["checked"])]
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "command": " ".join(sys.argv),
           "seconds": seconds, "checked_over_plain": {"median": statistics.median(ratios),
                                                      "mean": statistics.mean(ratios),
                                                      "sd": statistics.stdev(ratios), "values": ratios}}
    print(json.dumps(out["checked_over_plain"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    import tensorflow as tf

    sys.exit(main())
