"""The `aefs-keras` command."""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _train_and_measure(model, data, epochs, patience, callbacks=()):
    import keras

    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=patience, restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(data.train, validation_data=data.valid, epochs=epochs,
                        callbacks=[stop, *callbacks], verbose=2)
    seconds = time.perf_counter() - start
    epochs_run = len(history.history["loss"])
    examples = epochs_run * len(data.train_arrays[1])
    result = model.evaluate(data.test, return_dict=True, verbose=0)
    return {
        "auc": result["auc"],
        "logloss": result["logloss"],
        "epochs": epochs_run,
        # Includes the per-epoch validation pass, as a user's fit would.
        "train_examples_per_s": examples / seconds,
        "activated": model.activated_embedding_parameters(),
    }


def demo(args) -> int:
    import keras

    import aefs_keras as ak

    print(f"Synthetic Criteo-shaped data: {args.rows} rows, seed {args.seed}")
    # String categoricals, as served models receive them (Criteo-like tokens).
    data = ak.datasets.synthetic(num_rows=args.rows, seed=args.seed, batch_size=args.batch_size,
                                 categorical_dtype="string")
    print(f"  {data.schema.num_fields} fields; oracle test AUC {data.oracle_auc:.4f}; planted informative "
          "fields (oracle AUC without each): "
          + ", ".join(f"{n} {data.oracle_auc_without[n]:.4f}" for n in data.informative_fields))
    if args.warmup_epochs < 0:
        raise SystemExit(f"--warmup-epochs must be >= 0. Received: {args.warmup_epochs}")
    steps_per_epoch = -(-len(data.train_arrays[1]) // args.batch_size)
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    print(f"  AEFS: soft warm-up for the first {warmup_steps} training steps "
          f"({args.warmup_epochs:g} epoch(s)), then the hard top-k")
    options = dict(hidden_units=args.hidden_units, d_main=args.d_main)
    results = {}
    models = {}
    for selection in (None, "aefs"):
        label = selection or "none"
        print(f"\n== {args.backbone}, selection={label} ==")
        keras.utils.set_random_seed(args.seed)
        kw = dict(options)
        if selection:
            kw.update(k_ratio=args.k_ratio, main_weighting=args.main_weighting,
                      warmup_steps=warmup_steps, aux_backbone=args.aux_backbone)
            if args.importance_prior:
                # The no-selection model just trained says which fields it uses; the
                # selector starts from that ranking (docs/aefs.md, "Importance prior").
                drops = ak.importance.permutation_importance(models["none"], *data.valid_arrays,
                                                             seed=args.seed)
                kw["field_prior"] = ak.importance.importance_prior(drops)
                top = sorted(zip(drops, data.schema.names), reverse=True)[:10]
                print("  controller prior from the no-selection model's permutation importance "
                      "(validation AUC lost by shuffling each field; top 10): "
                      + ", ".join(f"{n} {d:.4f}" for d, n in top))
        model = ak.default_compile(ak.build_model(data.schema, args.backbone, selection, **kw))
        results[label] = _train_and_measure(model, data, args.epochs, args.patience)
        models[label] = model

    print("\nTest split (held out; early stopping used the validation split):")
    header = f"{'selection':<10} {'AUC':>8} {'logloss':>8} {'emb. params/ex':>15} {'train ex/s':>11} {'epochs':>7}"
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(f"{label:<10} {r['auc']:>8.4f} {r['logloss']:>8.4f} {r['activated']:>15d} "
              f"{r['train_examples_per_s']:>11.0f} {r['epochs']:>7d}")
    cut = 1 - results["aefs"]["activated"] / results["none"]["activated"]
    print(f"AEFS: AUC {results['aefs']['auc'] - results['none']['auc']:+.4f} against no selection, "
          f"{cut:.1%} fewer activated embedding parameters per example.")

    model = models["aefs"]
    # On the held-out rows, as served (inference-mode selector).
    f = ak.selection_frequency(model, data.test)
    names = data.schema.names
    order = sorted(range(len(names)), key=lambda i: -f[i])
    k = model.get_layer("selector").k
    print(f"\nShare of test rows that kept each field (k={k} of {len(names)}; * = planted), "
          "most kept first:")
    print("  " + ", ".join(f"{names[i]}{'*' if names[i] in data.informative_fields else ''} {f[i]:.2f}"
                           for i in order))
    noise_max = max(f[names.index(n)] for n in data.noise_fields)
    below = [n for n in data.informative_fields if f[names.index(n)] <= noise_max]
    print(f"  planted fields kept no more often than the most kept noise field ({noise_max:.2f}): "
          f"{below or 'none'}")

    os.makedirs(args.out, exist_ok=True)
    keras_path = os.path.join(args.out, "demo_aefs.keras")
    model.save(keras_path)
    path = ak.export(model, os.path.join(args.out, "serving"), "demo_aefs",
                     version=args.version, overwrite=True)
    print(f"\nSaved {keras_path} and the TF Serving export {path}")
    return 0


def train_command(args) -> int:
    import aefs_keras as ak

    # First, before any other TensorFlow op (multi-worker collectives).
    strategy = ak.distributed.get_strategy(args.strategy)
    import keras

    if args.format:
        data = _file_data(ak, args)
    elif args.data == "synthetic":
        data = ak.datasets.synthetic(num_rows=args.rows, seed=args.seed, batch_size=args.batch_size,
                                     categorical_dtype="string")
    else:
        data = ak.datasets.load_benchmark(args.data, args.data_dir, batch_size=args.batch_size, seed=args.seed)
    options = dict(d_main=args.d_main, hidden_units=args.hidden_units)
    if args.selection:
        options["k_ratio"] = args.k_ratio
    print(ak.memory_plan(data.schema, args.d_main, selection=args.selection,
                         uses_linear=args.backbone in ("deepfm", "wide_deep")))

    def build():
        keras.utils.set_random_seed(args.seed)
        return ak.default_compile(ak.build_model(data.schema, args.backbone, args.selection, **options))

    save_freq = int(args.save_freq) if str(args.save_freq).isdigit() else args.save_freq
    model, _ = ak.distributed.fit(build, data.train, args.epochs, strategy=strategy,
                                  backup_dir=args.backup_dir, save_freq=save_freq,
                                  validation_data=data.valid, verbose=2)
    if data.test is None:
        raise SystemExit("No test data: give --valid or --test files with --format")
    result = model.evaluate(data.test, return_dict=True, verbose=0)
    for report in getattr(data, "reports", []):
        print(report)
    print(f"test AUC {result['auc']:.4f}  logloss {result['logloss']:.4f}  "
          f"activated embedding parameters/example {model.activated_embedding_parameters()}")
    if args.export:
        path = ak.export(model, args.export, args.name, overwrite=False)
        print(f"Exported to {path}")
    return 0


def _file_data(ak, args):
    """Train / valid / test pipelines from files, mapped by one artifact."""
    import types

    if not args.train:
        raise SystemExit("--format needs --train PATH [PATH ...]")
    if args.artifact and os.path.exists(args.artifact):
        pp = ak.datasets.Preprocessing.load(args.artifact)
        print(f"Using the preprocessing artifact {args.artifact} ({pp.rows:,} rows fitted)")
    else:
        pp = ak.datasets.fit_preprocessing(args.format, args.train, min_count=args.min_count)
        if args.artifact:
            pp.save(args.artifact)
    reports = []

    def read(paths, shuffle=False):
        if not paths:
            return None
        ds, report = ak.datasets.load(pp.format, paths, batch_size=args.batch_size, shuffle=shuffle,
                                      seed=args.seed)
        reports.append(report)
        return ds

    data = types.SimpleNamespace(schema=pp.schema, train=read(args.train, shuffle=True),
                                 valid=read(args.valid), test=read(args.test or args.valid),
                                 reports=reports)
    return data


def preprocess_command(args) -> int:
    import aefs_keras as ak

    pp = ak.datasets.fit_preprocessing(args.format, args.paths, min_count=args.min_count,
                                       numeric=args.numeric, hash_above=args.hash_above,
                                       strict=args.strict, engine=args.engine)
    pp.save(args.out)
    sizes = pp.schema.field_sizes
    print(f"Wrote {args.out}: {len(sizes)} fields, {sum(sizes):,} ids in all, from {pp.rows:,} rows "
          f"({pp.skipped} bad rows skipped)")
    return 0


def export_command(args) -> int:
    import keras

    import aefs_keras as ak

    model = keras.models.load_model(args.model)
    path = ak.export(model, args.base_dir, args.name, version=args.version,
                     overwrite=args.overwrite, example_signature=False if args.no_example_signature else None)
    print(f"Exported {args.model} to {path}")
    return 0


def bench_command(args) -> int:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aefs-keras", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train DeepFM without selection and with AEFS on synthetic data")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--backbone", default="deepfm")
    p.add_argument("--k-ratio", type=float, default=0.5)
    p.add_argument("--main-weighting", default="scaled", choices=["scaled", "straight_through"],
                   help="AEFS main-path weights (build_model's main_weighting; docs/aefs.md)")
    p.add_argument("--aux-backbone", default=None, help="AEFS small head: a backbone name, e.g. dnn "
                   "(build_model's aux_backbone; default: a small copy of --backbone)")
    p.add_argument("--no-importance-prior", dest="importance_prior", action="store_false",
                   help="start AEFS's controller from zeros instead of the no-selection model's "
                        "permutation importance (build_model's field_prior)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="AEFS soft warm-up before the hard top-k, in epochs of training steps "
                        "(build_model's warmup_steps; 0: hard from the first step, the paper)")
    p.add_argument("--d-main", type=int, default=32)
    p.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="saved_models")
    p.add_argument("--version", type=int, default=1)
    p.set_defaults(func=demo)

    p = sub.add_parser("train", help="train a builder configuration (optionally distributed)")
    p.add_argument("--data", default="synthetic", choices=["synthetic", "criteo_80k", "census_kdd", "frappe"])
    p.add_argument("--data-dir", default="../shared/data", help="where criteo_80k etc. live")
    p.add_argument("--format", help="read files instead: criteo, avazu, kdd12 (see aefs_keras.datasets.load)")
    p.add_argument("--train", nargs="+", help="training files (with --format)")
    p.add_argument("--valid", nargs="+", help="validation files (with --format)")
    p.add_argument("--test", nargs="+", help="test files (with --format; default: --valid)")
    p.add_argument("--artifact", help="preprocessing artifact: used if it exists, else fitted and written")
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows")
    p.add_argument("--backbone", default="deepfm")
    p.add_argument("--selection", default=None, choices=[None, "adafs", "aefs"])
    p.add_argument("--k-ratio", type=float, default=0.5)
    p.add_argument("--d-main", type=int, default=32)
    p.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2048, help="global batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", default=None, choices=[None, "default", "mirrored", "multi_worker"])
    p.add_argument("--backup-dir", help="step-level backups; restart with the same one to resume")
    p.add_argument("--save-freq", default="epoch", help="'epoch' or a number of steps")
    p.add_argument("--export", help="TF Serving base directory to export to")
    p.add_argument("--name", default="ctr", help="model name for --export")
    p.set_defaults(func=train_command)

    p = sub.add_parser("preprocess", help="fit the preprocessing artifact in one pass over training files")
    p.add_argument("format", help="criteo, avazu, avazu_time (hour split into hour of day and weekday) or kdd12")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True, help="artifact JSON to write")
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--numeric", default="log_squared", choices=["log_squared", "quantile"])
    p.add_argument("--hash-above", type=int, default=None)
    p.add_argument("--strict", action="store_true", help="fail on the first bad row")
    p.add_argument("--engine", default="auto", choices=["auto", "arrow", "tf"],
                   help="arrow: pyarrow's CSV parser (default when installed); tf: the TensorFlow reader")
    p.set_defaults(func=preprocess_command)

    p = sub.add_parser("export", help="export a saved .keras model for TF Serving")
    p.add_argument("model", help="a .keras file saved from an aefs-keras model")
    p.add_argument("base_dir", help="TF Serving model base path, e.g. saved_models/serving")
    p.add_argument("name", help="model name (sub-directory of base_dir)")
    p.add_argument("--version", type=int, default=None, help="default: one above the highest present")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--no-example-signature", action="store_true",
                   help="leave out the tf.Example `regress` signature")
    p.set_defaults(func=export_command)

    p = sub.add_parser("bench", help="run a benchmark grid from a YAML config; write tables, plots, report")
    p.add_argument("config", help="e.g. benchmarks/configs/results.yaml")
    p.add_argument("--quick", action="store_true", help="the config's reduced `quick` grid")
    p.add_argument("--out", help="results folder (default benchmarks/results/<config name>[_quick])")
    p.add_argument("--report", help="markdown report to write (default OUT/report.md)")
    p.add_argument("--jobs", type=int, default=1, help="processes side by side (threads split between them)")
    p.add_argument("--fresh", action="store_true", help="discard finished runs instead of reusing them")
    p.add_argument("--report-only", action="store_true", help="rewrite tables, plots and report from results")
    p.add_argument("--data-dir", help="where criteo_80k, census_kdd, frappe live (default ../shared/data)")
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--shard", help=argparse.SUPPRESS)
    p.set_defaults(func=bench_command)
    args = parser.parse_args(argv)
    args.argv_for_report = [a for a in (sys.argv[1:] if argv is None else argv)
                            if a not in ("--fresh", "--report-only")]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
