"""`ak.compare` and `aefs-keras compare`: every selection method on the
user's own data, side by side, and the one to deploy.

Each candidate (no selection, the static top-k, the static mixed-dimension
model, AEFS in the paper's form, AEFS at mixed resolution with its fixed
fields ranked the same way) trains at each
learning rate with early stopping on validation AUC; validation AUC picks
its learning rate and, among the candidates, the recommendation: the
cheapest (fewest embedding values read per example, then the fastest to
serve) within `max_auc_loss` of the most accurate, or the most accurate
within `budget` values per example. The test split is reported and plays
no part in any choice. The static methods' fields, and the fields AEFS at
mixed resolution fixes, are the top of the permutation importance of the
best no-selection candidate on validation rows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Sequence

import numpy as np

METHODS = ("none", "static", "mixed_dimension", "aefs_single", "aefs")
LABELS = {
    "none": "no selection",
    "static": "static top-k",
    "mixed_dimension": "static mixed-dimension",
    "aefs_single": "AEFS (paper's form)",
    "aefs": "AEFS (mixed resolution)",
}


@dataclasses.dataclass
class Candidate:
    """One method at its validated learning rate."""

    method: str
    learning_rate: float
    val_auc: float
    test_auc: float
    test_logloss: float
    values_per_example: int
    train_examples_per_s: float
    serve_examples_per_s: float
    epochs: int
    val_auc_by_rate: dict
    on_frontier: bool = False
    model: Any = dataclasses.field(default=None, repr=False)

    def row(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "model"}


@dataclasses.dataclass
class Comparison:
    """The candidates, the recommended one, and why."""

    candidates: list[Candidate]
    recommended: Candidate
    reason: str
    importance: dict

    def table(self) -> str:
        lines = [f"{'method':<26} {'lr':>6} {'val AUC':>8} {'test AUC':>8} {'logloss':>8} {'values/ex':>9} "
                 f"{'train ex/s':>10} {'serve ex/s':>10}  frontier"]
        for c in self.candidates:
            mark = ("*" if c.on_frontier else "") + (" <- recommended" if c is self.recommended else "")
            lines.append(f"{LABELS[c.method]:<26} {c.learning_rate:>6g} {c.val_auc:>8.4f} {c.test_auc:>8.4f} "
                         f"{c.test_logloss:>8.4f} {c.values_per_example:>9,} {c.train_examples_per_s:>10,.0f} "
                         f"{c.serve_examples_per_s:>10,.0f}  {mark}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"candidates": [c.row() for c in self.candidates], "recommended": self.recommended.method,
                "reason": self.reason, "importance": self.importance}


def recommend(candidates: Sequence[Candidate], max_auc_loss: float = 0.001, budget: int | None = None):
    """-> (the recommended candidate, why), by validation AUC only.

    >>> c = lambda m, auc, v, s: Candidate(m, 1e-3, auc, 0, 0, v, 0, s, 1, {})
    >>> best, why = recommend([c("none", 0.80, 100, 10), c("static", 0.7995, 50, 20), c("aefs", 0.81, 80, 5)])
    >>> best.method
    'aefs'
    >>> recommend([c("none", 0.80, 100, 10), c("static", 0.7995, 50, 20)])[0].method
    'static'
    >>> recommend([c("none", 0.80, 100, 10), c("static", 0.79, 50, 20)], budget=60)[0].method
    'static'
    """
    if not candidates:
        raise ValueError("`candidates` is empty")
    if budget is not None:
        within = [c for c in candidates if c.values_per_example <= budget]
        if not within:
            raise ValueError(f"no candidate reads at most `budget`={budget} embedding values per example "
                             f"(the cheapest reads {min(c.values_per_example for c in candidates)})")
        best = max(within, key=lambda c: c.val_auc)
        return best, (f"the most accurate on validation ({best.val_auc:.4f}) of the candidates reading at most "
                      f"{budget:,} embedding values per example ({best.values_per_example:,})")
    top = max(candidates, key=lambda c: c.val_auc)
    near = [c for c in candidates if c.val_auc >= top.val_auc - max_auc_loss]
    best = min(near, key=lambda c: (c.values_per_example, -c.serve_examples_per_s))
    if best is top:
        why = f"the most accurate on validation ({top.val_auc:.4f})"
        cheaper = [c for c in candidates if c.values_per_example < top.values_per_example]
        if cheaper:
            why += (f"; every cheaper candidate is more than {max_auc_loss:g} below it (best of them: "
                    f"{LABELS[max(cheaper, key=lambda c: c.val_auc).method]}, "
                    f"{max(c.val_auc for c in cheaper):.4f})")
        return best, why
    return best, (f"within {max_auc_loss:g} validation AUC of the most accurate ({LABELS[top.method]}, "
                  f"{top.val_auc:.4f} against {best.val_auc:.4f}) and the cheapest: {best.values_per_example:,} "
                  f"embedding values read per example against {top.values_per_example:,}")


def mark_frontier(candidates: Sequence[Candidate]) -> None:
    """Sets `on_frontier`: no other candidate reads at most as many values
    per example with a higher validation AUC (or fewer at the same AUC)."""
    for c in candidates:
        c.on_frontier = not any(
            (o.values_per_example <= c.values_per_example and o.val_auc > c.val_auc)
            or (o.values_per_example < c.values_per_example and o.val_auc >= c.val_auc)
            for o in candidates if o is not c)


def plot(comparison: Comparison, path: str) -> bool:
    """The AUC-cost plot as a PNG; False (and a hint) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib for the AUC-cost PNG)")
        return False
    cands = comparison.candidates
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for c in cands:
        ax.scatter(c.values_per_example, c.val_auc, s=60 if c is comparison.recommended else 30,
                   marker="o" if c.on_frontier else "x", color="C0" if c.on_frontier else "C7")
        ax.annotate(LABELS[c.method], (c.values_per_example, c.val_auc), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    front = sorted((c for c in cands if c.on_frontier), key=lambda c: c.values_per_example)
    ax.plot([c.values_per_example for c in front], [c.val_auc for c in front], color="C0", lw=1)
    ax.set_xlabel("embedding values read per example")
    ax.set_ylabel("validation AUC")
    ax.set_title(f"AUC against cost (recommended: {LABELS[comparison.recommended.method]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def rank_fields(data, backbone: str = "deepfm", epochs: int = 2, rows: int = 50_000, seed: int = 0,
                learning_rate: float = 1e-3, model=None, **build_options) -> np.ndarray:
    """Each field's permutation importance for a model without selection
    trained `epochs` epochs on `data.train`, measured on up to `rows` of
    `data.valid`: the ranking that `StaticTopK`, `MixedDimension` and
    `AEFS(importance=...)` take.

    Args:
        data: a `CTRData` (`aefs_keras.datasets.load`, `synthetic`, ...).
        backbone, learning_rate, **build_options: the ranking model
            (`build_model` arguments, e.g. `d_main`, `hidden_units`).
        epochs: its training epochs (default 2).
        rows: validation rows the importance is measured on.
        seed: the model's and the shuffles' seed.
        model: a trained model to measure instead (nothing is trained).

    Returns:
        (F,) validation AUC lost by shuffling each field, in schema order.
    """
    import keras

    from aefs_keras.builder import build_model, default_compile
    from aefs_keras.callbacks import labelled_rows
    from aefs_keras.importance import permutation_importance

    if data.valid is None:
        raise ValueError("rank_fields needs validation rows (`data.valid`): importance on training rows "
                         "rewards what the model memorised")
    if model is None:
        keras.utils.set_random_seed(seed)
        model = default_compile(build_model(data.schema, backbone, None, **build_options),
                                learning_rate=learning_rate)
        model.fit(data.train, epochs=epochs, verbose=0)
    x, y = labelled_rows(data.valid, rows)
    return permutation_importance(model, {name: x[name] for name in data.schema.names}, y, seed=seed)


def _selection(method, k, k_ratio, importance):
    import aefs_keras as ak

    kk = {"k": k} if k is not None else {"k_ratio": k_ratio if k_ratio is not None else 0.5}
    if method == "none":
        return None
    if method == "static":
        return ak.StaticTopK(importance=importance, **kk)
    if method == "mixed_dimension":
        return ak.MixedDimension(importance=importance, **kk)
    if method == "aefs_single":
        return ak.AEFS(resolution="single", **kk)
    # Its fixed fields ranked first, as the static methods' are: on criteo_80k with DeepFM the ranking
    # inside fit scored 0.0018 below this (beyond 2 SE; docs/aefs.md, "The default form").
    return ak.AEFS(importance=importance, **kk)


def _count_rows(dataset) -> int:
    n = 0
    for batch in dataset:
        n += int(batch[1].shape[0])
    return n


def _test_metrics(model, dataset):
    import keras
    import numpy as np

    from aefs_keras.metrics import auc_score, log_loss

    labels, probs = [], []
    for x, y in dataset:
        probs.append(keras.ops.convert_to_numpy(model.predict_on_batch(x)).ravel())
        labels.append(keras.ops.convert_to_numpy(y).ravel())
    labels, probs = np.concatenate(labels), np.clip(np.concatenate(probs).astype("float64"), 1e-7, 1 - 1e-7)
    return auc_score(labels, probs), log_loss(labels, probs)


def _serve_examples_per_s(model, dataset, batch=512, calls=20):
    """The exported SavedModel's `serving_default` at `batch` rows (median
    of `calls` calls), loaded as TF Serving would load it."""
    import numpy as np
    import tensorflow as tf

    from aefs_keras.callbacks import labelled_rows
    from aefs_keras.serving import export

    x, _ = labelled_rows(dataset, batch)
    n = len(next(iter(x.values())))
    x = {k: tf.constant(np.asarray(v)[np.arange(batch) % n]) for k, v in x.items()}
    tmp = tempfile.mkdtemp(prefix="compare_export_")
    try:
        fn = tf.saved_model.load(str(export(model, tmp, "m"))).signatures["serving_default"]
        for _ in range(3):
            fn(**x)["probability"].numpy()
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            fn(**x)["probability"].numpy()
            times.append(time.perf_counter() - t)
        return batch / statistics.median(times)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(data, backbone: str = "deepfm", k: int | None = None, k_ratio: float | None = None,
            methods: Sequence[str] | None = None, learning_rates: Sequence[float] = (1e-3, 3e-3),
            d_main: int = 32, hidden_units: Sequence[int] = (256, 128), epochs: int = 10, patience: int = 2,
            seed: int = 0, max_auc_loss: float = 0.001, budget: int | None = None,
            importance_rows: int = 50_000, verbose: int = 1) -> Comparison:
    """Trains every selection method on `data` and recommends one.

    Args:
        data: a `CTRData` with validation and test rows (`ak.datasets.load`,
            `ak.datasets.synthetic`, ...).
        backbone, d_main, hidden_units: every candidate's model.
        k, k_ratio: fields kept (default k_ratio 0.5).
        methods: candidates, from "none", "static", "mixed_dimension",
            "aefs_single", "aefs" (default all).
        learning_rates: Adam learning rates tried per candidate; validation
            AUC picks one.
        epochs, patience: at most `epochs`, early stopping on validation AUC.
        seed: every candidate's seed.
        max_auc_loss, budget: the choice (see the module docstring).
        importance_rows: validation rows the field ranking is measured on.
        verbose: 1 prints progress and the table.

    Returns:
        a `Comparison` (`table()`, `recommended`, `reason`; each candidate
        keeps its model).
    """
    import keras
    import numpy as np

    import aefs_keras as ak
    from aefs_keras.callbacks import TrainingThroughput

    methods = list(methods or METHODS)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"`methods` must be some of {METHODS}. Received: methods={methods!r}")
    if isinstance(max_auc_loss, bool) or not isinstance(max_auc_loss, (int, float)) or max_auc_loss < 0:
        raise ValueError(f"`max_auc_loss` must be a number >= 0. Received: max_auc_loss={max_auc_loss!r}")
    if data.valid is None or data.test is None:
        raise ValueError("compare needs validation and test rows (`data.valid`, `data.test`)")
    learning_rates = [float(r) for r in learning_rates]
    say = print if verbose else (lambda *a, **kw: None)
    n_train = _count_rows(data.train)
    importance = None

    def fit(method, rate, selection):
        keras.utils.set_random_seed(seed)
        model = ak.default_compile(ak.build_model(data.schema, backbone, selection, d_main=d_main,
                                                  hidden_units=list(hidden_units)), learning_rate=rate)
        timer = TrainingThroughput()
        stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                             restore_best_weights=True)
        started = time.perf_counter()
        history = model.fit(data.train, validation_data=data.valid, epochs=epochs, verbose=0,
                            callbacks=[stop, timer])
        val = history.history["val_auc"]
        say(f"  {LABELS[method]:<26} lr {rate:<6g} val AUC {max(val):.4f} ({len(val)} epochs, "
            f"{time.perf_counter() - started:.0f} s)", flush=True)
        return model, float(max(val)), len(val), timer

    def rank(model=None):
        names = data.schema.names
        drops = rank_fields(data, backbone, rows=importance_rows, seed=seed, model=model, d_main=d_main,
                            hidden_units=list(hidden_units))
        order = np.argsort(-drops, kind="stable")
        say("  fields by validation AUC lost when shuffled: "
            + ", ".join(f"{names[i]} {drops[i]:+.4f}" for i in order), flush=True)
        return [float(v) for v in drops]

    order = [m for m in METHODS if m in methods]
    out = []
    ranked = {"static", "mixed_dimension", "aefs"}
    ranked_by = None  # the best no-selection candidate; without one, rank_fields trains a short model
    if ranked & set(order) and "none" not in order:
        say("Ranking the fields: a model without selection, 2 epochs", flush=True)
    for i, method in enumerate(order):
        if method in ranked and importance is None:
            importance = rank(ranked_by)
        say(f"[{i + 1}/{len(order)}] {LABELS[method]}", flush=True)
        best, by_rate = None, {}
        for rate in learning_rates:
            model, val, n_epochs, timer = fit(method, rate, _selection(method, k, k_ratio, importance))
            by_rate[rate] = val
            if best is None or val > best[1]:
                best = (model, val, n_epochs, timer, rate)
        model, val, n_epochs, timer, rate = best
        if method == "none":
            ranked_by = model
        test_auc, test_ll = _test_metrics(model, data.test)
        out.append(Candidate(method, rate, val, test_auc, test_ll, model.activated_embedding_parameters(),
                             timer.examples_per_s(n_train), _serve_examples_per_s(model, data.test), n_epochs,
                             by_rate, model=model))
    mark_frontier(out)
    chosen, reason = recommend(out, max_auc_loss, budget)
    names = data.schema.names
    result = Comparison(out, chosen, reason,
                        {} if importance is None else dict(zip(names, importance)))
    return result


def run(args) -> int:
    """`aefs-keras compare`: see `aefs_keras.cli` for the arguments."""
    from aefs_keras.jobs import load_data

    if args.max_auc_loss < 0:
        raise ValueError(f"--max-auc-loss must be >= 0. Received: --max-auc-loss {args.max_auc_loss}")
    if args.k is not None and args.k_ratio is not None:
        raise ValueError(f"Give --k or --k-ratio, not both. Received: --k {args.k} --k-ratio {args.k_ratio}")
    for m in args.methods or ():
        if m not in METHODS:
            raise ValueError(f"--methods must be some of {', '.join(METHODS)}. Received: {m}")
    ak, _, data = load_data(args, distributed=False)
    result = compare(data, backbone=args.backbone, k=args.k, k_ratio=args.k_ratio, methods=args.methods,
                     learning_rates=args.learning_rates, d_main=args.d_main, hidden_units=args.hidden_units,
                     epochs=args.epochs, patience=args.patience, seed=args.seed, max_auc_loss=args.max_auc_loss,
                     budget=args.budget)
    print()
    print(result.table())
    print("* on the AUC-cost frontier (validation AUC against embedding values read per example); "
          "learning rates and the recommendation chosen on validation, never test")
    print(f"Recommended: {LABELS[result.recommended.method]}: {result.reason}.")
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, f"{args.name}.png")
    if plot(result, png):
        print(f"Wrote {png}")
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(result.to_json(), f, indent=1)
    path = os.path.join(args.out, f"{args.name}.keras")
    result.recommended.model.save(path)
    print(f"Saved {path}")
    base = args.export or os.path.join(args.out, "serving")
    print(f"Exported {ak.export(result.recommended.model, base, args.name)}")
    return 0
