"""The `aefs-keras` command: parses the arguments and dispatches.

Each subcommand lives in its own module (demo.py, jobs.py, bench/command.py),
imported only when it runs, so that `aefs-keras --help` needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="aefs-keras",
        description="Adaptive early feature selection (AEFS) and MLCC for CTR prediction, on Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train DeepFM without selection and with AEFS on synthetic data")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--backbone", default="deepfm")
    p.add_argument("--k-ratio", type=float, default=0.5)
    p.add_argument("--aux-backbone", default=None, help="AEFS small head: a backbone name, e.g. dnn "
                   "(AEFS's aux_backbone; default: a small copy of --backbone)")
    p.add_argument("--no-importance-prior", dest="importance_prior", action="store_false",
                   help="start AEFS's controller from zeros instead of the no-selection model's "
                        "permutation importance (AEFS's field_prior)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="AEFS soft warm-up before the hard top-k, in epochs of training steps "
                        "(AEFS's warmup_steps; 0: hard from the first step, the paper)")
    p.add_argument("--d-main", type=int, default=32)
    p.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="saved_models")
    p.add_argument("--version", type=int, default=1)
    p.set_defaults(func="aefs_keras.demo:run")

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
    p.set_defaults(func="aefs_keras.jobs:train")

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
    p.set_defaults(func="aefs_keras.jobs:preprocess")

    p = sub.add_parser("export", help="export a saved .keras model for TF Serving")
    p.add_argument("model", help="a .keras file saved from an aefs-keras model")
    p.add_argument("base_dir", help="TF Serving model base path, e.g. saved_models/serving")
    p.add_argument("name", help="model name (sub-directory of base_dir)")
    p.add_argument("--version", type=int, default=None, help="default: one above the highest present")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--no-example-signature", action="store_true",
                   help="leave out the tf.Example `regress` signature")
    p.set_defaults(func="aefs_keras.jobs:export")

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
    p.set_defaults(func="aefs_keras.bench.command:run")
    args = parser.parse_args(argv)
    args.argv_for_report = [a for a in (sys.argv[1:] if argv is None else argv)
                            if a not in ("--fresh", "--report-only")]
    module, function = args.func.split(":")
    # Only now TensorFlow loads: `--help` and argument errors answer at once.
    return getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(main())
