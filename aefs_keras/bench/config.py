"""Benchmark configs: a small YAML (or JSON) file -> the list of runs.

A config names shared training settings and one or more grids; each grid
is the product dataset x backbone x selection x k ratio x variant x seed:

    name: selection
    settings: {batch_size: 1024, max_epochs: 10, patience: 2, d_main: 16}
    grids:
      - name: methods
        datasets: [criteo_80k, frappe]
        backbones: [deepfm]
        selections: [none, static, adafs, aefs_adafs, aefs_mvfs]
        k_ratios: [0.3, 0.5, 0.7]
        seeds: [0, 1, 2]
      - name: ablation
        datasets: [frappe]
        backbones: [deepfm]
        selections: [aefs_adafs]
        k_ratios: [0.5]
        variants: {no_reweight: {reweight: false}}
        seeds: [0, 1, 2]
    quick: {seeds: [0], max_epochs: 3}   # what --quick changes
    notes: "markdown put at the top of the report"
    peer: {script: benchmarks/deepctr_accuracy.py, datasets: [frappe], seeds: [0, 1, 2]}

`none` runs once per seed (k does not apply to it). `peer` runs the
DeepCTR accuracy check after the grid (not with --quick). `summary` puts a
table at the top of the report: for each listed (dataset, backbone), AEFS
against no selection at k = F/2 in the named grid, and AEFS's AUKC against
the static top-k's in `aukc_grid`, then the `note` (markdown):

    summary:
      pairs: [{dataset: frappe, backbone: deepfm, grid: fair}]
      aukc_grid: fair_k
      methods_grids: [static_forms]   # every method against none, within each grid
      note: "frappe trained to convergence: docs/frappe_long.md"

A grid's `search` gives each method its own variants, in place of
`variants`, for a per-method search chosen on validation AUC (the report's
"validated best" table); a variant may set `learning_rate` as well as
selection options:

      - name: fair
        selections: [none, adafs]
        search:
          none: {lr_1e-3: {}, lr_3e-3: {learning_rate: 0.003}}
          adafs: {ours: {}, paper: {weight_scale: sum, output_layer: false}}
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from typing import Any

DATASETS = ("criteo_80k", "census_kdd", "frappe", "synthetic")
# Grid method -> (selection, its options) for build_model (static is
# handled by the runner). "aefs_adafs" is AEFS with AdaFS's MLP controller.
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "none": (None, {}),
    "static": (None, {}),  # one global top-k field set, then retrained on it
    "adafs": ("adafs", {"controller": "mlp"}),  # late, hard top-k
    "mvfs": ("adafs", {"controller": "mvfs"}),  # late, multi-view controller
    # The grids' AEFS variants vary the paper's form unless they set `resolution: mixed`.
    "aefs_adafs": ("aefs", {"controller": "mlp", "resolution": "single"}),
    "aefs_mvfs": ("aefs", {"controller": "mvfs", "resolution": "single"}),
    # Static mixed-dimension embeddings: the static top-k's fields wide, the rest at width 4.
    "mixed_dimension": ("mixed_dimension", {}),
}
SETTINGS: dict[str, Any] = {
    "data_dir": "../shared/data",
    "batch_size": 1024,
    "max_epochs": 10,
    "patience": 2,
    "learning_rate": 1e-3,
    "d_main": 16,
    "hidden_units": [256, 128, 64],
    "dropout": 0.1,
    "static_search_epochs": 2,  # epochs of the late AdaFS run that picks the static field set
    "serving_batch": 512,
    "synthetic_rows": 200_000,
    "synthetic_seed": 0,
    "max_train_rows": None,  # cap the training split (e.g. for --quick)
}
GRID_KEYS = {"name", "datasets", "backbones", "selections", "k_ratios", "variants", "seeds",
             "backbone_options", "search"}
# Variant keys that change the run's training settings, not the selection.
TRAINING_OVERRIDES = ("learning_rate",)
# --quick may also narrow grids: these keys replace the grids' own lists.
QUICK_GRID_KEYS = {"datasets", "seeds", "k_ratios"}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    grid: str
    dataset: str
    backbone: str
    selection: str
    k_ratio: float | None
    variant: str
    overrides: tuple  # sorted (key, value) pairs for build_model
    backbone_options: tuple
    seed: int

    @property
    def key(self) -> str:
        parts = [self.grid, self.dataset, self.backbone, self.selection,
                 "-" if self.k_ratio is None else f"{self.k_ratio:g}", self.variant, str(self.seed)]
        return "/".join(parts)


@dataclasses.dataclass
class BenchConfig:
    name: str
    settings: dict[str, Any]
    runs: list[RunSpec]
    source: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """Changes when anything that affects a run's result changes."""
        text = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No benchmark config at {path!r}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    try:
        import yaml
    except ImportError as e:  # the `bench` extra
        raise ImportError("YAML configs need PyYAML: pip install 'aefs-keras[bench]' "
                          "(or give the config as .json)") from e
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a benchmark config must be a mapping. Received: {type(data).__name__}")
    return data


def _list(grid_name, key, value, allowed=None):
    if not isinstance(value, list) or not value:
        raise ValueError(f"grid {grid_name!r}: `{key}` must be a non-empty list. Received: {key}={value!r}")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"grid {grid_name!r}: `{key}` has unknown value(s) {bad}; "
                             f"known: {list(allowed)}. Received: {key}={value!r}")
    return value


def load_config(path_or_dict, quick: bool = False) -> BenchConfig:
    """Reads a config (path to .yaml/.json, or a dict) and expands its grids.

    Args:
        path_or_dict: the config.
        quick: apply the config's `quick` section (settings and grid
            narrowing), for a short run of the same grid.
    """
    from aefs_keras.builder import BACKBONES

    raw = _read(path_or_dict) if isinstance(path_or_dict, str) else dict(path_or_dict)
    unknown = set(raw) - {"name", "settings", "grids", "quick", "notes", "peer", "summary"}
    if unknown:
        raise ValueError(f"Unknown top-level config key(s) {sorted(unknown)}; "
                         "known: name, settings, grids, quick, notes, peer, summary")
    settings = dict(SETTINGS)
    user_settings = raw.get("settings") or {}
    bad = set(user_settings) - set(SETTINGS)
    if bad:
        raise ValueError(f"Unknown setting(s) {sorted(bad)}; known: {sorted(SETTINGS)}")
    settings.update(user_settings)
    quick_grid = {}
    if quick:
        q = dict(raw.get("quick") or {})
        quick_grid = {k: q.pop(k) for k in list(q) if k in QUICK_GRID_KEYS}
        bad = set(q) - set(SETTINGS)
        if bad:
            raise ValueError(f"Unknown key(s) {sorted(bad)} in `quick`; known: "
                             f"{sorted(set(SETTINGS) | QUICK_GRID_KEYS)}")
        settings.update(q)
    grids = raw.get("grids")
    if not isinstance(grids, list) or not grids:
        raise ValueError(f"`grids` must be a non-empty list. Received: grids={grids!r}")

    runs: list[RunSpec] = []
    seen = set()
    for i, grid in enumerate(grids):
        name = grid.get("name", f"grid{i}")
        bad = set(grid) - GRID_KEYS
        if bad:
            raise ValueError(f"grid {name!r}: unknown key(s) {sorted(bad)}; known: {sorted(GRID_KEYS)}")
        grid = dict(grid)
        for key, value in quick_grid.items():
            if key == "seeds":
                grid[key] = value
            else:  # datasets, k ratios: the grid's own that --quick keeps (else its first)
                own = list(grid.get(key) or [])
                grid[key] = [v for v in own if v in value] or own[:1]
        datasets = _list(name, "datasets", grid.get("datasets"), DATASETS)
        backbones = _list(name, "backbones", grid.get("backbones", ["deepfm"]), BACKBONES)
        selections = _list(name, "selections", grid.get("selections"), METHODS)
        k_ratios = _list(name, "k_ratios", grid.get("k_ratios", [0.5]))
        for k in k_ratios:
            if not isinstance(k, (int, float)) or not 0 < k <= 1:
                raise ValueError(f"grid {name!r}: each k ratio must be in (0, 1]. Received: k_ratios={k_ratios!r}")
        seeds = _list(name, "seeds", grid.get("seeds", [0]))
        variants = grid.get("variants") or {"default": {}}
        if not isinstance(variants, dict):
            raise ValueError(f"grid {name!r}: `variants` must map names to selection options "
                             f"(AEFS's, or ResearchAEFS's). Received: variants={variants!r}")
        search = grid.get("search") or {}
        if not isinstance(search, dict) or not all(isinstance(v, dict) and v for v in search.values()):
            raise ValueError(f"grid {name!r}: `search` must map methods to non-empty variant mappings. "
                             f"Received: search={search!r}")
        bad = sorted(set(search) - set(selections))
        if bad:
            raise ValueError(f"grid {name!r}: `search` names method(s) {bad} not in its selections {selections}")
        options = tuple(sorted((grid.get("backbone_options") or {}).items()))
        for ds, bb, sel, seed in itertools.product(datasets, backbones, selections, seeds):
            own = search.get(sel, variants)
            for variant, k in itertools.product(own, [None] if sel == "none" else k_ratios):
                spec = RunSpec(name, ds, bb, sel, None if k is None else float(k), variant,
                               tuple(sorted(own[variant].items())), options, int(seed))
                if spec.key not in seen:
                    seen.add(spec.key)
                    runs.append(spec)
    _check_summary(raw.get("summary"), [g.get("name", f"grid{i}") for i, g in enumerate(grids)])
    return BenchConfig(raw.get("name", "bench"), settings, runs, raw)


def _check_summary(summary, grid_names):
    if summary is None:
        return
    if not isinstance(summary, dict) or set(summary) - {"pairs", "aukc_grid", "k_ratio", "note", "methods_grids"}:
        raise ValueError("`summary` must be a mapping with `pairs` and optionally `aukc_grid`, `k_ratio`, "
                         f"`methods_grids` and `note`. Received: summary={summary!r}")
    for grid in summary.get("methods_grids") or []:
        if grid not in grid_names:
            raise ValueError(f"`summary` names methods grid {grid!r}, which the config does not have; "
                             f"its grids: {', '.join(grid_names)}")
    for pair in summary.get("pairs") or []:
        if not isinstance(pair, dict) or set(pair) != {"dataset", "backbone", "grid"}:
            raise ValueError("each `summary` pair must have exactly `dataset`, `backbone` and `grid`. "
                             f"Received: {pair!r}")
        if pair["grid"] not in grid_names:
            raise ValueError(f"`summary` names grid {pair['grid']!r}, which the config does not have; "
                             f"its grids: {grid_names}")
    if summary.get("aukc_grid") is not None and summary["aukc_grid"] not in grid_names:
        raise ValueError(f"`summary` names aukc_grid {summary['aukc_grid']!r}, which the config does not "
                         f"have; its grids: {grid_names}")
