"""What a count budget changes in the vocabularies: exact counts against
budgeted ones on the same file.

    python benchmarks/count_budget.py FILE --max-vocab 20000 --count-budget 100000 [--out JSON]

Both passes use the arrow engine on Criteo's layout (min count 2). Per
field: how many of the exact top `--max-vocab` values the budgeted
vocabulary also has, and the share of the rows whose value is in the exact
vocabulary that the budgeted one maps to its own id too (rows weighted by
exact counts). The vocabularies differ only among values seen about as
often as the floor, so the second figure says what the difference costs.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--max-vocab", type=int, required=True)
    parser.add_argument("--count-budget", type=int, required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from aefs_keras.datasets import arrow_scan
    from aefs_keras.datasets.formats import CRITEO, ReadReport
    from aefs_keras.datasets.preprocess import vocabulary

    def fit(budget):
        approx = {}
        start = time.perf_counter()
        counts, rows = arrow_scan.scan(CRITEO, [args.path], ReadReport([args.path]), False, lambda n, x: None,
                                       min_count=2, max_size=args.max_vocab, count_budget=budget,
                                       approximate=approx)
        return counts, rows, approx, time.perf_counter() - start

    exact, rows, _, t_exact = fit(None)
    budgeted, _, approx, t_budget = fit(args.count_budget)
    fields = {}
    for name, counts in exact.items():
        ex = set(vocabulary(counts, 2, args.max_vocab))
        bu = set(vocabulary(budgeted[name], 2, args.max_vocab))
        weight = sum(counts[v] for v in ex)
        fields[name] = {"exact_size": len(ex), "shared": len(ex & bu),
                        "row_share_kept": sum(counts[v] for v in ex & bu) / weight if weight else 1.0,
                        **approx.get(name, {"floor": 0, "exact_set": True})}
    worst = min(fields.values(), key=lambda f: f["row_share_kept"])
    result = {"path": args.path, "rows": rows, "max_vocab": args.max_vocab, "count_budget": args.count_budget,
              "seconds_exact": t_exact, "seconds_budget": t_budget,
              "fields_approximate": len(approx), "fields_certain": sum(a["exact_set"] for a in approx.values()),
              "min_shared_share": min(f["shared"] / max(f["exact_size"], 1) for f in fields.values()),
              "min_row_share_kept": worst["row_share_kept"], "fields": fields}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "fields"}, indent=1))


if __name__ == "__main__":
    main()
