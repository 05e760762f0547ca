"""Static early selection and AEFS with most of k fixed, against no selection, on the backbones where
AEFS loses the most (criteo_80k, k = F/2), and the mixed form on census_kdd at one learning rate.

    aefs-keras bench benchmarks/configs/cross_backbones.yaml --jobs 2   # static and the AEFS variants
    aefs-keras bench benchmarks/configs/results.yaml --jobs 2           # no selection and AEFS, searched
    python benchmarks/cross_backbones_table.py

No selection, AEFS as it was (our form and the paper's) and AEFS at mixed resolution come from
results.yaml's grid `fair_backbones` (the same settings and seeds), each at the learning rate / form
with the best mean validation AUC; static early selection likewise from its two learning rates.
Differences are of mean test AUC, with two standard errors (`aefs_keras.bench.report.compare`).
"""

import statistics

from aefs_keras.bench import report


def _runs(folder):
    return report.saved_runs(f"benchmarks/results/{folder}")


def _fmt(rs):
    aucs = [r["auc"] for r in rs]
    return f"{statistics.mean(aucs):.4f} ± {statistics.stdev(aucs):.4f}" if len(aucs) > 1 else "-"


def _diff(a, b):
    if len(a) < 2 or len(b) < 2:
        return "-"
    c = report.compare([r["auc"] for r in a], [r["auc"] for r in b])
    return f"{c['diff']:+.4f} ({c['bound']:.4f})"


def main():
    runs = _runs("results")
    base = report.validated([r for r in runs if not r["variant"].startswith("mixed")], "fair_backbones")
    mixed_best = report.validated([r for r in runs if r["variant"].startswith("mixed")], "fair_backbones")
    cross = _runs("cross_backbones")
    static = report.validated(cross, "static")
    variants = sorted({r["variant"] for r in cross if r["grid"] == "keep"})
    print("| backbone | method (variant) | test AUC | val AUC | - none (2 SE) | - static (2 SE) |")
    print("|---|---|---|---|---|---|")
    for bb in ("dcn", "wide_deep", "mlcc"):
        none = base.get(("criteo_80k", bb, "none", None))
        stat = static.get(("criteo_80k", bb, "static", 0.5))
        rows = [("none", none), ("AEFS", base.get(("criteo_80k", bb, "aefs_adafs", 0.5))), ("static", stat),
                ("AEFS mixed, validated", mixed_best.get(("criteo_80k", bb, "aefs_adafs", 0.5)))]
        rows += [("AEFS", (v, [r for r in cross if r["grid"] == "keep" and r["backbone"] == bb
                               and r["variant"] == v])) for v in variants]
        for name, found in rows:
            if not found or not found[1]:
                continue
            variant, rs = found
            val = statistics.mean(r["val_auc"] for r in rs)
            print(f"| {bb} | {name} ({variant}) | {_fmt(rs)} | {val:.4f} | "
                  f"{_diff(rs, none[1]) if none and name != 'none' else '-'} | "
                  f"{_diff(rs, stat[1]) if stat and name not in ('none', 'static') else '-'} |")

    # census_kdd at one learning rate (1e-3): no selection and AEFS from results.yaml's grid `backbones`.
    census = [r for r in cross if r["grid"] == "census"]
    if census:
        print("\n| census_kdd, lr 1e-3 | none | AEFS | mixed resolution | AEFS - none (2 SE) | mixed - none (2 SE) |")
        print("|---|---|---|---|---|---|")
        for bb in ("dcn", "wide_deep", "mlcc"):
            pick = {sel: [r for r in runs if (r["grid"], r["dataset"], r["backbone"], r["selection"])
                          == ("backbones", "census_kdd", bb, sel)] for sel in ("none", "aefs_adafs")}
            mixed = [r for r in census if r["backbone"] == bb]
            print(f"| {bb} | {_fmt(pick['none'])} | {_fmt(pick['aefs_adafs'])} | {_fmt(mixed)} | "
                  f"{_diff(pick['aefs_adafs'], pick['none'])} | {_diff(mixed, pick['none'])} |")


if __name__ == "__main__":
    main()
