"""The `aefs-keras` command: parses the arguments and dispatches.

Each subcommand lives in its own module (demo.py, jobs.py, bench/command.py),
imported only when it runs, so that `aefs-keras --help` needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile

# TensorFlow's C++ log level as the user set it (None: unset), before ours.
_USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show_all = "--help-all" in argv
    if show_all:  # the full help: every option, the advanced ones too
        argv = ["--help" if a == "--help-all" else a for a in argv]
    args = build_parser(show_all).parse_args(argv)
    args.argv_for_report = [a for a in argv if a not in ("--fresh", "--report-only", "--debug")]
    module, function = args.func.split(":")
    try:
        # Only now TensorFlow loads: `--help` and argument errors answer at once.
        _import_tensorflow_quietly()
        return getattr(importlib.import_module(module), function)(args)
    except Exception as e:  # noqa: BLE001 (reported below, or re-raised)
        message = _user_error(e)
        if args.debug or message is None:
            raise
        # One line naming the problem; --debug shows the traceback.
        print(f"aefs-keras {args.command}: error: {message}", file=sys.stderr)
        return 2


def build_parser(show_all: bool = False) -> argparse.ArgumentParser:
    """The `aefs-keras` parser; with `show_all`, the options that --help
    lists only under --help-all get their descriptions."""

    def more(text):
        """Help of an option listed by --help-all only."""
        return text if show_all else argparse.SUPPRESS

    parser = argparse.ArgumentParser(
        prog="aefs-keras",
        description="Adaptive early feature selection (AEFS) and MLCC for CTR prediction, on Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
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

    p = sub.add_parser("train", help="train on your CSV/TSV/Parquet, files of a known format, or built-in data",
                       formatter_class=_Formatter,
                       description="Train, early-stopped on validation AUC; print exact test AUC and "
                                   "log-loss and (with a selection) each field's share of kept rows; save "
                                   "OUT/NAME.keras and optionally export for TF Serving. Your own data: "
                                   "--train FILE.csv --label COLUMN (a header row; kinds inferred). "
                                   "Which --selection to use: `aefs-keras compare` measures them on your data.",
                       epilog=None if show_all else "--help-all shows every option (data, selection and "
                                                    "training details).")
    _help_all_flag(p)
    _data_flags(p, more)
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="deepfm", choices=["deepfm", "dcn", "wide_deep", "dnn", "mlcc", "mc_mlcc"],
                   help="the interaction model")
    g.add_argument("--d-main", type=int, default=32, help="embedding width")
    g.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128], help="MLP widths")
    _selection_flags(p, more)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10, help="at most this many")
    g.add_argument("--patience", type=int, default=2, help="epochs without a better validation AUC before stopping")
    g.add_argument("--batch-size", type=int, default=2048, help="global batch size")
    g.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling")
    g = p.add_argument_group("training (more)")
    g.add_argument("--optimizer", default="adam", choices=["adam", "lazy_adam", "rowwise_adagrad"],
                   help=more("adam, or SparseAdam whose embedding updates cost the rows touched only: lazy_adam, "
                             "rowwise_adagrad (one state value per row; for big tables)"))
    g.add_argument("--strategy", default=None, choices=["default", "mirrored", "multi_worker"],
                   help=more("tf.distribute strategy (default: none; multi_worker reads TF_CONFIG, "
                             "docs/distributed.md)"))
    g.add_argument("--backup-dir", help=more("step-level backups; restart with the same one to resume"))
    g.add_argument("--save-freq", default="epoch", help=more("backup every epoch, or every this many steps"))
    g = p.add_argument_group("output")
    g.add_argument("--out", default="saved_models", help="folder of NAME.keras")
    g.add_argument("--name", default="ctr", help="model name (file name and export name)")
    g.add_argument("--export", help="also export for TF Serving under this base folder")
    p.set_defaults(func="aefs_keras.jobs:train")

    p = sub.add_parser("compare", help="train every selection method on your data and recommend one",
                       description="Trains no selection, the static top-k, the static mixed-dimension model, "
                                   "AEFS in the paper's form and AEFS at mixed resolution at the same k, each "
                                   "at the learning rate that validation AUC picks; prints one table (AUC, "
                                   "log-loss, embedding values read per example, training and serving ex/s), "
                                   "marks the AUC-cost frontier, writes it as a PNG, recommends one model by "
                                   "validation AUC and saves and exports it.",
                       formatter_class=_Formatter)
    _help_all_flag(p)
    _data_flags(p, more)
    g = p.add_argument_group("model and methods")
    g.add_argument("--backbone", default="deepfm", help="backbone of every candidate (default deepfm)")
    g.add_argument("--d-main", type=int, default=32, help="main embedding width (default 32)")
    g.add_argument("--hidden-units", type=int, nargs="+", default=[256, 128], help="MLP widths (default 256 128)")
    g.add_argument("--k", type=int, default=None, help="fields kept (default: --k-ratio of the fields)")
    g.add_argument("--k-ratio", type=float, default=None, help="fraction of the fields kept (default 0.5)")
    g.add_argument("--methods", nargs="+", default=None,
                   help="candidates (default all: none static mixed_dimension aefs_single aefs)")
    g.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3, 3e-3],
                   help="Adam learning rates tried per candidate, chosen on validation AUC (default 1e-3 3e-3)")
    g = p.add_argument_group("training and choice")
    g.add_argument("--epochs", type=int, default=10, help="at most this many (default 10)")
    g.add_argument("--patience", type=int, default=2, help="epochs without a better validation AUC (default 2)")
    g.add_argument("--batch-size", type=int, default=2048, help="batch size (default 2048)")
    g.add_argument("--seed", type=int, default=0, help="seed of every candidate (default 0)")
    g.add_argument("--max-auc-loss", type=float, default=0.001,
                   help="recommend the cheapest candidate within this validation AUC of the best (default 0.001)")
    g.add_argument("--budget", type=int, default=None,
                   help="instead: the most accurate candidate reading at most this many embedding values per example")
    g.add_argument("--out", default="saved_models", help="where NAME.keras, NAME.png and NAME.json go")
    g.add_argument("--export", default=None, help="TF Serving base directory (default OUT/serving)")
    g.add_argument("--name", default="compare", help="file and export name of the recommended model")
    p.set_defaults(func="aefs_keras.comparison:run")

    p = sub.add_parser("predict", help="score a CSV/TSV/Parquet file with a saved .keras model",
                       formatter_class=_Formatter,
                       description="Streams FILE through MODEL and writes, per scored row, its line in FILE, "
                                   "the click probability and (for a model that selects per row) the fields it "
                                   "kept. Columns are read by the model's schema, as in training; rows that "
                                   "cannot be scored are reported by cause and line, never dropped silently.")
    p.add_argument("model", help="a .keras file saved by aefs-keras train (or model.save)")
    p.add_argument("file", help="CSV/TSV with a header (plain or .gz) or Parquet, holding the model's feature columns")
    p.add_argument("--out", required=True, help="output file: Parquet if it ends in .parquet, else CSV")
    p.add_argument("--batch-size", type=int, default=4096, help="rows scored per step")
    p.add_argument("--delimiter", help="one character (default: from the extension or the header)")
    p.add_argument("--strict", action="store_true", help="stop at the first row that cannot be scored")
    p.set_defaults(func="aefs_keras.scoring:run")

    p = sub.add_parser("preprocess", help="fit the preprocessing artifact in one pass over training files")
    p.add_argument("inputs", nargs="+", help="[FORMAT] PATH ...: a known format (criteo, avazu, avazu_time, "
                   "kdd12) and its files, or your CSV/TSV file(s) with a header, or Parquet")
    p.add_argument("--out", required=True, help="artifact JSON to write")
    p.add_argument("--label", default="label", help="label column of your file")
    p.add_argument("--columns", help="comma-separated feature columns of your file")
    p.add_argument("--ignore", default="", help="comma-separated columns to leave out")
    p.add_argument("--categorical", default="", help="comma-separated columns to treat as categorical")
    p.add_argument("--numeric-columns", dest="numeric_columns", default="",
                   help="comma-separated columns to treat as numeric")
    p.add_argument("--delimiter", help="one character (default: from the extension or the header)")
    _kind_flags(p)
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--max-vocab", type=int, default=None,
                   help="at most this many values per field (the most frequent); the tail is hashed")
    p.add_argument("--oov-buckets", type=int, default=1, help="hashed ids per field for values not kept")
    p.add_argument("--count-budget", type=int, default=None,
                   help="count at most this many values per field while fitting (memory flat in the rows; "
                        "rare values' counts approximate, reported in the artifact)")
    p.add_argument("--numeric", default="log_squared", choices=["log_squared", "quantile"],
                   help="how numeric columns are bucketised")
    p.add_argument("--hash-above", type=int, default=None)
    p.add_argument("--strict", action="store_true", help="fail on the first bad row")
    p.add_argument("--engine", default="auto", choices=["auto", "arrow", "tf"],
                   help="arrow: pyarrow's CSV parser (default when installed); tf: the TensorFlow reader")
    p.set_defaults(func="aefs_keras.jobs:preprocess")

    p = sub.add_parser("synth", help="write a Criteo-shaped file with a planted label, of any size",
                       description="Streams N rows in Criteo's layout (label, I1-I13, C1-C26; tab-separated) "
                                   "with Zipf-distributed values and a planted label model; read it with "
                                   "--format criteo. See aefs_keras.datasets.criteo_like.")
    p.add_argument("out", help="output file (.tsv, or .tsv.gz for gzip)")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-values", type=int, default=2_000_000, help="distinct values possible in C1")
    p.add_argument("--header", action="store_true",
                   help="write a header row (label, I1-I13, C1-C26): the file then reads as your own TSV "
                        "(--train FILE --label label) instead of --format criteo")
    p.set_defaults(func="aefs_keras.jobs:synth")

    p = sub.add_parser("export", help="export a saved .keras model for TF Serving")
    p.add_argument("model", help="a .keras file saved from an aefs-keras model")
    p.add_argument("base_dir", help="TF Serving model base path, e.g. saved_models/serving")
    p.add_argument("name", help="model name (sub-directory of base_dir)")
    p.add_argument("--version", type=int, default=None, help="default: one above the highest present")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--no-example-signature", action="store_true",
                   help="leave out the tf.Example `regress` signature")
    p.add_argument("--keras-graph", action="store_true",
                   help="serve the model's own Keras graph, not the one specialised for AEFS at mixed "
                        "resolution (the same outputs; docs/serving.md)")
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
    return parser


def _data_flags(p, more):
    """The data and split flags `train` and `compare` share (the rarer ones
    listed by --help-all only)."""
    g = p.add_argument_group("data")
    g.add_argument("--train", nargs="+", help="training file(s): your CSV/TSV with a header, or Parquet "
                                              "(default: --data)")
    g.add_argument("--valid", nargs="+", help="validation file(s) (default: --split of the --train file)")
    g.add_argument("--test", nargs="+", help="test file(s) (default: --split of --train)")
    g.add_argument("--label", default="label", help="label column of your file (numbers; > 0 is a click)")
    g.add_argument("--ignore", default="", help="comma-separated columns to leave out")
    g.add_argument("--categorical", default="", help="comma-separated columns to treat as categorical "
                                                     "(default: kinds inferred from the whole file)")
    g.add_argument("--numeric", default="", help="comma-separated columns to treat as numeric (bucketised)")
    g.add_argument("--data", default="synthetic", choices=["synthetic", "criteo_80k", "census_kdd", "frappe"],
                   help="built-in data when no --train is given")
    g = p.add_argument_group("split")
    g.add_argument("--split", help="train,valid,test fractions of one --train file (default 0.8,0.1,0.1)")
    g.add_argument("--split-mode", default="random", choices=["random", "sequential", "time"],
                   help="random (by a seeded hash of each row), sequential (file order) or time (by "
                        "--time-column: the earliest rows train, the latest test)")
    g.add_argument("--time-column", help="for --split-mode time: a column of numbers (epoch seconds, "
                                         "YYYYMMDD, ...); --ignore it to keep it out of the features")
    g = p.add_argument_group("data (more)")
    g.add_argument("--columns", help=more("comma-separated feature columns (default: all but label and --ignore)"))
    g.add_argument("--delimiter", help=more("one character (default: from the extension or the header)"))
    _kind_flags(g, more)
    g.add_argument("--strict", action="store_true", help=more("a bad row or a cut-off last line is an error"))
    g.add_argument("--format", help=more("files of a known format instead: criteo, avazu, avazu_time, kdd12"))
    g.add_argument("--artifact", help=more("preprocessing artifact: used if it exists, else fitted and written"))
    g.add_argument("--min-count", type=int, default=2, help=more("rarer values share the OOV id(s)"))
    g.add_argument("--max-vocab", type=int, default=None,
                   help=more("at most this many values per field (the most frequent); the tail is hashed"))
    g.add_argument("--oov-buckets", type=int, default=1, help=more("hashed ids per field for values not kept"))
    g.add_argument("--count-budget", type=int, default=None,
                   help=more("count at most this many values per field while fitting (memory flat in the "
                             "rows; rare values' counts approximate, reported in the artifact)"))
    g.add_argument("--data-dir", default="../shared/data", help=more("where criteo_80k etc. live"))
    g.add_argument("--rows", type=int, default=200_000, help=more("rows of --data synthetic"))


def _selection_flags(p, more):
    """--selection, and every option of the selection classes
    (`aefs_keras.selection.command_line_options`): --k and --k-ratio shown,
    the rest listed by --help-all."""
    from aefs_keras.selection import command_line_options

    g = p.add_argument_group("selection")
    g.add_argument("--selection", default="none", choices=list(SELECTION_CHOICES),
                   help="; ".join(f"{k}: {v}" for k, v in SELECTION_CHOICES.items()))
    rest = p.add_argument_group("selection (more)")
    for o in command_line_options():
        flag = "--" + o["name"].replace("_", "-")
        text = f"[{', '.join(o['methods'])}] {o['help']}"
        if o["default"] is not None and o["type"] is not bool:
            shown = " ".join(map(str, o["default"])) if o["list"] else o["default"]
            text += f" (default {shown})"
        if o["type"] is bool:
            kind = dict(action=argparse.BooleanOptionalAction, help=f"{text} (default {'on' if o['default'] else 'off'})")
        elif o["list"] and o["name"] == "fields":
            kind = dict(type=lambda v: [c.strip() for c in v.split(",") if c.strip()], metavar="A,B,...", help=text)
        else:
            kind = dict(type=o["type"], nargs="+" if o["list"] else None, help=text)
        group = g if o["name"] in ("k", "k_ratio") else rest
        if group is rest:
            kind["help"] = more(kind["help"])
        group.add_argument(flag, default=None, **kind)
    rest.add_argument("--importance-epochs", type=int, default=2,
                      help=more("[static, mixed_dimension, mixed] epochs of the model without selection whose "
                                "permutation importance ranks the fields"))
    rest.add_argument("--importance-rows", type=int, default=50_000,
                      help=more("[static, mixed_dimension, mixed] validation rows the permutation importance "
                                "is measured on"))


# --selection's choices; the classes' docstrings say more (aefs_keras.selection).
SELECTION_CHOICES = {
    "none": "every field at --d-main, no selection",
    "static": "the same k fields for every row, the rest not read (fastest)",
    "mixed_dimension": "those k fields at --d-main, the rest at --d-small, no selector (as accurate as "
                       "none in our measurements, faster)",
    "aefs": "early selection per row, at mixed resolution (its fixed fields ranked during training)",
    "mixed": "aefs with its fixed fields ranked by a model without selection first",
    "adafs": "late selection per row (every field looked up)",
}


def _help_all_flag(p):
    p.add_argument("--help-all", action="store_true", help="show every option, and exit")


class _Formatter(argparse.HelpFormatter):
    """Shows each option's default after its description."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.option_strings and default is not None and default is not False and default != ""
                and default != argparse.SUPPRESS and "default" not in text and action.help != argparse.SUPPRESS):
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            text += f" (default {shown})"
        return text


def _kind_flags(group, more=lambda text: text):
    """Lists and numbers fed as values, for `train` and `preprocess`."""
    group.add_argument("--multi-categorical", default="",
                       help=more("comma-separated columns holding lists of values, e.g. tags 'a|b|c' "
                                 "(ak.MultiCategorical, mean-pooled)"))
    group.add_argument("--list-separator", default="|", help=more("splits a --multi-categorical cell"))
    group.add_argument("--dense-numeric", default="",
                       help=more("comma-separated numeric columns fed as values, not bucketised (ak.DenseNumeric)"))
    group.add_argument("--dense-normalization", default="standard", choices=["standard", "log", "none"],
                       help=more("for --dense-numeric columns: standard (training mean and sd), log or none"))


_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# What TensorFlow logs at start-up on a machine without a GPU.
_NO_GPU_NOISE = ("cuInit", "cuda", "CUDA", "cuDNN", "cuFFT", "cuBLAS", "TF-TRT")


def _import_tensorflow_quietly():
    """Import TensorFlow and let it find its devices with file descriptor 2
    captured, then replay only the lines the log level admits.

    TensorFlow logs its start-up lines (oneDNN, CPU features, no CUDA
    driver) through absl before absl's logging is initialised, and those
    ignore TF_CPP_MIN_LOG_LEVEL; the failed cuInit of a CPU-only machine
    comes at the first device query. With the level unset we show errors
    and above, less that CUDA noise when no GPU is found; a level the user
    set is applied as they set it.
    """
    if "tensorflow" in sys.modules:
        return
    level = int(_USER_LOG_LEVEL) if (_USER_LOG_LEVEL or "").isdigit() else 2
    sys.stderr.flush()
    saved = os.dup(2)
    gpus = []
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            sys.stderr.write(_admitted_log_lines(text, level, drop_cuda=_USER_LOG_LEVEL is None and not gpus))


def _admitted_log_lines(text, level, drop_cuda):
    """The lines of captured start-up output to show (a log record's
    continuation lines go with it; other output is kept)."""
    keep, dropping = [], False
    for line in text.splitlines(keepends=True):
        record = re.match(r"([IWEF])\d{4} ", line)
        if record:
            dropping = _SEVERITY[record[1]] < level or (drop_cuda and any(w in line for w in _NO_GPU_NOISE))
        elif line.startswith("WARNING: All log messages before absl::InitializeLog()"):
            continue
        if not dropping:
            keep.append(line)
    return "".join(keep)


def _user_error(e):
    """The one line to show for an error in the user's input, else None."""
    if isinstance(e, UnicodeDecodeError) and isinstance(e.object, bytes) and b"{{function_node" in e.object:
        # TensorFlow's Python runtime cannot decode its own error message when
        # it quotes input bytes that are not UTF-8 (an unparsable tf.Example).
        text = e.object.decode("utf-8", "replace")
        text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[\[.*|\s*\[Op:.*", "", text, flags=re.S).strip()
        return "TensorFlow refused an input record: " + (text.splitlines() or ["(no message)"])[0][:300]
    if isinstance(e, (ValueError, FileNotFoundError, ImportError, MemoryError, KeyError)):
        text = str(e).strip()
        return text.splitlines()[0] if text else type(e).__name__
    if type(e).__module__.startswith("tensorflow"):
        # A reader's ValueError raised inside the tf.data pipeline (a bad row
        # met while training, with --strict) comes wrapped in TF's error.
        found = re.findall(r"ValueError: (.+)", str(e))
        if found:
            return found[-1].strip()
    return None


if __name__ == "__main__":
    sys.exit(main())
