"""Benchmark results -> CSV, markdown tables, plots and the report.

Every number in the report is computed here from `results.json`; nothing
is typed in by hand. "Within noise" means the difference of two means is
at most twice its standard error (sqrt(sd_a^2/n_a + sd_b^2/n_b)), over
the seeds of each.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import statistics
from typing import Any

LABELS = {
    "none": "none (all fields)",
    "static": "static early (global top-k)",
    "adafs": "AdaFS (late)",
    "mvfs": "MvFS (late)",
    "aefs_adafs": "AEFS (mini-AdaFS)",
    "aefs_mvfs": "AEFS (mini-MvFS)",
    "mixed_dimension": "static mixed-dimension",
}
CSV_COLUMNS = ["grid", "dataset", "backbone", "selection", "k_ratio", "k", "fields", "variant", "seed", "auc",
               "val_auc", "logloss", "epochs", "best_epoch", "activated_embedding_parameters", "train_examples_per_s",
               "serving_examples_per_s", "seconds"]


def _stats(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), sd, len(values)


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean difference a - b, its two-standard-error bound, and whether the
    difference is within it."""
    ma, sa, na = _stats(a)
    mb, sb, nb = _stats(b)
    if na < 2 or nb < 2:
        return {"diff": ma - mb, "bound": float("nan"), "within_noise": None}
    bound = 2.0 * math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    return {"diff": ma - mb, "bound": bound, "within_noise": abs(ma - mb) <= bound}


def saved_runs(folder: str) -> list[dict]:
    """Every run saved in a results folder (results.json and its shards;
    the last file read wins a key), for tables across configs."""
    found: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(folder, "results*.json"))):
        with open(path) as f:
            found.update({r["key"]: r for r in json.load(f)["results"]})
    return list(found.values())


def groups(results) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in results:
        key = (r["grid"], r["dataset"], r["backbone"], r["selection"], r["k_ratio"], r["variant"])
        out.setdefault(key, []).append(r)
    return out


def _none_params(results, grid, dataset, backbone):
    for r in results:
        if (r["dataset"], r["backbone"], r["selection"]) == (dataset, backbone, "none"):
            if r["grid"] == grid:
                return r["activated_embedding_parameters"]
    for r in results:
        if (r["dataset"], r["backbone"], r["selection"]) == (dataset, backbone, "none"):
            return r["activated_embedding_parameters"]
    return None


def _fmt(mean, sd, digits=4):
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def grid_table(results, grid: str) -> str:
    """One row per configuration of `grid`: mean ± sd over seeds."""
    rows = ["| dataset | backbone | method | k ratio (k) | variant | test AUC | log-loss | emb. params / ex "
            "(vs none) | train ex/s | serve ex/s | seeds |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, rs in groups(results).items():
        if key[0] != grid:
            continue
        _, ds, bb, sel, kr, variant = key
        auc = _stats([r["auc"] for r in rs])
        ll = _stats([r["logloss"] for r in rs])
        params = rs[0]["activated_embedding_parameters"]
        base = _none_params(results, grid, ds, bb)
        rel = f" ({params / base:.0%})" if base else ""
        k = "-" if kr is None else f"{kr:g} ({rs[0]['k']})"
        rows.append(
            f"| {ds} | {bb} | {LABELS.get(sel, sel)} | {k} | {variant} | {_fmt(*auc[:2])} | "
            f"{_fmt(*ll[:2])} | {params:,}{rel} | "
            f"{_stats([r['train_examples_per_s'] for r in rs])[0]:,.0f} | "
            f"{_stats([r['serving_examples_per_s'] for r in rs])[0]:,.0f} | {auc[2]} |")
    return "\n".join(rows)


def _aukc_curves(results, grid: str) -> dict[tuple, dict[float, tuple[float, str]]]:
    """{(dataset, backbone, method): {k ratio: (mean test AUC, variant)}}
    for the methods of `grid` with at least two k ratios."""
    curves: dict[tuple, dict[float, tuple[float, str]]] = {}
    if _searched(results, grid) or _fixed_variants(results, grid):
        for (ds, bb, sel, kr), (variant, rs) in validated(results, grid).items():
            if kr is not None:
                curves.setdefault((ds, bb, sel), {})[kr] = (_stats([r["auc"] for r in rs])[0], variant)
    else:
        for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
            if g == grid and kr is not None and variant == "default":
                curves.setdefault((ds, bb, sel), {})[kr] = (_stats([r["auc"] for r in rs])[0], variant)
    return {k: v for k, v in curves.items() if len(v) >= 2}


def _aukc(points: dict[float, tuple[float, str]]) -> float:
    ks = sorted(points)
    area = sum((ks[i + 1] - ks[i]) * (points[ks[i]][0] + points[ks[i + 1]][0]) / 2 for i in range(len(ks) - 1))
    return area / (ks[-1] - ks[0])


def aukc_table(results, grid: str) -> str | None:
    """ERASE's AUKC, normalised: the area under mean test AUC against the
    k ratio divided by the k range (the average AUC over k; trapezoids).
    In a searched grid (or one of named variants fixed beforehand) each k's
    point is the variant chosen on validation at that k (`validated`), else
    the default variant."""
    curves = _aukc_curves(results, grid)
    if not curves:
        return None
    rows = ["| dataset | backbone | method | k ratios | AUKC (mean AUC over k) | variant per k |",
            "|---|---|---|---|---|---|"]
    for (ds, bb, sel), pts in curves.items():
        ks = sorted(pts)
        rows.append(f"| {ds} | {bb} | {LABELS.get(sel, sel)} | {', '.join(f'{k:g}' for k in ks)} | "
                    f"{_aukc(pts):.4f} | {', '.join(pts[k][1] for k in ks)} |")
    return "\n".join(rows)


def _verdict(c) -> str:
    if c["within_noise"] is None:
        return "too few seeds to judge"
    return "within noise" if c["within_noise"] else ("ABOVE" if c["diff"] > 0 else "BELOW")


def summary_section(results, summary: dict) -> list[str]:
    """The config's `summary`: for each listed (dataset, backbone) the
    verdict of AEFS (mini-AdaFS) at k = F/2 against no selection, each at
    its validated best in the grid named for that pair, and AEFS's AUKC
    against the static top-k's in `aukc_grid`. Lines of markdown; a pair
    whose runs are missing says so."""
    k_ratio = float(summary.get("k_ratio", 0.5))
    lines = ["| dataset | backbone | grid | none: variant, test AUC | AEFS: variant, test AUC | "
             "AEFS minus none (2 SE) | verdict | seeds (none, AEFS) |", "|---|---|---|---|---|---|---|---|"]
    met, missed, missing = 0, [], []
    for pair in summary.get("pairs", []):
        ds, bb, grid = pair["dataset"], pair["backbone"], pair["grid"]
        chosen = validated(results, grid)
        none, aefs = chosen.get((ds, bb, "none", None)), chosen.get((ds, bb, "aefs_adafs", k_ratio))
        if none is None or aefs is None:
            missing.append(f"{ds} {bb} ({grid})")
            continue
        a, b = [r["auc"] for r in aefs[1]], [r["auc"] for r in none[1]]
        c = compare(a, b)
        verdict = _verdict(c)
        if verdict in ("within noise", "ABOVE"):
            met += 1
        else:
            missed.append(f"{ds} {bb} {c['diff']:+.4f} (2 SE {c['bound']:.4f})")
        lines.append(f"| {ds} | {bb} | `{grid}` | {none[0]}, {_fmt(*_stats(b)[:2])} | {aefs[0]}, "
                     f"{_fmt(*_stats(a)[:2])} | {c['diff']:+.4f} ({c['bound']:.4f}) | {verdict} | "
                     f"{len(b)}, {len(a)} |")
    total = met + len(missed)
    lines += ["", f"AEFS is within two standard errors of no selection or above it on {met} of {total} pairs"
              + (f"; below it on {'; '.join(missed)}." if missed else ".")]
    if missing:
        lines.append(f"No runs yet for: {', '.join(missing)}.")
    aukc_grid = summary.get("aukc_grid")
    if aukc_grid:
        curves = _aukc_curves(results, aukc_grid)
        parts = []
        for (ds, bb, sel), pts in curves.items():
            static = curves.get((ds, bb, "static"))
            if sel != "aefs_adafs" or static is None:
                continue
            ours, theirs = _aukc(pts), _aukc(static)
            parts.append(f"{ds} ({bb}) {ours:.4f} against {theirs:.4f}: "
                         + ("at least the static top-k's" if ours >= theirs else "BELOW the static top-k's"))
        if parts:
            lines += ["", f"AEFS's AUKC over k (grid `{aukc_grid}`, each k at its validated best): "
                      + "; ".join(parts) + "."]
    for grid in summary.get("methods_grids", []):
        lines += [""] + methods_against_none(results, grid)
    if summary.get("note"):
        lines += ["", str(summary["note"]).strip()]
    return lines


def methods_against_none(results, grid: str) -> list[str]:
    """Every method of `grid` at its validated best against no selection at
    its validated best in the same grid (same seeds), per (dataset,
    backbone): test AUC, the difference (2 SE), the verdict, and embedding
    values read per example. Lines of markdown."""
    chosen = validated(results, grid)
    lines = [f"Each method against no selection in grid `{grid}` (each at its validated best; same seeds):", "",
             "| dataset | backbone | method: variant | test AUC | minus none (2 SE) | verdict | emb. values / ex "
             "(none) | seeds |", "|---|---|---|---|---|---|---|---|"]
    for (ds, bb, sel, kr), (variant, rs) in sorted(chosen.items(), key=lambda kv: tuple(map(str, kv[0]))):
        none = chosen.get((ds, bb, "none", None))
        if sel == "none" or none is None:
            continue
        a, b = [r["auc"] for r in rs], [r["auc"] for r in none[1]]
        c = compare(a, b)
        lines.append(f"| {ds} | {bb} | {LABELS.get(sel, sel)}: {variant} | {_fmt(*_stats(a)[:2])} | "
                     f"{c['diff']:+.4f} ({c['bound']:.4f}) | {_verdict(c)} | "
                     f"{rs[0]['activated_embedding_parameters']:,} ({none[1][0]['activated_embedding_parameters']:,}) | "
                     f"{len(a)} |")
    return lines


def verdicts(results, grid: str, k_ratio: float = 0.5) -> list[str]:
    """AEFS (mini-AdaFS) at `k_ratio` against AdaFS (late), the static top-k
    and no selection, per dataset and backbone of `grid`: AUC within noise, and the cut in
    activated embedding parameters per example (target: at least 35 %)."""
    lines = []
    g = groups(results)
    for (gr, ds, bb, sel, kr, variant), rs in g.items():
        if gr != grid or sel != "aefs_adafs" or kr != k_ratio or variant != "default":
            continue
        aefs = [r["auc"] for r in rs]
        parts = []
        for other, okr in (("adafs", k_ratio), ("static", k_ratio), ("none", None)):
            ors = g.get((gr, ds, bb, other, okr, "default"))
            if not ors:
                continue
            c = compare(aefs, [r["auc"] for r in ors])
            parts.append(f"vs {LABELS[other]} {c['diff']:+.4f} (2 SE {c['bound']:.4f}): {_verdict(c)}")
        base = _none_params(results, gr, ds, bb)
        if base:  # a grid without a no-selection run has nothing to compare with
            cut = 1 - rs[0]["activated_embedding_parameters"] / base
            parts.append(f"activated embedding parameters {cut:.1%} fewer than none "
                         f"({'meets' if cut >= 0.35 else 'MISSES'} the 35 % target)")
        if not parts:
            continue
        lines.append(f"- **{ds}**, {bb}, k = {k_ratio:g}: AEFS " + "; ".join(parts) + ".")
    return lines


def headline_table(results, grid: str, k_ratio: float = 0.5) -> str | None:
    """Per dataset of `grid`: each method at `k_ratio` (and none), mean ±
    sd test AUC, activated embedding parameters against none, throughput."""
    rows = ["| dataset | method | test AUC | emb. params / ex (vs none) | train ex/s | serve ex/s | seeds |",
            "|---|---|---|---|---|---|---|"]
    found = False
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        if g != grid or variant != "default" or kr not in (None, k_ratio):
            continue
        found = True
        auc = _stats([r["auc"] for r in rs])
        params = rs[0]["activated_embedding_parameters"]
        base = _none_params(results, g, ds, bb)
        rel = f" ({params / base - 1:+.0%})" if base else ""
        rows.append(f"| {ds} ({bb}) | {LABELS.get(sel, sel)} | {_fmt(*auc[:2])} | {params:,}{rel} | "
                    f"{_stats([r['train_examples_per_s'] for r in rs])[0]:,.0f} | "
                    f"{_stats([r['serving_examples_per_s'] for r in rs])[0]:,.0f} | {auc[2]} |")
    return "\n".join(rows) if found else None


def variant_lines(results, grid: str) -> list[str]:
    """Each non-default variant of `grid` against the default variant of
    the same dataset, backbone, method and k (difference of mean AUC)."""
    g = groups(results)
    lines = []
    for (gr, ds, bb, sel, kr, variant), rs in g.items():
        base = g.get((gr, ds, bb, sel, kr, "default"))
        if gr != grid or variant == "default" or not base:
            continue
        c = compare([r["auc"] for r in rs], [r["auc"] for r in base])
        verdict = ("too few seeds to judge" if c["within_noise"] is None else
                   "within noise" if c["within_noise"] else ("ABOVE" if c["diff"] > 0 else "BELOW"))
        lines.append(f"- {ds}, {bb}, {LABELS.get(sel, sel)}, k = {kr:g}, **{variant}**: {c['diff']:+.4f} "
                     f"AUC against the default (2 SE {c['bound']:.4f}): {verdict}; "
                     f"{rs[0]['activated_embedding_parameters']:,} against "
                     f"{base[0]['activated_embedding_parameters']:,} embedding values per example.")
    return lines


def machines_line(payload, results) -> str:
    """The machine of each grid's runs (runs recorded before runs carried
    their machine count as the results file's last machine)."""
    per_grid: dict[str, dict[str, None]] = {}
    for r in results:
        per_grid.setdefault(r["grid"], {})[r.get("machine") or payload["machine"]] = None
    machines = list(dict.fromkeys(m for ms in per_grid.values() for m in ms))
    if len(machines) <= 1:
        return f"Machine: {machines[0] if machines else payload['machine']}."
    return "Machines (compare throughput within one): " + "; ".join(
        f"grid `{g}`: " + " and ".join(ms) for g, ms in per_grid.items()) + "."


def validated(results, grid: str) -> dict[tuple, tuple[str, list[dict]]]:
    """Per (dataset, backbone, method, k) of `grid`: the variant with the
    highest mean validation AUC over its seeds, and its runs. The test
    split plays no part in the choice."""
    best: dict[tuple, tuple[float, str, list[dict]]] = {}
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        val = _stats([r.get("val_auc") for r in rs])[0]
        if g != grid or math.isnan(val):
            continue
        key = (ds, bb, sel, kr)
        if key not in best or val > best[key][0]:
            best[key] = (val, variant, rs)
    return {key: (variant, rs) for key, (_, variant, rs) in best.items()}


def _searched(results, grid) -> bool:
    """True when some method of `grid` ran more than one variant."""
    seen: dict[tuple, set] = {}
    for r in results:
        if r["grid"] == grid:
            seen.setdefault((r["dataset"], r["backbone"], r["selection"], r["k_ratio"]), set()).add(r["variant"])
    return any(len(v) > 1 for v in seen.values())


def _fixed_variants(results, grid) -> bool:
    """True when every method of `grid` ran one variant and some are named
    (not "default"): a confirmation of variants chosen elsewhere."""
    variants = {r["variant"] for r in results if r["grid"] == grid}
    return bool(variants) and variants != {"default"} and not _searched(results, grid)


def validated_table(results, grid: str) -> str | None:
    """Each method at its validated best: the chosen variant and its
    settings, its validation and test AUC, and the other variants'
    validation AUC."""
    chosen = validated(results, grid)
    if not chosen or not _searched(results, grid):
        return None
    g = groups(results)
    rows = ["| dataset | backbone | method | k ratio (k) | chosen variant (settings) | val AUC | test AUC | "
            "other variants: val AUC | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for (ds, bb, sel, kr), (variant, rs) in chosen.items():
        others = [f"{v} {_stats([r.get('val_auc') for r in ors])[0]:.4f}"
                  for (gr, d2, b2, s2, k2, v), ors in g.items()
                  if (gr, d2, b2, s2, k2) == (grid, ds, bb, sel, kr) and v != variant]
        settings = ", ".join(f"{k}={v}" for k, v in sorted(rs[0].get("overrides", {}).items())) or "defaults"
        k = "-" if kr is None else f"{kr:g} ({rs[0]['k']})"
        auc = _stats([r["auc"] for r in rs])
        rows.append(f"| {ds} | {bb} | {LABELS.get(sel, sel)} | {k} | {variant} ({settings}) | "
                    f"{_stats([r['val_auc'] for r in rs])[0]:.4f} | {_fmt(*auc[:2])} | "
                    f"{'; '.join(others) or '-'} | {auc[2]} |")
    return "\n".join(rows)


def validated_verdicts(results, grid: str, k_ratio: float = 0.5) -> list[str]:
    """AEFS (mini-AdaFS) at its validated best against every other method
    at its validated best, per dataset and backbone (test AUC, 2 SE)."""
    chosen = validated(results, grid)
    lines = []
    for (ds, bb, sel, kr), (variant, rs) in chosen.items():
        if sel != "aefs_adafs" or kr != k_ratio:
            continue
        parts = []
        for (d2, b2, s2, k2), (v2, ors) in chosen.items():
            if (d2, b2) != (ds, bb) or s2 == sel or k2 not in (None, k_ratio):
                continue
            c = compare([r["auc"] for r in rs], [r["auc"] for r in ors])
            parts.append(f"vs {LABELS.get(s2, s2)} ({v2}) {c['diff']:+.4f} (2 SE {c['bound']:.4f}): {_verdict(c)}")
        if parts:
            lines.append(f"- **{ds}**, {bb}, k = {k_ratio:g}: AEFS ({variant}) " + "; ".join(parts) + ".")
    return lines


def _machine_label(rs) -> str:
    """The CPU name of the runs' machine ("mixed" when they ran on several)."""
    names = {str(r.get("machine", "unknown")).split(",")[0] for r in rs}
    return names.pop() if len(names) == 1 else "mixed"


def _frontier_points(results, grid):
    """{(dataset, backbone): [(method, k ratio, mean AUC, embedding values,
    train ex/s, serve ex/s, machine)]} over `grid`'s default variants."""
    out: dict[tuple, list] = {}
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        if g == grid and variant == "default":
            out.setdefault((ds, bb), []).append((
                sel, kr, _stats([r["auc"] for r in rs])[0], rs[0]["activated_embedding_parameters"],
                _stats([r["train_examples_per_s"] for r in rs])[0],
                _stats([r["serving_examples_per_s"] for r in rs])[0], _machine_label(rs)))
    return out


def _on_frontier(point, points, cost, same_machine=False) -> bool:
    """No other point has at least its AUC at no more cost, and one of the
    two strictly better. With `same_machine` (time costs) only points timed
    on the same machine compete: throughput is not comparable across
    machines."""
    auc, c = point[2], cost(point)
    return not any(q is not point and q[2] >= auc and cost(q) <= c and (q[2] > auc or cost(q) < c)
                   and (not same_machine or q[6] == point[6]) for q in points)


def frontier_table(results, grid: str) -> str | None:
    """Test AUC against cost for every method and k of `grid`: embedding
    values read per example, and training and serving time (1 / examples
    per s); a mark where the point is on the AUC-cost frontier."""
    data = _frontier_points(results, grid)
    if not data or all(len(v) < 2 for v in data.values()):
        return None
    costs = {"values": lambda q: q[3], "train": lambda q: 1 / q[4], "serve": lambda q: 1 / q[5]}
    machines = len({q[6] for points in data.values() for q in points}) > 1
    rows = ["| dataset | backbone | method | k ratio | test AUC | emb. values / ex | train ex/s | serve ex/s | "
            + ("machine (times compared within it) | " if machines else "")
            + "on the frontier of AUC against |", "|---|---|---|---|---|---|---|---|" + ("---|" if machines else "")
            + "---|"]
    for (ds, bb), points in data.items():
        for q in sorted(points, key=lambda q: (q[3], -q[2])):
            marks = [name for name, cost in costs.items() if _on_frontier(q, points, cost, name != "values")]
            rows.append(f"| {ds} | {bb} | {LABELS.get(q[0], q[0])} | {'-' if q[1] is None else f'{q[1]:g}'} | "
                        f"{q[2]:.4f} | {q[3]:,} | {q[4]:,.0f} | {q[5]:,.0f} | " + (f"{q[6]} | " if machines else "")
                        + f"{', '.join(marks) or '-'} |")
    return "\n".join(rows)


def plot_frontier(results, grid, path) -> bool:
    """Test AUC against embedding values read and against serving time,
    one panel pair per dataset of `grid` (DeepFM or the first backbone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _frontier_points(results, grid)
    if not data or all(len(v) < 2 for v in data.values()):
        return False
    fig, axes = plt.subplots(2, len(data), figsize=(4.2 * len(data), 6.6), squeeze=False)
    for col, ((ds, bb), points) in enumerate(data.items()):
        for row, (xlabel, cost) in enumerate((("embedding values read per example", lambda q: q[3]),
                                              ("serving ms per 1,000 examples", lambda q: 1e6 / q[5]))):
            ax = axes[row][col]
            for sel in dict.fromkeys(q[0] for q in points):
                mine = sorted((q for q in points if q[0] == sel), key=cost)
                ax.plot([cost(q) for q in mine], [q[2] for q in mine], marker="o", label=LABELS.get(sel, sel))
            if row == 0 or len({q[6] for q in points}) == 1:  # times: one machine, or no frontier line
                front = sorted((q for q in points if _on_frontier(q, points, cost)), key=cost)
                ax.plot([cost(q) for q in front], [q[2] for q in front], color="black", lw=2, alpha=0.25,
                        label="frontier")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{ds} ({bb})")
        axes[0][col].set_ylabel("test AUC (mean over seeds)")
        axes[1][col].set_ylabel("test AUC (mean over seeds)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_csv(results, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow(r)


def _methods_by_k(results, grid):
    """{dataset: {(backbone, selection): {k: [records]}}} for default variants."""
    out: dict[str, dict] = {}
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        if g == grid and variant == "default":
            out.setdefault(ds, {}).setdefault((bb, sel), {})[kr] = rs
    return out


def _k_curves(results, grid):
    """`_methods_by_k` restricted to datasets with a curve of two k or more."""
    data = _methods_by_k(results, grid)
    return {ds: m for ds, m in data.items() if any(len([k for k in c if k is not None]) >= 2 for c in m.values())}


def plot_auc_vs_k(results, grid, path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _k_curves(results, grid)
    if not data:
        return False
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.6), squeeze=False)
    for ax, (ds, methods) in zip(axes[0], data.items()):
        ks_all = sorted({k for c in methods.values() for k in c if k is not None})
        for (bb, sel), curve in methods.items():
            if sel == "none":
                m, s, _ = _stats([r["auc"] for r in curve[None]])
                ax.axhline(m, color="black", lw=1, label=LABELS[sel])
                if not math.isnan(s):
                    ax.axhspan(m - s, m + s, color="black", alpha=0.08)
                continue
            ks = sorted(k for k in curve if k is not None)
            st = [_stats([r["auc"] for r in curve[k]]) for k in ks]
            ax.errorbar(ks, [x[0] for x in st], yerr=[0 if math.isnan(x[1]) else x[1] for x in st],
                        marker="o", capsize=3, label=LABELS.get(sel, sel))
        ax.set_title(ds)
        ax.set_xlabel("k / F")
        ax.set_xticks(ks_all)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test AUC (mean ± sd over seeds)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_throughput_vs_k(results, grid, path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _k_curves(results, grid)
    if not data:
        return False
    fig, axes = plt.subplots(2, len(data), figsize=(4.2 * len(data), 6.4), squeeze=False)
    for col, (ds, methods) in enumerate(data.items()):
        for row, (metric, title) in enumerate((("train_examples_per_s", "training ex/s"),
                                               ("serving_examples_per_s", "serving ex/s (batch 512)"))):
            ax = axes[row][col]
            for (bb, sel), curve in methods.items():
                if sel == "none":
                    ax.axhline(_stats([r[metric] for r in curve[None]])[0], color="black", lw=1,
                               label=LABELS[sel])
                    continue
                ks = sorted(k for k in curve if k is not None)
                ax.plot(ks, [_stats([r[metric] for r in curve[k]])[0] for k in ks], marker="o",
                        label=LABELS.get(sel, sel))
            ax.set_title(f"{ds}: {title}", fontsize=9)
            ax.set_xlabel("k / F")
            ax.grid(alpha=0.3)
            ax.set_ylim(bottom=0)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_selection_heatmap(results, grid, dataset, field_names, informative, path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, labels = [], []
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        if g != grid or ds != dataset or variant != "default" or kr is None:
            continue
        freqs = [r["selection_frequency"] for r in rs if r.get("selection_frequency")]
        if freqs:
            rows.append(np.mean(freqs, axis=0))
            labels.append(f"{LABELS.get(sel, sel)}, k={kr:g}" + (f" [{bb}]" if bb != "deepfm" else ""))
    if not rows:
        return False
    mat = np.array(rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * mat.shape[1] + 3), 0.34 * len(rows) + 1.6))
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    names = [n + (" *" if informative and n in informative else "") for n in field_names]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    title = f"{dataset}: share of test rows keeping each field (mean over seeds)"
    if informative:
        title += "; * = planted informative"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def planted_check(results, grid, dataset, field_names, informative) -> list[str]:
    """On data with planted fields: for each selecting method, k and variant,
    how many informative fields were kept more often than every noise field
    (selection shares averaged over seeds), and in how many seeds every
    informative field was."""
    lines = []
    for (g, ds, bb, sel, kr, variant), rs in groups(results).items():
        if g != grid or ds != dataset or kr is None:
            continue
        freqs = [r["selection_frequency"] for r in rs if r.get("selection_frequency")]
        if not freqs:
            continue

        def split(freq):
            inf = [freq[field_names.index(n)] for n in informative]
            return inf, [m for n, m in zip(field_names, freq) if n not in informative]

        inf, noise = split([statistics.fmean(col) for col in zip(*freqs)])
        above = sum(x > max(noise) for x in inf)
        most = sum(x >= 0.5 for x in inf)
        every = sum(min(i) > max(n) for i, n in map(split, freqs))
        label = LABELS.get(sel, sel) + ("" if variant == "default" else f" [{variant}]")
        lines.append(f"- {label}, k = {kr:g}: {above} of {len(inf)} informative fields kept more "
                     f"often than every noise field, {most} of {len(inf)} kept on at least half of the rows "
                     f"(informative mean {statistics.fmean(inf):.2f}, min {min(inf):.2f}; "
                     f"noise mean {statistics.fmean(noise):.2f}, max {max(noise):.2f}); every informative "
                     f"field above every noise field in {every} of {len(freqs)} seeds.")
    return lines


def write_report(payload: dict[str, Any], out_dir: str, report_path: str, command: str) -> str:
    """Writes results.csv, tables.md, the PNG plots into `out_dir` and the
    markdown report to `report_path`; returns the report's text."""
    results = payload["results"]
    os.makedirs(out_dir, exist_ok=True)
    write_csv(results, os.path.join(out_dir, "results.csv"))
    report_dir = os.path.dirname(os.path.abspath(report_path))

    def rel(p):
        return os.path.relpath(os.path.abspath(p), report_dir)

    grids = list(dict.fromkeys(r["grid"] for r in results))
    s = payload["settings"]
    parts = [
        f"# Benchmark results: {payload['config']}",
        "",
        "Generated by the command below from `results.json`; every figure on this page comes from that "
        "file, rerun the command to reproduce it (finished runs are reused unless `--fresh`).",
        "",
        f"    {command}",
        "",
        machines_line(payload, results),
        "",
        f"Setup: batch {s['batch_size']}, Adam lr {s['learning_rate']}, main embedding width {s['d_main']}, "
        f"backbone MLP {s['hidden_units']} with dropout {s['dropout']}, at most {s['max_epochs']} epochs with "
        f"early stopping on validation AUC (patience {s['patience']}, best weights restored); AEFS auxiliary "
        "width 4 unless a variant says otherwise. Test AUC is exact (rank formula) and log-loss is computed "
        "from the served sub-graph's probabilities on the held-out split. Splits are fixed "
        "(criteo_80k: time order 70/10/20; census_kdd and frappe: seeded random 70/10/20, split seed 0; "
        f"synthetic: {s['synthetic_rows']:,} i.i.d. rows, data seed {s['synthetic_seed']}, 80/10/10); a run's "
        "seed changes initialisation, dropout and shuffling, so the spread (± one standard deviation over "
        "seeds) is training noise. Static early selection keeps the k fields whose shuffling costs a "
        f"no-selection model (trained {s['static_search_epochs']} epochs) the most validation AUC, then "
        "retrains on those fields only. Throughput: training examples/s over the epochs after the first "
        "(validation excluded); serving examples/s of the inference graph at batch "
        f"{s['serving_batch']} (median of 30 calls)."
        + (f" Training rows capped at {s['max_train_rows']:,} per dataset." if s.get("max_train_rows") else ""),
        "",
    ]
    if payload.get("notes"):
        parts += [payload["notes"].strip(), ""]
    if payload.get("summary"):
        parts += ["## Summary: AEFS at k = F/2 against no selection, each at its validated best", "",
                  "For each (dataset, backbone), the grid named in the config's `summary` (the widest search "
                  "and the most seeds for that pair); the variants were chosen on validation AUC, the test "
                  "split played no part.", ""] + summary_section(results, payload["summary"]) + [""]
    headline = headline_table(results, grids[0]) if grids else None
    if headline:
        parts += ["## Headline: k = F/2", "", headline, ""]
        with open(os.path.join(out_dir, "headline.md"), "w") as f:
            f.write(headline + "\n")
    for grid in grids:
        parts += [f"## Grid `{grid}`", ""]
        vt = validated_table(results, grid)
        if vt:
            parts += ["Each method at its validated best: the variant (settings) with the highest mean "
                      "validation AUC over its seeds; the test split plays no part in the choice.", "", vt, ""]
            parts += ["AEFS at its validated best against each method at its own (difference of mean test "
                      "AUC; within noise = at most two standard errors):", ""] + \
                validated_verdicts(results, grid) + [""]
        elif _fixed_variants(results, grid):
            parts += ["Each method ran one variant, fixed before these runs (the grid's comment in the config "
                      "says how); AEFS against each method (difference of mean test AUC; within noise = at "
                      "most two standard errors):", ""] + validated_verdicts(results, grid) + [""]
        v = verdicts(results, grid)
        if v:
            parts += ["AEFS at k = 0.5 against the baselines (difference of mean test AUC; "
                      "within noise = at most two standard errors):", ""] + v + [""]
        vl = variant_lines(results, grid)
        if vl:
            parts += ["Variants against the default configuration (difference of mean test AUC):", ""] + vl + [""]
        parts += [grid_table(results, grid), ""]
        a = aukc_table(results, grid)
        if a:
            parts += ["AUKC (ERASE's area under the AUC-versus-k curve, divided by the k range):", "", a, ""]
        auc_png = os.path.join(out_dir, f"{grid}_auc_vs_k.png")
        if plot_auc_vs_k(results, grid, auc_png):
            parts += [f"![test AUC against k]({rel(auc_png)})", ""]
        ft = frontier_table(results, grid)
        if ft:
            parts += ["AUC against cost (default variants; throughput measured with two runs side by side, so "
                      "compare within this table):", "", ft, ""]
            fr_png = os.path.join(out_dir, f"{grid}_frontier.png")
            if plot_frontier(results, grid, fr_png):
                parts += [f"![test AUC against cost]({rel(fr_png)})", ""]
        tp_png = os.path.join(out_dir, f"{grid}_throughput_vs_k.png")
        if plot_throughput_vs_k(results, grid, tp_png):
            parts += [f"![throughput against k]({rel(tp_png)})", ""]
        for ds in dict.fromkeys(r["dataset"] for r in results if r["grid"] == grid):
            names = payload["field_names"].get(ds)
            informative = payload.get("informative_fields", {}).get(ds)
            png = os.path.join(out_dir, f"{grid}_selection_{ds}.png")
            if names and plot_selection_heatmap(results, grid, ds, names, informative, png):
                parts += [f"![{ds} selection frequency]({rel(png)})", ""]
                if informative:
                    parts += [f"Planted fields on {ds}:", ""] + planted_check(results, grid, ds, names,
                                                                             informative) + [""]
    peer = payload.get("peer")
    if peer:
        parts += ["## Peer check: DeepCTR's DeepFM on the same split", "",
                  "Same integer ids, same configuration as the grid (embedding 32, MLP 64-32, dropout 0.2, "
                  "Adam 1e-3, batch 1024, early stopping on validation AUC); DeepCTR 0.9.4 under tf-keras in "
                  f"its own environment; machine: {peer['machine']}.", "", peer["table"], ""]
    text = "\n".join(parts)
    with open(os.path.join(out_dir, "tables.md"), "w") as f:
        f.write("\n\n".join(grid_table(results, g) for g in grids) + "\n")
    os.makedirs(report_dir, exist_ok=True)
    with open(report_path, "w") as f:
        f.write(text)
    return text
