"""`aefs-keras bench`: run a grid (optionally as N processes), then write
the report (cli.py parses the arguments)."""

from __future__ import annotations

import os
import sys


def run(args) -> int:
    """Runs a benchmark grid (resuming finished runs), then writes the tables,
    plots and the report. --jobs N runs N processes side by side, each with
    cores / N TensorFlow threads."""
    import shlex
    import subprocess

    if args.threads:  # before TensorFlow starts its thread pools
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from aefs_keras.bench import config as bench_config
    from aefs_keras.bench import report, runner

    cfg = bench_config.load_config(args.config, quick=args.quick)
    if args.data_dir:
        cfg.settings["data_dir"] = args.data_dir
    name = cfg.name + ("_quick" if args.quick else "")
    out = args.out or os.path.join("benchmarks", "results", name)
    if args.shard:
        i, n = (int(x) for x in args.shard.split("/"))
        runner.run_grid(cfg, out, fresh=False, shard=(i, n))
        return 0
    if args.fresh and os.path.exists(os.path.join(out, "results.json")):
        os.remove(os.path.join(out, "results.json"))
    if not args.report_only:
        if args.jobs > 1:
            runner.merge_shards(cfg, out, log=lambda m: None)  # fold leftovers of a killed run
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
            base = [sys.executable, "-m", "aefs_keras.cli", "bench", args.config, "--out", out,
                    "--threads", str(threads)] + (["--quick"] if args.quick else []) + (
                ["--data-dir", args.data_dir] if args.data_dir else [])
            procs = [subprocess.Popen(base + ["--shard", f"{i}/{args.jobs}"]) for i in range(args.jobs)]
            codes = [p.wait() for p in procs]
            payload = runner.merge_shards(cfg, out)
            if any(codes):
                print(f"bench: a job failed (exit codes {codes}); finished runs are kept in {out}",
                      file=sys.stderr)
                return 1
        else:
            payload = runner.run_grid(cfg, out)
    else:
        payload = runner.merge_shards(cfg, out)
    peer = cfg.source.get("peer")
    peer_path = os.path.join(out, "deepctr_accuracy.json")
    if peer and not args.quick and not args.report_only and not os.path.exists(peer_path):
        cmd = [sys.executable, peer["script"], "--out", peer_path,
               "--datasets", *peer.get("datasets", []), "--seeds", *[str(s) for s in peer.get("seeds", [0])]]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        print("peer check: " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print("bench: the peer check failed; the report leaves it out", file=sys.stderr)
    payload["notes"] = cfg.source.get("notes")
    payload["summary"] = cfg.source.get("summary")
    if os.path.exists(peer_path):
        import json

        with open(peer_path) as f:
            payload["peer"] = json.load(f)
    command = "aefs-keras " + " ".join(shlex.quote(a) for a in args.argv_for_report)
    path = args.report or os.path.join(out, "report.md")
    text = report.write_report(payload, out, path, command)
    print(text)
    print(f"\nResults: {out}/results.json, results.csv, tables.md, *.png; report: {path}")
    return 0
