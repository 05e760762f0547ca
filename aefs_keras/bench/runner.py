"""Runs a benchmark grid: one Keras model per run, results kept as they come.

Every run: build (`build_model`), `model.fit` with early stopping on
validation AUC (best weights restored), then on the held-out test split:
exact AUC (rank formula) and log-loss from the served sub-graph, activated
embedding parameters per example, training examples/s (epochs after the
first, validation excluded), serving examples/s of the inference graph
(median of 30 calls at `serving_batch`), and for selecting methods how
often each field was kept on the test rows.

Splits are fixed per dataset (split seed 0; the synthetic set's data seed
is `synthetic_seed`); a run's seed sets initialisation, dropout and
shuffling, so the spread over seeds is training noise.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aefs_keras import experimental
from aefs_keras.bench.config import METHODS, TRAINING_OVERRIDES, BenchConfig, RunSpec
from aefs_keras.builder import build_model, default_compile
from aefs_keras.checks import resolve_k
from aefs_keras.callbacks import FieldSelectionFrequency, TrainingThroughput
from aefs_keras.datasets.benchmark_data import load_benchmark
from aefs_keras.datasets.ctr_data import CTRData
from aefs_keras.datasets.synthetic_data import synthetic
from aefs_keras.serving import inference_model
from aefs_keras.importance import importance_prior, most_important, permutation_importance
from aefs_keras.metrics import auc_score, log_loss
from aefs_keras.selection import as_selection


def load_data(name: str, settings: dict[str, Any]) -> CTRData:
    """The dataset's fixed splits; `pipelines(seed)` gives each run its own."""
    batch = int(settings["batch_size"])
    if name == "synthetic":
        data = synthetic(num_rows=int(settings["synthetic_rows"]), seed=int(settings["synthetic_seed"]),
                         batch_size=batch)
    else:
        data = load_benchmark(name, settings["data_dir"], batch_size=batch)
    cap = settings.get("max_train_rows")
    return data.with_train_rows(int(cap)) if cap else data


def _tensors(features: dict[str, np.ndarray], rows: np.ndarray):
    return {k: tf.constant(v[rows].tolist() if v.dtype == object else v[rows]) for k, v in features.items()}


def _predict(serving, features, n, batch=4096):
    probs, picked = [], []
    for lo in range(0, n, batch):
        out = serving(_tensors(features, np.arange(lo, min(lo + batch, n))), training=False)
        probs.append(keras.ops.convert_to_numpy(out["probability"]).ravel())
        if "selected_fields" in out:
            picked.append(keras.ops.convert_to_numpy(out["selected_fields"]))
    return np.concatenate(probs), (np.concatenate(picked) if picked else None)


def _serving_examples_per_s(serving, features, batch, calls=30):
    n = len(next(iter(features.values())))
    x = _tensors(features, np.arange(batch) % n)
    fn = tf.function(lambda inputs: serving(inputs, training=False)["probability"])
    for _ in range(3):
        fn(x).numpy()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def _backbone_args(spec: RunSpec, settings):
    """build_model arguments of the backbone alone (no selection)."""
    return dict(d_main=int(settings["d_main"]), hidden_units=list(settings["hidden_units"]),
                dropout=float(settings["dropout"]), backbone_options=dict(spec.backbone_options) or None)


def _model_args(spec: RunSpec, settings, importance=None):
    """build_model arguments, the selection as an object; a variant that
    sets a research option gets `experimental.ResearchAEFS`.
    `importance()` gives the field importances for field_prior="importance"."""
    args = _backbone_args(spec, settings)
    kind, options = METHODS[spec.selection]
    options = {**options, **{k: v for k, v in spec.overrides if k not in TRAINING_OVERRIDES}}
    if kind is None:
        if options:
            raise ValueError(f"{spec.key}: selection options {sorted(options)} need a selecting method")
        return args
    options["k_ratio"] = spec.k_ratio
    if kind == "mixed_dimension":  # the wide fields: the static top-k's ranking
        options["importance"] = importance()
    if options.get("field_prior") == "importance":  # AEFS started from a no-selection model's ranking
        options["field_prior"] = importance_prior(importance())
    if options.get("always_keep") == "importance":
        # The `always_keep_share` x k most important fields (validation
        # permutation importance of a no-selection model) on every row.
        share = float(options.pop("always_keep_share", 0.5))
        drops = importance()
        options["always_keep"] = most_important(drops, int(round(share * resolve_k(len(drops), None, spec.k_ratio))))
    research = kind == "aefs" and any(name in experimental.OPTIONS for name in options)
    args["selection"] = as_selection(kind, options) if not research else experimental.ResearchAEFS(**options)
    return args


def _importance(spec: RunSpec, data: CTRData, settings) -> np.ndarray:
    """Permutation importance of each field (validation AUC lost by shuffling
    it) for a model of the same backbone without selection, trained
    `static_search_epochs`."""
    model = default_compile(build_model(data.schema, spec.backbone, **_backbone_args(spec, settings)),
                            learning_rate=float(settings["learning_rate"]))
    train, _ = data.pipelines(spec.seed)
    model.fit(train, epochs=int(settings["static_search_epochs"]), verbose=0)
    serving = inference_model(model)
    x, y = data.valid_arrays
    x = {name: x[name] for name in data.schema.names}  # drops in schema order
    return permutation_importance(lambda xs: _predict(serving, xs, len(y))[0], x, y, seed=spec.seed)


def _static_fields(spec: RunSpec, data: CTRData, settings) -> list[str]:
    """The static baseline's one global field set, learned once: the k fields
    whose shuffling costs a no-selection model the most validation AUC
    (permutation importance, one of ERASE's selectors; `_importance`).

    Why not the late gate's selection frequency: the per-example gate's
    counts say which fields an adaptive model routes through, not which
    carry signal (on frappe it keeps `item`, the only informative field
    after negative sampling, on about half of the rows)."""
    drops = _importance(spec, data, settings)
    k = resolve_k(data.schema.num_fields, None, spec.k_ratio)
    return [data.schema.names[i] for i in most_important(drops, k)]


def build_run_model(spec: RunSpec, data: CTRData, settings: dict[str, Any]):
    """The compiled, untrained model of one run, from a clear session and
    the run's seed -> (model, the run's settings, its static fields or None).
    Shared by `run_one` and benchmarks/validation_curve.py."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    settings = {**settings, **{k: v for k, v in spec.overrides if k in TRAINING_OVERRIDES}}
    fields = _static_fields(spec, data, settings) if spec.selection == "static" else None
    schema = data.schema.select(fields) if fields is not None else data.schema
    # Trained at most once per run, however many options use it.
    importance = functools.lru_cache(maxsize=None)(lambda: tuple(_importance(spec, data, settings)))
    args = _model_args(spec, settings, importance=importance)
    keras.utils.set_random_seed(spec.seed)
    model = default_compile(build_model(schema, spec.backbone, **args),
                            learning_rate=float(settings["learning_rate"]))
    return model, settings, fields


def run_one(spec: RunSpec, data: CTRData, settings: dict[str, Any]) -> dict[str, Any]:
    """Trains and measures one run; returns its result record."""
    started = time.perf_counter()
    model, settings, fields = build_run_model(spec, data, settings)
    train, valid = data.pipelines(spec.seed, fields)
    timer = TrainingThroughput()
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=int(settings["patience"]),
                                         restore_best_weights=True)
    history = model.fit(train, validation_data=valid, epochs=int(settings["max_epochs"]), verbose=0,
                        callbacks=[stop, timer])
    serving = inference_model(model)
    test_x, test_y = data.test_arrays
    if fields is not None:
        test_x = {k: test_x[k] for k in fields}
    probs, picked = _predict(serving, test_x, len(test_y))
    p = np.clip(probs.astype("float64"), 1e-7, 1 - 1e-7)
    n_train = len(data.train_arrays[1])
    val_auc = history.history.get("val_auc", [float("nan")])
    out = {
        "key": spec.key, "grid": spec.grid, "dataset": spec.dataset, "backbone": spec.backbone,
        "selection": spec.selection, "k_ratio": spec.k_ratio, "variant": spec.variant,
        "overrides": dict(spec.overrides), "seed": spec.seed,
        "auc": auc_score(test_y, p),
        "logloss": log_loss(test_y, p),
        "epochs": len(history.history["loss"]),
        "best_epoch": int(np.argmax(val_auc)) + 1,
        "val_auc": float(np.max(val_auc)),  # the restored weights' validation AUC
        "k": None, "fields": data.schema.num_fields,
        "activated_embedding_parameters": model.activated_embedding_parameters(),
        "train_examples_per_s": timer.examples_per_s(n_train),
        "serving_examples_per_s": _serving_examples_per_s(serving, test_x, int(settings["serving_batch"])),
        "seconds": time.perf_counter() - started,
        "machine": machine_description(),  # runs of one results file may come from several machines
        # The fingerprint covers settings, not code: a numerics change shows here.
        "code": code_version(),
    }
    if picked is not None:
        out["k"] = int(picked.shape[1])
        counts = np.bincount(picked.ravel(), minlength=data.schema.num_fields)
        out["selection_frequency"] = (counts / len(test_y)).tolist()
    if fields is not None:
        out["k"] = len(fields)
        out["static_fields"] = fields
        out["selection_frequency"] = [float(n in fields) for n in data.schema.names]
    return out


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """The git commit of this package's checkout, "+uncommitted" when its
    files differ from it, or "unknown" outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", os.path.dirname(here)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+uncommitted" if dirty else "")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return (f"{cpu}, {os.cpu_count()} cores{mem}, {'GPU: ' + str(len(gpus)) if gpus else 'no GPU'}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}")


def _save(path, payload):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)  # a run killed mid-write keeps the last good file


def _read_results(path, fingerprint, log):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        old = json.load(f)
    if old.get("fingerprint") != fingerprint:
        log(f"{path}: written with other settings; its results are not reused")
        return None
    return old


def _collect(config: BenchConfig, paths, log):
    """A fresh payload for `config` with the field names of the saved files
    in `paths` (same settings only), and their results by key."""
    payload = {"config": config.name, "fingerprint": config.fingerprint, "settings": config.settings,
               "machine": machine_description(), "field_names": {}, "informative_fields": {},
               "results": []}
    found: dict[str, dict] = {}
    for p in paths:
        old = _read_results(p, config.fingerprint, log)
        if old:
            found.update({r["key"]: r for r in old["results"]})
            payload["field_names"].update(old.get("field_names", {}))
            payload["informative_fields"].update(old.get("informative_fields", {}))
    return payload, found


def run_grid(config: BenchConfig, out_dir: str, fresh: bool = False, shard: tuple[int, int] = (0, 1),
             log=print) -> dict[str, Any]:
    """Runs every run of `config` not already saved in `out_dir` (same
    settings fingerprint), saving after each run, and returns the payload
    {config, settings, machine, field_names, informative_fields, results}.

    With `shard=(i, n)` this process takes every n-th remaining run and
    saves to `results.shard{i}.json`; `merge_shards` folds those into
    `results.json` (several processes on one machine share it this way).
    """
    index, count = shard
    main_path = os.path.join(out_dir, "results.json")
    path = main_path if count == 1 else os.path.join(out_dir, f"results.shard{index}.json")
    paths = [] if fresh else [main_path] + _shard_paths(out_dir)
    payload, done = _collect(config, paths, log)
    made = _take_over(config, done, log)
    order = {s.key: i for i, s in enumerate(config.runs)}
    grids = list(dict.fromkeys(s.grid for s in config.runs))
    datasets = list(dict.fromkeys(s.dataset for s in config.runs))
    # Grid by grid (the first grid finishes first), each grouped by dataset
    # so a dataset is loaded once per grid and process.
    todo = sorted((s for s in config.runs if s.key not in done),
                  key=lambda s: (grids.index(s.grid), datasets.index(s.dataset)))
    mine = todo[index::count]
    log(f"{len(config.runs)} runs in the grid; {len(config.runs) - len(todo)} already done, "
        f"{len(todo)} to run" + (f", {len(mine)} of them in shard {index}/{count}" if count > 1 else ""))
    own = {k: r for k, r in done.items() if k in order} if count == 1 else {}
    payload["results"] = sorted(own.values(), key=lambda r: order[r["key"]])
    cache: dict[str, CTRData] = {}
    for i, spec in enumerate(mine, 1):
        if _identity(spec) in made:  # made earlier in this call under another grid's name
            r = _reuse(made[_identity(spec)], spec)
            payload["results"].append(r)
            payload["results"].sort(key=lambda x: order.get(x["key"], -1))
            _save(path, payload)
            log(f"[{i}/{len(mine)}] {spec.key}: taken over from {r['reused_from']}")
            continue
        if spec.dataset not in cache:
            cache.clear()  # one dataset in memory at a time
            cache[spec.dataset] = load_data(spec.dataset, config.settings)
        data = cache[spec.dataset]
        payload["field_names"][spec.dataset] = data.schema.names
        if getattr(data, "informative_fields", None):
            payload["informative_fields"][spec.dataset] = data.informative_fields
        r = run_one(spec, data, config.settings)
        made.setdefault(_identity(spec), r)
        payload["results"].append(r)
        payload["results"].sort(key=lambda x: order.get(x["key"], -1))
        _save(path, payload)
        log(f"[{i}/{len(mine)}] {spec.key}: AUC {r['auc']:.4f} logloss {r['logloss']:.4f} "
            f"emb/ex {r['activated_embedding_parameters']} train {r['train_examples_per_s']:,.0f}/s "
            f"serve {r['serving_examples_per_s']:,.0f}/s epochs {r['epochs']} ({r['seconds']:.0f} s)")
    if count == 1:
        _save(path, payload)
    return payload


def _identity(spec: RunSpec) -> tuple:
    """What decides a run's result besides the shared settings: the grid and
    variant names do not."""
    return (spec.dataset, spec.backbone, spec.selection, spec.k_ratio, spec.overrides,
            spec.backbone_options, spec.seed)


def _reuse(source: dict, spec: RunSpec) -> dict:
    # Sources are always runs that were trained (never taken over themselves).
    return {**source, "key": spec.key, "grid": spec.grid, "variant": spec.variant, "reused_from": source["key"]}


def _take_over(config: BenchConfig, done: dict[str, dict], log) -> dict[tuple, dict]:
    """Adds to `done` every run of `config` that another grid of it already
    made with the same identity (runs are seeded and deterministic, so
    training it again repeats the result), marked `reused_from`; only a
    source with a validation AUC is used. Returns the made runs by identity."""
    made: dict[tuple, dict] = {}
    for s in config.runs:
        # Runs saved before validation AUC was recorded are not taken over:
        # a searched grid could not choose them on validation.
        r = done.get(s.key)
        if r is not None and "reused_from" not in r and "val_auc" in r:
            made.setdefault(_identity(s), r)
    taken = 0
    for s in config.runs:
        source = made.get(_identity(s))
        reused = s.key in done and "reused_from" in done[s.key]
        if source is not None and (s.key not in done or reused):
            taken += s.key not in done
            done[s.key] = _reuse(source, s)  # derived again each time from its source
        elif reused:
            del done[s.key]  # its source is gone or has no validation AUC: train it
    if taken:
        log(f"{taken} run(s) taken over from other grids of the config (same dataset, backbone, method, k, "
            f"options and seed)")
    return made


def _shard_paths(out_dir):
    if not os.path.isdir(out_dir):
        return []
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir)
                  if f.startswith("results.shard") and f.endswith(".json"))


def merge_shards(config: BenchConfig, out_dir: str, log=print) -> dict[str, Any]:
    """Folds `results.shard*.json` into `results.json` (runs of the current
    grid only, in grid order) and removes the shard files."""
    main_path = os.path.join(out_dir, "results.json")
    shards = _shard_paths(out_dir)
    payload, found = _collect(config, [main_path] + shards, log)
    _take_over(config, found, log)
    order = {s.key: i for i, s in enumerate(config.runs)}
    payload["results"] = sorted((r for k, r in found.items() if k in order), key=lambda r: order[r["key"]])
    _save(main_path, payload)
    for p in shards:
        os.remove(p)
    missing = len(config.runs) - len(payload["results"])
    if missing:
        log(f"{missing} run(s) of the grid have no result yet (rerun the same command to finish them)")
    return payload
