"""Scale: step time against table size, and AEFS against no selection at a
lookup-bound size.

    python benchmarks/scale.py steps --out benchmarks/results/scale_steps.json
    python benchmarks/scale.py aefs  --out benchmarks/results/scale_aefs.json
    python benchmarks/scale.py profile --out benchmarks/results/scale_profile.json

`steps`: DeepFM (39 fields, width 32, MLP 400-400-400, batch 4096, Zipf ids)
with one embedding table of 10^4 .. 10^7 rows in all; median step time of
`model.fit` over timed steps (after warm-up) for Keras' Adam and for
SparseAdam (lazy Adam, row-wise Adagrad).

`aefs`: a backbone (`--backbones`, default DeepFM) without selection and
with AEFS (k = 19 of 39; `--selection mixed`: `ResearchAEFS.mixed_resolution`),
the same d_main, 39 fields x `--rows-per-field` rows, SparseAdam row-wise
Adagrad for the tables, MLP 400-400-400. Both
models live in one process: `--rounds` interleaved rounds of training
(median step of batch 4096), then both are exported with `aefs_keras.serving.export`
and their `serving_default` signatures timed in interleaved rounds (batch
512). Each round gives one AEFS / none ratio; the mean and sd over rounds
are reported.
`serving`: both models (one pass of training each) exported, then their
`serving_default` timed at each `--serve-batches` size in `--rounds`
interleaved rounds (median of 30 calls per round); each round gives one
AEFS / none ratio. Also the op count of each exported signature (its graph
and the functions it calls). `--serve-plain` (aefs, serving): AEFS is also
exported with `specialize=False` (the Keras model's own graph, which the
specialised one of `aefs_keras.mixed_serving` replaces) and timed beside as
`aefs_plain`; with `serving`, also op time by op type at batch 512.
`profile`: op time by model stage (forward, backward, optimizer) of one
training step and of one serving call of the exported model, from TF
profiler traces, with the wall time of each.
`--hidden-units 64 32 --batch 1024` times `aefs` and `profile` at the
size of the accuracy grid (benchmarks/configs/results.yaml).
`--dense-first-layer` (aefs, profile): the first MLP layer never split
(the split's work thresholds beyond any layer, so no split branch is
built; the `scale_aefs_grid_size_ab_*_dense.json` runs built it and never
took it), the layer as before `ops.kept_fields_matmul`, for before / after
runs of the same code.
Every configuration runs in its own child process, one after the other,
so that one's memory cannot slow the next.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

F = 39


def _zipf_ids(rng, n, vocab, a=1.1):
    import numpy as np

    ranks = rng.zipf(a, size=n)
    ranks = ranks[ranks <= vocab]
    while len(ranks) < n:
        more = rng.zipf(a, size=n)
        ranks = np.concatenate([ranks, more[more <= vocab]])
    perm = rng.permutation(vocab)  # hot ids spread over the table
    return perm[ranks[:n] - 1].astype("int64")


def _data(rows_per_field, batch, n_batches, seed=0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n = batch * n_batches
    x = {f"C{i}": _zipf_ids(rng, n, rows_per_field) for i in range(F)}
    y = (rng.random(n) < 0.2).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    return x, y, ds


class _Timer:
    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def on_train_batch_begin(s, batch, logs=None):
                s.t = time.perf_counter()

            def on_train_batch_end(s, batch, logs=None):
                s.times.append(time.perf_counter() - s.t)

        self.cb = T()
        self.cb.times = []


def _model(rows_per_field, selection, d_main, optimizer, hidden, backbone="deepfm", k_ratio=0.5):
    import keras

    import aefs_keras as ak
    from aefs_keras.optimizers import SparseAdam

    schema = ak.Schema([ak.Categorical(f"C{i}", vocabulary_size=rows_per_field - 1) for i in range(F)])
    keras.utils.set_random_seed(0)
    kw = {"k_ratio": k_ratio} if selection else {}
    if selection in ("static", "mixed_dimension"):  # which fields are wide does not change the cost
        kw["importance"] = list(range(F, 0, -1))
    if selection == "aefs_single":  # AEFS in the paper's form (the default before mixed resolution)
        selection, kw["resolution"] = "aefs", "single"
    if selection in ("mixed", "mixed_no_alignment"):  # which fields are fixed does not change the cost
        off = {"embedding_alignment": 0.0, "prediction_alignment": 0.0} if selection == "mixed_no_alignment" else {}
        selection, kw = ak.experimental.ResearchAEFS.mixed_resolution(list(range(F, 0, -1)), k_ratio=0.5, **off), {}
    mem = {"adam": "adam", "lazy_adam": "lazy_adam", "rowwise_adagrad": "rowwise_adagrad"}[optimizer]
    model = ak.build_model(schema, backbone, selection, d_main=d_main, hidden_units=hidden,
                           memory_check=mem, **kw)
    opt = keras.optimizers.Adam(1e-3) if optimizer == "adam" else SparseAdam(
        1e-3, embedding_rule=optimizer, embedding_learning_rate=0.05 if optimizer == "rowwise_adagrad" else None)
    # Plain steps, as docs/scale.md's tables were measured (XLA: benchmarks/xla_training.py).
    return ak.default_compile(model, optimizer=opt, jit_compile=False)


def run_steps(cfg):
    """One (table rows, optimizer): median step time."""
    rows_per_field = max(2, cfg["table_rows"] // F)
    _, _, ds = _data(rows_per_field, cfg["batch"], 8)
    model = _model(rows_per_field, None, 32, cfg["optimizer"], [400, 400, 400])
    model.fit(ds, epochs=1, verbose=0)  # trace, warm up
    timer = _Timer()
    model.fit(ds.repeat(cfg["epochs"]), epochs=1, verbose=0, callbacks=[timer.cb])
    ts = timer.cb.times
    return {**cfg, "table_rows_actual": rows_per_field * F, "step_ms_median": 1e3 * statistics.median(ts),
            "step_ms_p90": 1e3 * sorted(ts)[int(0.9 * (len(ts) - 1))], "steps": len(ts)}


def _median_step(model, ds, epochs):
    timer = _Timer()
    model.fit(ds.repeat(epochs), epochs=1, verbose=0, callbacks=[timer.cb])
    return statistics.median(timer.cb.times)


def _serving_time(fn, xb, calls):
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(**xb)["probability"].numpy()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run_aefs(cfg):
    """No selection and AEFS side by side in one process: training rounds
    interleaved, then both exported to `cfg["export_dir"]` for `run_serve`
    (its own process: a loaded copy of two big tables beside the trained
    ones would not fit in memory). Each round gives one AEFS / none ratio."""
    import aefs_keras as ak

    _, _, ds = _data(cfg["rows_per_field"], cfg["batch"], 4)
    names = _names(cfg)
    models = {n: _model(cfg["rows_per_field"], None if n == "none" else n, cfg["d_main"],
                        "rowwise_adagrad", cfg["hidden_units"], cfg["backbone"], cfg.get("k_ratio", 0.5))
              for n in names}
    activated = {n: m.activated_embedding_parameters() for n, m in models.items()}
    for m in models.values():
        m.fit(ds, epochs=1, verbose=0)  # trace and warm up
    train = {n: [] for n in names}
    for r in range(cfg["rounds"]):
        for n in (names if r % 2 == 0 else names[::-1]):
            train[n].append(cfg["batch"] / _median_step(models[n], ds, cfg["epochs"]))
    paths = {n: ak.export(m, cfg["export_dir"], n) for n, m in models.items()}
    if cfg.get("serve_plain"):  # the same models' own Keras graphs, served beside
        from aefs_keras.mixed_serving import why_not_specialised

        for n in names[1:]:
            if not why_not_specialised(models[n]):  # specialised: also time the graph it replaces
                paths[f"{n}_plain"] = ak.export(models[n], cfg["export_dir"], f"{n}_plain", specialize=False)
    return {**cfg, "train_examples_per_s": {n: _summary(v) for n, v in train.items()},
            **_ratios("train", train, names), "embedding_values_read_per_example": activated, "paths": paths}


def _names(cfg):
    """"none" and the selections compared with it (`cfg["selections"]`, or
    the one `cfg["selection"]` of older configs)."""
    return ("none", *cfg.get("selections", [cfg.get("selection", "aefs")]))


def _ratios(what, values, names):
    """Per round, each selection's examples/s over no selection's: the
    first selection's as `{what}_ratio` (the older single-pair field), all
    of them as `{what}_ratios`."""
    ratios = {n: _summary([a / b for a, b in zip(values[n], values["none"])]) for n in names[1:]}
    return {f"{what}_ratio": ratios[names[1]], f"{what}_ratios": ratios}


def run_serve(cfg):
    """The exported models' `serving_default`, timed in interleaved rounds."""
    import tensorflow as tf

    x, _, _ = _data(cfg["rows_per_field"], cfg["serve_batch"], 1)
    names = (*_names(cfg), *[n for n in cfg["paths"] if n.endswith("_plain")])
    served = {n: tf.saved_model.load(cfg["paths"][n]).signatures["serving_default"] for n in names}
    xb = {k: tf.constant(v) for k, v in x.items()}
    for fn in served.values():
        _serving_time(fn, xb, 5)
    serve = {n: [] for n in names}
    for r in range(cfg["rounds"]):
        for n in (names if r % 2 == 0 else names[::-1]):
            serve[n].append(cfg["serve_batch"] / _serving_time(served[n], xb, cfg["serve_calls"]))
    return {"serve_examples_per_s": {n: _summary(v) for n, v in serve.items()}, **_ratios("serve", serve, names)}


def run_export(cfg):
    """No selection and AEFS, one pass of training each, exported to
    `cfg["export_dir"]` for `run_serve_batches`."""
    import aefs_keras as ak

    _, _, ds = _data(cfg["rows_per_field"], 4096, 2)
    paths = {}
    for n in ("none", "aefs"):
        model = _model(cfg["rows_per_field"], None if n == "none" else cfg["selection"], cfg["d_main"],
                       "rowwise_adagrad", [400, 400, 400], cfg["backbone"])
        model.fit(ds, epochs=1, verbose=0)
        paths[n] = ak.export(model, cfg["export_dir"], n)
        if n == "aefs" and cfg.get("serve_plain"):
            paths["aefs_plain"] = ak.export(model, cfg["export_dir"], "aefs_plain", specialize=False)
        del model
    return {"paths": paths}


def _op_ms_by_type(fn, xb, calls=20):
    """Op time per call (ms) by op type from a TF profiler trace of `calls`
    calls (ops that use both cores count once per core)."""
    import collections
    import shutil
    import tempfile

    import tensorflow as tf

    tmp = tempfile.mkdtemp(prefix="scale_ops_")
    try:
        tf.profiler.experimental.start(tmp)
        for _ in range(calls):
            fn(**xb)["probability"].numpy()
        tf.profiler.experimental.stop()
        by_type, count = collections.Counter(), 0
        for name, ms in _op_events(tmp, calls):
            by_type[name.rsplit(":", 1)[-1]] += ms
            count += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"op_ms": round(sum(by_type.values()), 3), "ops_run_per_call": count / calls,
            "op_ms_by_type": {k: round(v, 3) for k, v in by_type.most_common(12)}}


def run_serve_batches(cfg):
    """The exported models' `serving_default` at each batch size of
    `cfg["serve_batches"]`, in interleaved rounds: ms per call and the
    AEFS / none ratio of examples/s per round."""
    import tensorflow as tf

    x, _, _ = _data(cfg["rows_per_field"], max(cfg["serve_batches"]), 1)
    names = tuple(cfg["paths"])  # none, aefs (and aefs_plain: the graph the specialised one replaces)
    served = {n: tf.saved_model.load(cfg["paths"][n]).signatures["serving_default"] for n in names}
    graphs = {n: fn.graph.as_graph_def() for n, fn in served.items()}
    ops = {n: len(g.node) + sum(len(f.node_def) for f in g.library.function) for n, g in graphs.items()}
    out = []
    for b in cfg["serve_batches"]:
        xb = {k: tf.constant(v[:b]) for k, v in x.items()}
        for fn in served.values():
            _serving_time(fn, xb, 5)
        ms = {n: [] for n in names}
        for r in range(cfg["rounds"]):
            for n in (names if r % 2 == 0 else names[::-1]):
                ms[n].append(1e3 * _serving_time(served[n], xb, cfg["serve_calls"]))
        out.append({"serve_batch": b, "serve_call_ms": {n: _summary(v) for n, v in ms.items()},
                    "serve_ratio": _summary([c / a for a, c in zip(ms["aefs"], ms["none"])]),
                    **({"serve_ratio_plain": _summary([c / a for a, c in zip(ms["aefs_plain"], ms["none"])])}
                       if "aefs_plain" in ms else {})})
    profile = {}
    if cfg.get("profile_batch"):
        xb = {k: tf.constant(v[:cfg["profile_batch"]]) for k, v in x.items()}
        profile = {"op_profile_batch": cfg["profile_batch"],
                   "op_profile": {n: _op_ms_by_type(fn, xb) for n, fn in served.items()}}
    return {"ops_in_graph": ops, "by_batch": out, **profile}


def write_json(result, path):
    """Print `result` and, with a path, write it there (folders created)."""
    print(json.dumps(result, indent=1))
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def interleaved_ms(fns, rounds, calls, *args):
    """Milliseconds per call of each function in `fns` (name -> function of
    `args`): per round the median of `calls` calls after 3 warm-up calls,
    the order reversed every other round. Returns name -> list per round."""
    import statistics
    import time

    import tensorflow as tf

    def median_ms(fn):
        for _ in range(3):
            fn(*args)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            tf.nest.map_structure(lambda v: v.numpy(), fn(*args))
            times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times)

    ms = {name: [] for name in fns}
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            ms[name].append(median_ms(fns[name]))
    return ms


def _summary(values):
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _exported_pair(train_kind, serve_kind, cfg):
    """`train_kind` in one child (it exports both models to a temporary
    folder), then `serve_kind` on the exports in another."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="scale_export_")
    try:
        res = _child(train_kind, {**cfg, "export_dir": tmp})
        if "error" not in res:
            res.update(_child(serve_kind, {**cfg, "paths": res.pop("paths")}))
        return {**cfg, **res}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _op_time_by_stage(logdir, calls):
    """Op time per call (ms) from a TF profiler trace, summed by model stage:
    the first name scope under the model (its layer: selector, main_embedding,
    backbone/mlp, ...), split into forward and backward (`gradient_tape`),
    plus the optimizer. Ops that run on both cores at once count once per
    core, so the sum exceeds the wall time; compare stages, not totals."""
    import collections
    import re

    stages = collections.Counter()
    for name, ms in _op_events(logdir, calls):
        parts = [re.sub(r"_\d+$", "", p) for p in name.rpartition(":")[0].split("/")]
        backward = "gradient_tape" in parts
        parts = [p for p in parts if p not in ("StatefulPartitionedCall", "gradient_tape")
                 and not p.startswith(_MODEL_PREFIXES)]
        stage = parts[0] if parts else "other"
        if stage == "backbone" and len(parts) > 2:
            stage = "/".join(parts[:2])
        if stage in ("MatMul", "GatherV2", "ScatterNd", "concat", "stack", "split", "Reshape",
                     "BroadcastTo", "Sum", "AddN"):
            stage = "unscoped (custom gradients, graph rewrites)"
        if stage == "fields_matmul_grad":  # the grouped backward of the first MLP layer
            stage, backward = "backbone/mlp", True
        key = "optimizer" if stage.startswith("sparse_adam") else ("bwd " if backward else "fwd ") + stage
        stages[key] += ms
    return dict(stages.most_common())


def _op_events(logdir, calls):
    """(op name "scope/...:Type", ms per call) of every op a TF profiler
    trace in `logdir` ran on the host's compute threads."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    # The host plane by name: its position among the planes varies between traces.
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            if ":" not in name or name.startswith(("Threadpool", "Executor")):
                continue
            yield name, event.duration_ps / 1e9 / calls


_MODEL_PREFIXES = ("deepfm_", "dcn_", "dnn_", "wide_deep_", "mlcc_", "mc_mlcc_", "serving")


def run_profile(cfg):
    """Op time by stage of one training step (model.fit) and one serving call
    of the exported model, from TF profiler traces."""
    import shutil
    import tempfile

    import tensorflow as tf

    import aefs_keras as ak

    x, _, ds = _data(cfg["rows_per_field"], cfg["batch"], 4)
    model = _model(cfg["rows_per_field"], cfg["selection"], cfg["d_main"], "rowwise_adagrad",
                   cfg["hidden_units"], cfg.get("backbone", "deepfm"))
    model.fit(ds, epochs=1, verbose=0)
    tmp = tempfile.mkdtemp(prefix="scale_profile_")
    try:
        step_ms = _median_step(model, ds, 2) * 1e3
        tf.profiler.experimental.start(f"{tmp}/train")
        model.fit(ds, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        train = _op_time_by_stage(f"{tmp}/train", 4)
        served = tf.saved_model.load(ak.export(model, tmp, "m")).signatures["serving_default"]
        xb = {k: tf.constant(v[:cfg["serve_batch"]]) for k, v in x.items()}
        serve_ms = _serving_time(served, xb, 30) * 1e3
        tf.profiler.experimental.start(f"{tmp}/serve")
        for _ in range(20):
            served(**xb)["probability"].numpy()
        tf.profiler.experimental.stop()
        serve = _op_time_by_stage(f"{tmp}/serve", 20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**cfg, "train_step_ms": step_ms, "train_op_ms_by_stage": train,
            "serve_call_ms": serve_ms, "serve_op_ms_by_stage": serve}


def _child(kind, cfg):
    out = subprocess.run([sys.executable, __file__, "_child", kind, json.dumps(cfg)], capture_output=True,
                         text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        return {**cfg, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["steps", "aefs", "profile", "serving", "_child"])
    parser.add_argument("child_kind", nargs="?")
    parser.add_argument("child_cfg", nargs="?")
    parser.add_argument("--table-rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--optimizers", nargs="+", default=["adam", "lazy_adam", "rowwise_adagrad"])
    parser.add_argument("--rows-per-field", type=int, default=500_000,
                        help="ids per field (two 39 x 10^6-row tables side by side do not fit 24 GB)")
    parser.add_argument("--d-main", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--epochs", type=int, default=3, help="passes over the 8 (6) cached batches timed")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="aefs: interleaved timing rounds")
    parser.add_argument("--backbones", nargs="+", default=["deepfm"],
                        help="aefs: backbones to compare (deepfm dcn wide_deep mc_mlcc ...)")
    parser.add_argument("--selection", default=["aefs"], nargs="+",
                        choices=["aefs", "aefs_single", "mixed", "mixed_no_alignment", "static",
                                 "mixed_dimension"],
                        help="aefs: the selections timed beside no selection (profile, serving: the first): "
                             "AEFS as it is (mixed resolution, fields ranked in fit), AEFS in the paper's form "
                             "(resolution='single'), ResearchAEFS.mixed_resolution (with its alignment losses' "
                             "weights at 0), the static top-k, the static mixed-dimension model (width 4)")
    parser.add_argument("--k-ratio", type=float, default=0.5, help="aefs: k / F of every selection")
    parser.add_argument("--serve-batches", type=int, nargs="+", default=[64, 512, 4096],
                        help="serving: batch sizes timed")
    parser.add_argument("--hidden-units", type=int, nargs="+", default=[400, 400, 400],
                        help="aefs, profile: the backbone MLP")
    parser.add_argument("--batch", type=int, default=4096, help="aefs, profile: training batch size")
    parser.add_argument("--serve-plain", action="store_true",
                        help="aefs, serving: also serve each specialised selecting model's own Keras "
                             "graph (export(..., specialize=False)) as <name>_plain, side by side; "
                             "serving: and op time by op type at batch 512")
    parser.add_argument("--dense-first-layer", action="store_true",
                        help="aefs, profile: never split the first layer (ops.kept_fields_matmul), as before the split")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.what == "_child":
        cfg = json.loads(args.child_cfg)
        if cfg.get("dense_first_layer"):  # the first layer as before the split: never split
            from aefs_keras import ops

            ops.SPLIT_MIN_WORK = ops.SPLIT_MIN_WORK_TRAINING = 2 ** 62
        fn = {"steps": run_steps, "aefs": run_aefs, "serve": run_serve, "profile": run_profile,
              "export": run_export, "serve_batches": run_serve_batches}[args.child_kind]
        print(json.dumps(fn(cfg)))
        return
    results = []
    for r in range(args.repeats):
        if args.what == "steps":
            for rows in args.table_rows:
                for opt in args.optimizers:
                    res = _child("steps", {"table_rows": rows, "optimizer": opt, "batch": 4096,
                                           "epochs": args.epochs, "repeat": r})
                    results.append(res)
                    print(json.dumps(res), flush=True)
        elif args.what == "aefs":
            for backbone in args.backbones:
                for d in args.d_main:
                    res = _exported_pair("aefs", "serve", {
                        "rows_per_field": args.rows_per_field, "d_main": d, "selections": args.selection,
                        "k_ratio": args.k_ratio,
                        "backbone": backbone, "batch": args.batch, "hidden_units": args.hidden_units,
                        "serve_batch": 512, "serve_calls": 40, "serve_plain": args.serve_plain,
                        "epochs": args.epochs, "rounds": args.rounds, "repeat": r,
                        "dense_first_layer": args.dense_first_layer})
                    results.append(res)
                    print(json.dumps(res), flush=True)
        elif args.what == "serving":
            for d in args.d_main:
                res = _exported_pair("export", "serve_batches", {
                    "rows_per_field": args.rows_per_field, "d_main": d, "selection": args.selection[0],
                    "backbone": args.backbones[0], "serve_batches": args.serve_batches, "serve_calls": 30,
                    "serve_plain": args.serve_plain, "profile_batch": 512 if args.serve_plain else None,
                    "rounds": args.rounds, "repeat": r})
                results.append(res)
                print(json.dumps(res), flush=True)
        else:
            for d in args.d_main:
                for selection in (None, args.selection[0]):
                    res = _child(args.what, {"rows_per_field": args.rows_per_field, "d_main": d,
                                          "selection": selection, "batch": args.batch,
                                          "hidden_units": args.hidden_units, "serve_batch": 512,
                                          "backbone": args.backbones[0], "repeat": r,
                                          "dense_first_layer": args.dense_first_layer})
                    results.append(res)
                    print(json.dumps(res), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}"
        # glibc malloc settings change step times by up to a third (docs/scale.md): record them
        malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "malloc_env": malloc, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
