"""Reader throughput and memory on a generated Criteo-format file.

    python benchmarks/readers.py --rows 2000000 --repeats 3 --out benchmarks/results/readers.json

Writes a Criteo-format file (label, 13 integers with blanks, 26 hex
categoricals with Zipf-distributed values) of `--rows` rows, then, each in
a fresh process: our streaming tf.data parse (`aefs_keras.datasets.load`),
the same with `shuffle=True` (what training reads),
our parse + preprocessing fit (`fit_preprocessing`, vocabularies with min
count 2 and log-squared buckets) on the arrow engine and on the TensorFlow
engine, and `pandas.read_csv` of the same file (C engine, dtypes declared;
it only parses). At the full size the four run `--repeats` times,
interleaved, for mean and spread. Our parse and arrow preprocessing are
also measured on a quarter and a half of the file, to show that their
memory does not grow with the file.
"""

import argparse
import json
import os
import platform
import statistics
import resource
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
what, path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what.startswith("ours"):
    import aefs_keras as ak  # imports are not timed, for either side
    import pyarrow.csv, pyarrow.compute  # noqa: E401 (the arrow engine's, like pandas' below)
else:
    import pandas as pd
t = time.perf_counter()
if what in ("ours_parse", "ours_parse_shuffled"):
    ds, report = ak.datasets.load("criteo", path, batch_size=8192, shuffle=what.endswith("shuffled"))
    n = 0
    for _, y in ds:
        n += int(y.shape[0])
elif what.startswith("ours_parse_preprocess"):
    engine = "tf" if what.endswith("_tf") else "arrow"
    pp = ak.datasets.fit_preprocessing("criteo", [path], min_count=2, batch_size=8192, progress=False,
                                       engine=engine)
    n = pp.rows
else:
    names = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    dtypes = {**{f"I{i}": "float32" for i in range(1, 14)}, **{f"C{i}": "object" for i in range(1, 27)}}
    df = pd.read_csv(path, sep="\t", header=None, names=names, dtype=dtypes)
    n = len(df)
seconds = time.perf_counter() - t
print(json.dumps({"what": what, "rows": n, "seconds": seconds, "rows_per_s": n / seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_file(path, rows, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    chunk = 100_000
    with open(path, "w") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cols = [(rng.random(n) < 0.25).astype(int).astype(str)]
            for _ in range(13):
                v = rng.geometric(0.05, n).astype(str)
                v[rng.random(n) < 0.1] = ""
                cols.append(v)
            for j in range(26):
                ranks = np.minimum(rng.zipf(1.2, n), 1_000_000)
                cols.append(np.char.mod("%08x", (ranks * 2654435761 + j) % 2**32))
            f.write("\n".join("\t".join(r) for r in zip(*cols)) + "\n")


READERS = ["ours_parse", "ours_parse_shuffled", "ours_parse_preprocess", "ours_parse_preprocess_tf",
           "pandas_read_csv"]


def child(what, path, rows):
    out = subprocess.run([sys.executable, "-c", CHILD, what, path, str(rows)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--readers", nargs="+", default=READERS, choices=READERS,
                        help="which readers to time at the full size")
    parser.add_argument("--full-only", action="store_true", help="skip the quarter and half files")
    parser.add_argument("--file", help="time the readers on this Criteo-format file (e.g. job.py's gzip "
                                       "training file) instead of a generated one; --rows is then ignored")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.file:
        args.file = os.path.abspath(args.file)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [args.rows] if args.full_only or args.file else [args.rows // 4, args.rows // 2, args.rows]
        for rows in sizes:
            path = args.file or os.path.join(tmp, f"criteo_{rows}.txt")
            if not args.file:
                write_file(path, rows)
            if rows != args.rows:
                whats = ["ours_parse", "ours_parse_preprocess"]
            else:
                whats = list(args.readers) * args.repeats
            for what in whats:
                r = child(what, path, rows)
                r["file_rows"] = rows
                r["file_mib"] = os.path.getsize(path) / 2**20
                results.append(r)
                print(f"{what:<26} {r['rows']:>10,} rows  {r['rows_per_s']:>10,.0f} rows/s  "
                      f"peak RSS {r['peak_rss_mib']:,.0f} MiB", flush=True)
            if not args.file:
                os.remove(path)
    full = [r for r in results if r["file_rows"] == args.rows]
    pandas = [r["rows_per_s"] for r in full if r["what"] == "pandas_read_csv"]
    print(f"\n{'on ' + args.file if args.file else f'at {args.rows:,} rows'}, mean ± sd over {args.repeats} run(s)"
          + (", ratio to pandas.read_csv:" if pandas else ":"))
    for what in args.readers:
        v = [r["rows_per_s"] for r in full if r["what"] == what]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        ratio = f"{statistics.mean(v) / statistics.mean(pandas):.2f}x" if pandas else ""
        print(f"  {what:<26} {statistics.mean(v):>10,.0f} ± {sd:,.0f} rows/s  {ratio}")
    if args.out:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}"
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
