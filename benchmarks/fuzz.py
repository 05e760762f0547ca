"""The long fuzzing run: every surface of tests/test_fuzz.py with N cases.

    python benchmarks/fuzz.py --cases 10000 --jobs 2 --out benchmarks/results/fuzz.json

Runs each property of tests/test_fuzz.py in its own pytest process with
`AEFS_FUZZ_CASES=N` and fresh random inputs (`AEFS_FUZZ_RANDOM=1`, shrinking
on, so a failure is reported at its smallest), `--jobs` processes side by
side, and reports per surface the cases tried (hypothesis' passing plus
failing examples), the failures found and the time taken. The table in
docs/reliability.md comes from the JSON it writes. A surface that fails
prints its smallest failing case; each failure found becomes a regression
test in tests/ (docs/reliability.md lists them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests", "test_fuzz.py")


def surfaces():
    """The property names in tests/test_fuzz.py, in file order."""
    with open(TESTS) as f:
        return re.findall(r"^def (test_\w+)\(", f.read(), flags=re.M)


def run(name, cases, seed_env):
    env = {**os.environ, "AEFS_FUZZ_CASES": str(cases), "AEFS_FUZZ_SHRINK": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           **seed_env}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--hypothesis-show-statistics", f"{TESTS}::{name}"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    passing = sum(int(n) for n in re.findall(r"(\d+) passing", text))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing", text))
    return {"surface": name, "cases": passing + failing, "passing": passing, "failing": failing,
            "failed": proc.returncode != 0, "seconds": round(seconds, 1),
            "failure": text[-4000:] if proc.returncode != 0 else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000, help="cases per surface (default 1000)")
    parser.add_argument("--jobs", type=int, default=1, help="surfaces fuzzed side by side")
    parser.add_argument("--only", nargs="+", help="surfaces (test names, or parts of them)")
    parser.add_argument("--out", help="write the results as JSON here (merged into an existing file by surface)")
    parser.add_argument("--table", metavar="JSON", help="only print the markdown table of a results file")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            results = json.load(f)["results"]
        print("| surface | cases | failing | time (s) |\n|---|---|---|---|")
        for r in results:
            print(f"| `{r['surface']}` | {r['cases']:,} | {r['failing']} | {r['seconds']:,.0f} |")
        return 0
    names = [n for n in surfaces() if not args.only or any(o in n for o in args.only)]
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run, n, args.cases, {"AEFS_FUZZ_RANDOM": "1"}): n for n in names}
        for future in concurrent.futures.as_completed(futures):
            r = future.result()
            results.append(r)
            print(f"{r['surface']:<58} {r['cases']:>7,} cases  {r['failing']:>3} failing  "
                  f"{'FAILED' if r['failed'] else 'ok':<6} {r['seconds']:>8.1f} s", flush=True)
            if r["failure"]:
                print(r["failure"], flush=True)
    results.sort(key=lambda r: names.index(r["surface"]))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        merged = {}
        if os.path.exists(args.out):  # runs of different sizes per surface add up in one file
            with open(args.out) as f:
                merged = {r["surface"]: r for r in json.load(f)["results"]}
        merged.update({r["surface"]: r for r in results})
        order = surfaces()
        with open(args.out, "w") as f:
            json.dump({"machine": os.uname().machine, "cpus": os.cpu_count(),
                       "results": sorted(merged.values(), key=lambda r: order.index(r["surface"])
                                         if r["surface"] in order else len(order))}, f, indent=1)
    failed = [r["surface"] for r in results if r["failed"]]
    print(f"{sum(r['cases'] for r in results):,} cases over {len(results)} surfaces; "
          f"failures in: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
