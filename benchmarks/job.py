"""The whole job at scale, stage by stage: generate -> preprocess -> train ->
evaluate -> export -> serve, each stage in its own process, timed, with its
peak resident memory.

    python benchmarks/job.py --rows 1000000 --out benchmarks/results/job_1e6.json
    python benchmarks/job.py --rows 10000000 --out benchmarks/results/job_1e7.json

Data: `aefs-keras synth` files (Criteo layout, Zipf values, planted label):
a training file of ROWS rows and a held-out test file of ROWS / 20 rows
(another seed, the same label model). Preprocessing: the
arrow engine, min count 2, at most --max-vocab values per field with the
tail hashed into --oov-buckets ids. Training: DeepFM + AEFS (k = F/2, d_main
32, MLP 400-400-400 as the paper), one epoch, batch 4096, SparseAdam with
row-wise Adagrad on the embeddings; with --compare-none also DeepFM without
selection, the same way, so the AEFS minus no-selection test AUC is
measured at this size (one seed). Evaluation: exact AUC and log-loss over
the whole test file. Serving: the export loaded in a fresh process that
imports only TensorFlow; load time and p50 / p99 latency at batch 1 and 512.

Peak RSS per stage is the stage process's own maximum (`os.wait4`), so
stages do not hide each other. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_stage(name, argv, log):
    """Runs one stage as a child process; returns its wall time, peak RSS
    and the JSON it prints on its last line."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n== {name}: {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        text = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        out.write(text)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed (exit {os.waitstatus_to_exitcode(status)}); see {log}")
    result = json.loads(text.strip().splitlines()[-1])
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024.0, **result}


def _stage(args):
    """The body of one stage, run in a child process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.stage == "synth":
        from aefs_keras.datasets.criteo_like import write_criteo_like

        out = write_criteo_like(args.path, args.rows, seed=args.seed, progress=False)
        print(json.dumps({"rows": out["rows"], "bytes": out["bytes"], "click_rate": out["click_rate"]}))
        return
    import aefs_keras as ak

    if args.stage == "preprocess":
        pp = ak.datasets.fit_preprocessing("criteo", [args.path], min_count=2, max_vocab=args.max_vocab,
                                           oov_buckets=args.oov_buckets, engine="arrow", progress=False,
                                           count_budget=args.count_budget)
        pp.save(args.artifact)
        sizes = pp.schema.field_sizes
        approx = pp.options.get("approximate_counts") or {}
        print(json.dumps({"rows": pp.rows, "ids": sum(sizes), "largest_field": max(sizes),
                          "approximate_fields": len(approx),
                          "certain_vocabularies": sum(a["exact_set"] for a in approx.values()),
                          "fields_at_max_vocab": sum(1 for f in pp.schema.fields
                                                     if getattr(f, "vocabulary", None) is not None
                                                     and len(f.vocabulary) >= args.max_vocab)}))
        return
    import keras
    import numpy as np

    if args.stage == "train":
        pp = ak.datasets.Preprocessing.load(args.artifact)
        train, report = ak.datasets.load(args.artifact, [args.path], batch_size=4096, shuffle=True,
                                         seed=args.seed)
        keras.utils.set_random_seed(args.seed)
        selection = ak.AEFS() if args.selection == "aefs" else None
        model = ak.build_model(pp.schema, "deepfm", selection, d_main=32, hidden_units=[400, 400, 400],
                               memory_check="rowwise_adagrad")
        ak.default_compile(model, optimizer=ak.optimizers.SparseAdam(
            1e-3, embedding_rule="rowwise_adagrad", embedding_learning_rate=0.05))
        start = time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        model.save(args.model)
        rows = sum(report.rows.values())
        print(json.dumps({"rows": rows, "skipped": report.total_skipped, "fit_seconds": seconds,
                          "rows_per_s": rows / seconds, "ids": sum(pp.schema.field_sizes)}))
        return
    if args.stage == "evaluate":
        model = keras.models.load_model(args.model)
        test, _ = ak.datasets.load(args.artifact, [args.path], batch_size=8192)
        labels, probs = [], []
        start = time.perf_counter()
        for x, y in test:
            probs.append(np.asarray(model.predict_on_batch(x)).ravel())
            labels.append(y.numpy())
        seconds = time.perf_counter() - start
        labels, probs = np.concatenate(labels), np.concatenate(probs)
        print(json.dumps({"rows": len(labels), "auc": ak.metrics.auc_score(labels, probs),
                          "logloss": ak.metrics.log_loss(labels, probs), "rows_per_s": len(labels) / seconds}))
        return
    if args.stage == "export":
        model = keras.models.load_model(args.model)
        path = ak.export(model, args.export_dir, args.selection, overwrite=True, version=1)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        print(json.dumps({"bytes": size}))
        return
    raise SystemExit(f"unknown stage {args.stage!r}")


_SERVE = r"""
import gzip, json, sys, time
import numpy as np
start = time.perf_counter()
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
load = time.perf_counter() - start
assert not [m for m in sys.modules if m.startswith("aefs_keras")]
rng = np.random.default_rng(0)
lines = [l.rstrip("\n").split("\t") for l, _ in zip(gzip.open(sys.argv[2], "rt"), range(512))]
def batch(n):
    rows = [lines[i] for i in rng.integers(0, len(lines), n)]
    x = {f"I{i}": tf.constant([float(r[i]) if r[i] else float("nan") for r in rows], tf.float32)
         for i in range(1, 14)}
    x.update({f"C{j}": tf.constant([r[13 + j] for r in rows]) for j in range(1, 27)})
    return x
out = {"load_seconds": load}
for n in (1, 512):
    x = batch(n)
    for _ in range(20):
        fn(**x)
    times = []
    for _ in range(300 if n == 1 else 60):
        t = time.perf_counter(); fn(**x)["probability"].numpy(); times.append(time.perf_counter() - t)
    out[f"p50_ms_batch{n}"] = 1e3 * float(np.percentile(times, 50))
    out[f"p99_ms_batch{n}"] = 1e3 * float(np.percentile(times, 99))
print(json.dumps(out))
"""


def table(paths):
    """Markdown: one row per stage, one column group per results file."""
    runs = [json.load(open(p)) for p in paths]
    ratio = len(runs) == 2  # two sizes: the peak RSS of the second over the first
    head = "| stage | " + " | ".join(f"{r['rows']:,} rows: s | rows/s | peak RSS MB" for r in runs) + (
        " | peak RSS ratio |" if ratio else " |")
    lines = [head, "|---|" + "---|---|---|" * len(runs) + ("---|" if ratio else "")]
    for stage in runs[0]["stages"]:
        cells = []
        for r in runs:
            st = r["stages"].get(stage)
            if st is None:
                cells.append("- | - | -")
                continue
            rate = st.get("rows_per_s") or (st["rows"] / st["seconds"] if st.get("rows") else None)
            cells.append(f"{st['seconds']:.0f} | {rate:,.0f} | {st['peak_rss_mb']:,.0f}" if rate else
                         f"{st['seconds']:.0f} | - | {st['peak_rss_mb']:,.0f}")
        if ratio and all(stage in r["stages"] for r in runs):
            cells.append(f"{runs[1]['stages'][stage]['peak_rss_mb'] / runs[0]['stages'][stage]['peak_rss_mb']:.2f}x")
        elif ratio:
            cells.append("-")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", nargs="+", help="print the markdown table of these results files")
    parser.add_argument("--rows", type=int, help="training rows")
    parser.add_argument("--work", default="/tmp/aefs_job", help="where the data, models and exports go")
    parser.add_argument("--out", help="JSON results")
    parser.add_argument("--max-vocab", type=int, default=200_000)
    parser.add_argument("--oov-buckets", type=int, default=10_000)
    parser.add_argument("--count-budget", type=int, default=None,
                        help="values counted per field while preprocessing (default: exact counts)")
    parser.add_argument("--compare-none", action="store_true", help="also train and evaluate no selection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)
    parser.add_argument("--selection", default="aefs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return None
    if args.stage:
        return _stage(args)
    if not args.rows:
        parser.error("--rows is required")

    os.makedirs(args.work, exist_ok=True)
    log = os.path.join(args.work, "job.log")
    me = [sys.executable, os.path.abspath(__file__), "--max-vocab", str(args.max_vocab),
          "--oov-buckets", str(args.oov_buckets)] + (
        ["--count-budget", str(args.count_budget)] if args.count_budget else [])
    files = {part: os.path.join(args.work, f"{part}_{args.rows}.tsv.gz") for part in ("train", "test")}
    held_out = max(1000, args.rows // 20)
    artifact = os.path.join(args.work, f"artifact_{args.rows}.json")
    stages = {}
    print(f"load average before: {os.getloadavg()}", flush=True)
    for i, (part, rows) in enumerate((("train", args.rows), ("test", held_out))):
        stages[f"synth_{part}"] = _run_stage(f"synth_{part}", me + ["--stage", "synth", "--path", files[part],
                                                                    "--rows", str(rows),
                                                                    "--seed", str(args.seed + i)], log)
        print(f"synth_{part}: {stages[f'synth_{part}']}", flush=True)
    stages["preprocess"] = _run_stage("preprocess", me + ["--stage", "preprocess", "--path", files["train"],
                                                          "--rows", "0", "--artifact", artifact], log)
    print(f"preprocess: {stages['preprocess']}", flush=True)
    for selection in (["aefs", "none"] if args.compare_none else ["aefs"]):
        model = os.path.join(args.work, f"{selection}_{args.rows}.keras")
        common = ["--artifact", artifact, "--model", model, "--selection", selection, "--rows", "0"]
        for stage, extra in (("train", ["--path", files["train"]]), ("evaluate", ["--path", files["test"]]),
                             ("export", ["--export-dir", os.path.join(args.work, "serving")])):
            key = f"{stage}_{selection}"
            stages[key] = _run_stage(key, me + ["--stage", stage] + common + extra, log)
            print(f"{key}: {stages[key]}", flush=True)
        export = os.path.join(args.work, "serving", selection, "1")
        key = f"serve_{selection}"
        stages[key] = _run_stage(key, [sys.executable, "-c", _SERVE, export, files["test"]], log)
        print(f"{key}: {stages[key]}", flush=True)
    from aefs_keras.bench.runner import machine_description

    result = {"rows": args.rows, "held_out_rows": held_out, "max_vocab": args.max_vocab,
              "oov_buckets": args.oov_buckets, "count_budget": args.count_budget,
              "machine": machine_description(), "stages": stages}
    if args.compare_none:
        result["aefs_minus_none_test_auc"] = stages["evaluate_aefs"]["auc"] - stages["evaluate_none"]["auc"]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
