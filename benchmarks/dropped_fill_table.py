"""The dropped-field fill against zeros and against no selection (criteo_80k, k = F/2).

    aefs-keras bench benchmarks/configs/dropped_fill.yaml --jobs 2   # the AEFS variants
    aefs-keras bench benchmarks/configs/results.yaml --jobs 2        # no selection, same settings and seeds
    python benchmarks/dropped_fill_table.py

No selection at learning rate 1e-3 is read from results.yaml's grids
(`fair` for DeepFM, `backbones` for the others): the same settings and
seeds as the AEFS runs. Differences are of mean test AUC with two standard
errors (`aefs_keras.bench.report.compare`).
"""

import statistics

from aefs_keras.bench import report

VARIANTS = ("default", "learned_fill", "aux_fill")


def _runs(folder):
    return report.saved_runs(f"benchmarks/results/{folder}")


def _fmt(aucs):
    return f"{statistics.mean(aucs):.4f} ± {statistics.stdev(aucs):.4f}" if len(aucs) > 1 else "-"


def _diff(a, b):
    if len(a) < 2 or len(b) < 2:
        return "-"
    c = report.compare(a, b)
    return f"{c['diff']:+.4f} ({c['bound']:.4f})"


def main():
    fill, base = _runs("dropped_fill"), _runs("results")
    print("| backbone | none | AEFS (zeros) | learned fill | fill from aux | learned - zeros (2 SE) | "
          "aux - zeros (2 SE) | aux - none (2 SE) |")
    print("|---|---|---|---|---|---|---|---|")
    for bb in ("deepfm", "dcn", "wide_deep", "mlcc"):
        grid, variant = ("fair", "lr_1e-3") if bb == "deepfm" else ("backbones", "default")
        none = [r["auc"] for r in base if (r["grid"], r["dataset"], r["backbone"], r["selection"], r["variant"])
                == (grid, "criteo_80k", bb, "none", variant)]
        v = {name: [r["auc"] for r in fill if r["backbone"] == bb and r["variant"] == name] for name in VARIANTS}
        print(f"| {bb} | {_fmt(none)} | {_fmt(v['default'])} | {_fmt(v['learned_fill'])} | "
              f"{_fmt(v['aux_fill'])} | {_diff(v['learned_fill'], v['default'])} | "
              f"{_diff(v['aux_fill'], v['default'])} | {_diff(v['aux_fill'], none)} |")


if __name__ == "__main__":
    main()
