"""AEFS at mixed resolution: fixed fields ranked inside the one fit against
ranked first by a separate no-selection model (issue 34's measurement).

    python benchmarks/in_fit_ranking.py [--results benchmarks/results/results]

Reads the runs of `aefs-keras bench benchmarks/configs/results.yaml`:
grid `default_aefs` (the default `ak.AEFS()`: `RankFields`, the model's own
permutation importance on validation rows after epoch 1) against the same
form whose fields a no-selection model trained 2 epochs ranked first
(DeepFM: `fair_linear`'s `mixed_linear_all_lr_1e-3`; DCN: `fair_backbones`'s
and `fair_backbones_census`'s `mixed_lr_1e-3`), and no selection, all at
learning rate 1e-3, seeds 0-2. Prints a markdown table of test AUC (mean ±
sd) and the differences with two standard errors.
"""

import argparse
import sys

from aefs_keras.bench.report import _fmt, _stats, compare, saved_runs

PERMUTATION = {"deepfm": (("fair_linear",), "mixed_linear_all_lr_1e-3"),
               "dcn": (("fair_backbones", "fair_backbones_census"), "mixed_lr_1e-3")}


def _runs(results, grids, dataset, backbone, selection, variant):
    return sorted((r for r in results if r["grid"] in grids and r["dataset"] == dataset and r["backbone"] == backbone
                   and r["selection"] == selection and r["variant"] == variant), key=lambda r: r["seed"])


def table(results) -> list[str]:
    lines = ["| dataset | backbone | none (lr 1e-3) | AEFS, ranked in fit | AEFS, ranked first | in fit minus "
             "ranked first (2 SE) | in fit minus none (2 SE) | seeds |", "|---|---|---|---|---|---|---|---|"]
    for dataset in ("criteo_80k", "census_kdd", "frappe"):
        for backbone, (grids, variant) in PERMUTATION.items():
            in_fit = _runs(results, ("default_aefs",), dataset, backbone, "aefs_adafs", "default_mixed_in_fit_lr_1e-3")
            first = _runs(results, grids, dataset, backbone, "aefs_adafs", variant)
            none = _runs(results, ("default_aefs",), dataset, backbone, "none", "lr_1e-3")
            if not (in_fit and first and none):
                lines.append(f"| {dataset} | {backbone} | runs missing | | | | | |")
                continue
            a, b, c = ([r["auc"] for r in rs] for rs in (in_fit, first, none))
            d1, d2 = compare(a, b), compare(a, c)
            lines.append(f"| {dataset} | {backbone} | {_fmt(*_stats(c)[:2])} | {_fmt(*_stats(a)[:2])} | "
                         f"{_fmt(*_stats(b)[:2])} | {d1['diff']:+.4f} ({d1['bound']:.4f}) | "
                         f"{d2['diff']:+.4f} ({d2['bound']:.4f}) | {len(a)}, {len(b)}, {len(c)} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="benchmarks/results/results")
    args = parser.parse_args(argv)
    print("\n".join(table(saved_runs(args.results))))


if __name__ == "__main__":
    sys.exit(main())
