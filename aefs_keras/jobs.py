"""The `aefs-keras train`, `preprocess` and `export` jobs (cli.py parses
their arguments)."""

from __future__ import annotations

import os
import sys
import time



def _selection_options(args):
    """The selection options given on the command line (each passed on only
    when given, so that one the chosen method does not take is an error
    naming it); the list is the selection classes' own."""
    from aefs_keras.selection import OPTION_HELP

    return {name: getattr(args, name) for name in OPTION_HELP if getattr(args, name, None) is not None}

# Selections whose fields are ranked by a model without selection before they are built.
RANKED_FIRST = {"static": "static", "mixed_dimension": "mixed_dimension", "mixed": "aefs"}


def _check_own_files(args, numeric_columns):
    """Own-file mode: every path and column checked before TensorFlow starts."""
    from aefs_keras.datasets.infer import check_last_lines, infer_format

    paths = list(args.train) + list(args.valid or []) + list(args.test or [])
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path}")
    check_last_lines(paths, strict=args.strict)  # a cut-off file is named as such, first
    fmt, why = infer_format(args.train[0], label=args.label, columns=args.columns, ignore=args.ignore,
                            categorical=args.categorical, numeric=numeric_columns,
                            delimiter=args.delimiter, multi_categorical=args.multi_categorical,
                            dense_numeric=args.dense_numeric, list_separator=args.list_separator,
                            strict=args.strict,
                            time_column=args.time_column if getattr(args, "split_mode", None) == "time" else None)
    return fmt, why


def _split_mode(args, fmt):
    """--split-mode as the readers take it ("time:COLUMN" for time)."""
    if args.split_mode != "time":
        if args.time_column:
            raise ValueError(f"--time-column applies to --split-mode time. Received: --split-mode {args.split_mode}")
        return args.split_mode
    if not args.time_column:
        raise ValueError("--split-mode time needs --time-column COLUMN")
    if isinstance(fmt, str):
        from aefs_keras.datasets.formats import FORMATS

        fmt = FORMATS.get(fmt)
    names = getattr(fmt, "names", None)
    if names is not None and args.time_column not in names:
        raise ValueError(f"--time-column: column {args.time_column!r} is not in the files' columns "
                         f"({', '.join(names)})")
    return f"time:{args.time_column}"


def _split(args):
    if args.valid or args.test:
        if args.split:
            raise ValueError("--split applies to one --train file without --valid/--test")
        return None
    spec = args.split or "0.8,0.1,0.1"
    try:
        parts = [float(v) for v in spec.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6 or parts[0] <= 0:
        raise ValueError(f"--split must be three fractions train,valid,test summing to 1, e.g. 0.8,0.1,0.1. "
                         f"Received: --split {spec}")
    return parts


def load_data(args, distributed=True):
    """The data of `train` and `compare`: synthetic or benchmark data, files
    of a known format, or the user's own CSV/TSV/Parquet with a header ->
    (the package, the distribution strategy or None, a `CTRData` with
    validation and test rows)."""
    own = bool(args.train) and not args.format
    if own:
        fmt, why = _check_own_files(args, args.numeric)  # before TensorFlow: errors come at once
        _split_mode(args, fmt)
    import aefs_keras as ak

    # First, before any other TensorFlow op (multi-worker collectives).
    strategy = ak.distributed.get_strategy(getattr(args, "strategy", None)) if distributed else None
    if own:
        print(f"Columns of {args.train[0]} (label {args.label!r}):")
        for name, kind in fmt.features:
            print(f"  {name:<24} {kind:<12} ({why[name]})")
        for name in [n for n in why if n not in dict(fmt.features)]:
            print(f"  {name:<24} {'-':<12} ({why[name]})")
        scanned = why.bad_rows
        if scanned is not None and scanned.bad_rows:
            print(scanned)  # once, before training, by cause and column
        data = _file_data(ak, args, fmt, _split(args), scanned=scanned)
    elif args.format:
        data = _file_data(ak, args, args.format, _split(args))
    elif args.data == "synthetic":
        data = ak.datasets.synthetic(num_rows=args.rows, seed=args.seed, batch_size=args.batch_size,
                                     categorical_dtype="string")
    else:
        data = ak.datasets.load_benchmark(args.data, args.data_dir, batch_size=args.batch_size, seed=args.seed)
    if data.valid is None or data.test is None:
        raise ValueError("held-out rows are needed for early stopping and the test figures: give --valid "
                         "(and --test) files, or one --train file to --split")
    return ak, strategy, data


def train(args) -> int:
    """`aefs-keras train`: synthetic or benchmark data, files of a known
    format, or the user's own CSV/TSV with a header."""
    ak, strategy, data = load_data(args)
    import keras
    import numpy as np

    if args.selection == "none":
        args.selection = None
    options = _selection_options(args)
    if args.keep_share is not None and not 0.0 <= args.keep_share < 1.0:
        raise ValueError(f"--keep-share must be in [0, 1). Received: --keep-share {args.keep_share}")
    kind = RANKED_FIRST.get(args.selection, args.selection)
    selection = ak.selection.as_selection(kind, options)  # errors before any table exists
    if kind in ("aefs", "adafs"):
        print(f"Note: --selection {args.selection} trains and serves slower than no selection on CPU, and "
              "--selection mixed_dimension was as accurate as the best AEFS form, and faster, on every pair "
              "we measured (README, 'Which method?'); `aefs-keras compare` measures them on your data.")
    if args.selection in RANKED_FIRST and "fields" not in options:
        drops = _rank_fields(ak, args, data, strategy)
        selection = ak.selection.as_selection(kind, {**options, "importance": drops})
        names = data.schema.names
        if kind == "aefs":
            k = selection.resolve_k(len(names))
            fixed = ak.importance.most_important(drops, int(round(selection.keep_share * k)))
            print("Kept on every row: " + ", ".join(names[i] for i in fixed))
        else:
            what = "Fields kept" if kind == "static" else f"Fields at width {args.d_main} (the others at {selection.d_small})"
            print(f"{what}: " + ", ".join(names[i] for i in selection.wide_fields(names)))
    static = isinstance(selection, ak.MixedDimension)  # its tables are narrower: plan them as built
    print(ak.memory_plan(data.schema, args.d_main, getattr(selection, "d_aux", 4),
                         None if static else selection and selection.kind,
                         getattr(ak.BACKBONES[args.backbone], "uses_linear", False), args.optimizer,
                         field_dims=selection.field_dims(data.schema.names, args.d_main, data.schema.field_dims)
                         if static else None))

    def build():
        keras.utils.set_random_seed(args.seed)
        model = ak.build_model(data.schema, args.backbone, selection, d_main=args.d_main,
                               hidden_units=args.hidden_units, name=args.name, memory_check=args.optimizer)
        if args.optimizer == "adam":
            optimizer = keras.optimizers.Adam(args.learning_rate)
        else:  # row-wise Adagrad's step size is per row: 50x Adam's, as in benchmarks/scale.py
            optimizer = ak.optimizers.SparseAdam(
                args.learning_rate, embedding_rule=args.optimizer,
                embedding_learning_rate=50 * args.learning_rate if args.optimizer == "rowwise_adagrad" else None)
        return ak.default_compile(model, optimizer=optimizer)

    save_freq = int(args.save_freq) if str(args.save_freq).isdigit() else args.save_freq
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=args.patience,
                                         restore_best_weights=True)
    model, history = ak.distributed.fit(build, data.train, args.epochs, strategy=strategy,
                                        backup_dir=args.backup_dir, save_freq=save_freq,
                                        validation_data=data.valid, callbacks=[stop],
                                        # A progress bar with rate and ETA on a terminal; one
                                        # line per epoch in a log file.
                                        verbose=1 if sys.stdout.isatty() else 2)
    best = int(max(range(len(history.history["val_auc"])), key=history.history["val_auc"].__getitem__))
    print(f"Best epoch by validation AUC: {best + 1} of {len(history.history['val_auc'])} "
          "(its weights are kept)")
    from aefs_keras.progress import RateLine

    labels, probs = [], []
    line = RateLine("evaluate")
    for x, y in data.test:
        probs.append(keras.ops.convert_to_numpy(model.predict_on_batch(x)).ravel())
        labels.append(keras.ops.convert_to_numpy(y).ravel())
        line.update(line.count + len(labels[-1]))
    labels, probs = np.concatenate(labels), np.concatenate(probs)
    line.done(f"{len(labels):,} test rows in {line.seconds:.1f} s")
    _report_unscanned_skips(data)
    print(f"test AUC {ak.metrics.auc_score(labels, probs):.4f}  log-loss {ak.metrics.log_loss(labels, probs):.4f}"
          f"  ({len(labels):,} rows; exact)  embedding values read per example "
          f"{model.activated_embedding_parameters()}")
    if ak.serving.selector_of(model) is not None:
        shares = ak.selection_frequency(model, data.test)
        order = sorted(range(len(shares)), key=lambda i: -shares[i])
        names = data.schema.names
        print(f"Share of test rows that kept each field (k = {ak.serving.selector_of(model).k} of {len(names)}):")
        print("  " + ", ".join(f"{names[i]} {shares[i]:.2f}" for i in order))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.name}.keras")
    model.save(path)
    print(f"Saved {path}")
    if args.export:
        _export(ak, model, args.export, args.name, overwrite=False)
    return 0


def _rank_fields(ak, args, data, strategy):
    """Each field's permutation importance (validation AUC lost by
    shuffling it) for a model without selection trained
    `--importance-epochs` epochs, on the first `--importance-rows`
    validation rows: the static baseline's ranking (docs/aefs.md, "Mixed
    resolution")."""
    import keras
    import numpy as np

    if args.importance_epochs < 1 or args.importance_rows < 100:
        raise ValueError("--importance-epochs must be at least 1 and --importance-rows at least 100. Received: "
                         f"--importance-epochs {args.importance_epochs} --importance-rows {args.importance_rows}")

    def build_plain():
        keras.utils.set_random_seed(args.seed)
        return ak.default_compile(ak.build_model(data.schema, args.backbone, None, d_main=args.d_main,
                                                 hidden_units=args.hidden_units, memory_check=args.optimizer),
                                  learning_rate=args.learning_rate)

    lists = [f.name for f in data.schema.fields if isinstance(f, ak.MultiCategorical)]
    if lists:
        raise ValueError(f"--selection {args.selection} ranks fields by shuffling their columns, which list "
                         f"fields cannot be yet. Received list fields: {', '.join(lists)}")
    print(f"Ranking the fields: a model without selection, {args.importance_epochs} epoch(s)")
    plain, _ = ak.distributed.fit(build_plain, data.train, args.importance_epochs, strategy=strategy,
                                  verbose=1 if sys.stdout.isatty() else 2)
    from aefs_keras.callbacks import labelled_rows

    x, y = labelled_rows(data.valid_arrays if data.valid_arrays is not None else data.valid, args.importance_rows)
    x = {name: x[name] for name in data.schema.names}  # schema order
    if len(np.unique(y)) < 2:
        raise ValueError(f"the first {len(y):,} validation rows have one label only; permutation importance "
                         "needs both: give more --importance-rows")

    drops = ak.importance.permutation_importance(plain, x, y, seed=args.seed)
    order = np.argsort(-drops, kind="stable")
    print("Validation AUC lost by shuffling each field: " +
          ", ".join(f"{data.schema.names[i]} {drops[i]:+.4f}" for i in order))
    return [float(v) for v in drops]


def _report_unscanned_skips(data):
    """The readers' skip reports, unless the scan before training already
    gave them: a file read in parts (train, valid, test) reports each bad row
    in every part, which would read as three times the rows."""
    known = getattr(data, "scanned_bad_rows", None)
    for report in data.reports:
        if report.total_skipped and (known is None or report.total_skipped > known):
            print(report)


def _file_data(ak, args, fmt, split, scanned=None):
    """Train / valid / test pipelines from files, mapped by one artifact
    fitted on the training rows only (reused when `--artifact` exists).
    `scanned`: the `BadRowScan` of the first training file, already shown."""
    if not args.train:
        raise ValueError("--format needs --train PATH [PATH ...]")
    parts = {}
    if split is not None:
        cut1, cut2 = split[0], split[0] + split[1]
        parts = {"train": (0.0, cut1), "valid": (cut1, cut2), "test": (cut2, 1.0)}
    read_split = dict(split_mode=_split_mode(args, fmt), split_seed=args.seed)
    if args.artifact and os.path.exists(args.artifact):
        pp = ak.datasets.Preprocessing.load(args.artifact)
        print(f"Using the preprocessing artifact {args.artifact} ({pp.rows:,} rows fitted)")
    else:
        pp = ak.datasets.fit_preprocessing(fmt, args.train, min_count=args.min_count, strict=args.strict,
                                           split=parts.get("train"), max_vocab=args.max_vocab,
                                           oov_buckets=args.oov_buckets, count_budget=args.count_budget,
                                           dense_normalization=args.dense_normalization, **read_split)
        if args.artifact:
            pp.save(args.artifact)
    # Already reported, by column, when the whole (one) training file was scanned.
    reported = scanned is not None and scanned.complete and len(args.train) == 1
    if pp.skipped and not reported:  # before any training: the user may want to stop here
        print(f"Preprocessing skipped {pp.skipped:,} bad rows of the training part (--strict makes the first "
              "one an error)")
    reports = []

    def read(paths, part=None, shuffle=False):
        if not paths:
            return None
        extra = dict(split=parts[part], **read_split) if part else {}
        # lists_as_text: Parquet integer lists as the artifact counted them.
        ds, report = ak.datasets.load(pp.format, paths, batch_size=args.batch_size, shuffle=shuffle,
                                      seed=args.seed, strict=args.strict, lists_as_text=True, **extra)
        reports.append(report)
        return ds

    if split is not None:
        train, valid, test = (read(args.train, "train", shuffle=True), read(args.train, "valid"),
                              read(args.train, "test"))
    else:
        train, valid, test = read(args.train, shuffle=True), read(args.valid), read(args.test or args.valid)
    data = ak.datasets.CTRData("files", pp.schema, train=train, valid=valid, test=test,
                               batch_size=args.batch_size, reports=reports)
    data.scanned_bad_rows = scanned.bad_rows if reported else None
    return data


def preprocess(args) -> int:
    """`aefs-keras preprocess`: a known format and its files, or the user's
    own CSV/TSV with a header."""
    from aefs_keras.datasets.formats import FORMATS

    fmt, paths = None, list(args.inputs)
    if paths[0] in FORMATS and not os.path.isfile(paths[0]):
        fmt, paths = paths[0], paths[1:]
        if not paths:
            raise ValueError(f"preprocess {fmt}: give the files to read")
    else:
        args.train, args.valid, args.test = paths, None, None
        fmt, why = _check_own_files(args, args.numeric_columns)  # --numeric is the bucketing here
        print(f"Columns of {paths[0]}: " + ", ".join(f"{n} {k}" for n, k in fmt.features))
    import aefs_keras as ak

    pp = ak.datasets.fit_preprocessing(fmt, paths, min_count=args.min_count, numeric=args.numeric,
                                       hash_above=args.hash_above, strict=args.strict, engine=args.engine,
                                       max_vocab=args.max_vocab, oov_buckets=args.oov_buckets,
                                       count_budget=args.count_budget,
                                       dense_normalization=args.dense_normalization)
    pp.save(args.out)
    sizes = pp.schema.field_sizes
    print(f"Wrote {args.out}: {len(sizes)} fields, {sum(sizes):,} ids in all, from {pp.rows:,} rows "
          f"({pp.skipped} bad rows skipped)")
    return 0


def synth(args) -> int:
    """`aefs-keras synth`: a Criteo-shaped file with a planted label."""
    from aefs_keras.datasets.criteo_like import write_criteo_like

    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    summary = write_criteo_like(args.out, args.rows, seed=args.seed, max_values=args.max_values,
                                header=args.header)
    print(f"Wrote {args.out}: {summary['rows']:,} rows, click rate {summary['click_rate']:.3f}, "
          f"{summary['bytes'] / 1e6:,.1f} MB in {summary['seconds']:.1f} s")
    return 0


def export(args) -> int:
    """`aefs-keras export`."""
    import aefs_keras as ak

    start = time.perf_counter()
    print(f"Loading {args.model} ...", flush=True)
    model = ak.load_model(args.model)
    print(f"Loaded in {time.perf_counter() - start:.1f} s", flush=True)
    _export(ak, model, args.base_dir, args.name, version=args.version, overwrite=args.overwrite,
            example_signature=False if args.no_example_signature else None,
            specialize=not getattr(args, "keras_graph", False))
    return 0


def _export(ak, model, base_dir, name, **options):
    """Export with a line before (it takes a while with big tables: the
    lookups are traced and every table is written) and one after."""
    from aefs_keras.mixed_serving import why_not_specialised
    from aefs_keras.serving import selector_of

    start = time.perf_counter()
    print(f"Exporting {name} to {base_dir} (tracing the signatures, writing the tables) ...", flush=True)
    if selector_of(model) is not None:
        why = why_not_specialised(model) if options.get("specialize", True) else "--keras-graph"
        print("Served graph: " + (f"the model's own ({why})" if why else
                                  "specialised for AEFS at mixed resolution (docs/serving.md)"), flush=True)
    path = ak.export(model, base_dir, name, **options)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    print(f"Exported to {path} in {time.perf_counter() - start:.1f} s ({size / 1e6:,.1f} MB)", flush=True)
    return path
