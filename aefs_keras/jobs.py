"""The `aefs-keras train`, `preprocess` and `export` jobs (cli.py parses
their arguments)."""

from __future__ import annotations

import os


def train(args) -> int:
    """`aefs-keras train`."""
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
                         uses_linear=getattr(ak.BACKBONES[args.backbone], "uses_linear", False)))

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
    for report in data.reports:
        print(report)
    print(f"test AUC {result['auc']:.4f}  logloss {result['logloss']:.4f}  "
          f"activated embedding parameters/example {model.activated_embedding_parameters()}")
    if args.export:
        path = ak.export(model, args.export, args.name, overwrite=False)
        print(f"Exported to {path}")
    return 0


def _file_data(ak, args):
    """Train / valid / test pipelines from files, mapped by one artifact."""
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

    return ak.datasets.CTRData("files", pp.schema, train=read(args.train, shuffle=True),
                               valid=read(args.valid), test=read(args.test or args.valid),
                               batch_size=args.batch_size, reports=reports)


def preprocess(args) -> int:
    """`aefs-keras preprocess`."""
    import aefs_keras as ak

    pp = ak.datasets.fit_preprocessing(args.format, args.paths, min_count=args.min_count,
                                       numeric=args.numeric, hash_above=args.hash_above,
                                       strict=args.strict, engine=args.engine)
    pp.save(args.out)
    sizes = pp.schema.field_sizes
    print(f"Wrote {args.out}: {len(sizes)} fields, {sum(sizes):,} ids in all, from {pp.rows:,} rows "
          f"({pp.skipped} bad rows skipped)")
    return 0


def export(args) -> int:
    """`aefs-keras export`."""
    import keras

    import aefs_keras as ak

    model = keras.models.load_model(args.model)
    path = ak.export(model, args.base_dir, args.name, version=args.version,
                     overwrite=args.overwrite, example_signature=False if args.no_example_signature else None)
    print(f"Exported {args.model} to {path}")
    return 0
