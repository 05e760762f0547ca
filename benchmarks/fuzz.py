"""The long fuzzing run: every surface of tests/test_fuzz.py with N cases.

    python benchmarks/fuzz.py --cases 10000 --jobs 2 --out benchmarks/results/fuzz.json

Runs each property of tests/test_fuzz.py in its own pytest process with
`AEFS_FUZZ_CASES=N` and fresh random inputs (`AEFS_FUZZ_RANDOM=1`, shrinking
on, so a failure is reported at its smallest), `--jobs` processes side by
side, and reports per surface the cases tried (hypothesis' passing plus
failing examples), the failures found and the time taken (runs into the same --out add up). The table in
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
    # Cases generated (the explicit examples and the shrinking's retries not counted).
    generate = text.split("during generate phase", 1)[-1].split("during shrink phase", 1)[0]
    passing = sum(int(n) for n in re.findall(r"(\d+) passing", generate))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing", generate))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    return {"surface": name, "cases": passing + failing, "passing": passing, "failing": failing,
            "failed": proc.returncode != 0, "seconds": round(seconds, 1), "commit": commit,
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
            runs = json.load(f)["runs"]
        print("| surface | cases, all runs | runs that found a failure (commit) | cases since the last fix | time (s) |")
        print("|---|---|---|---|---|")
        order = surfaces()
        for name in sorted({r["surface"] for r in runs}, key=lambda n: order.index(n) if n in order else 99):
            mine = [r for r in runs if r["surface"] == name]
            failed = [r for r in mine if r["failed"]]
            since = mine[mine.index(failed[-1]) + 1:] if failed else mine
            commits = ", ".join(r.get("commit", "?") for r in failed) or "none"
            print(f"| `{name}` | {sum(r['cases'] for r in mine):,} | {commits} | "
                  f"{sum(r['cases'] for r in since):,} | {sum(r['seconds'] for r in mine):,.0f} |")
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
        runs = []
        if os.path.exists(args.out):  # every run is kept: each one's cases are fresh random ones
            with open(args.out) as f:
                runs = json.load(f)["runs"]
        runs += [{k: v for k, v in r.items() if k != "failure"} for r in results]
        with open(args.out, "w") as f:
            json.dump({"machine": os.uname().machine, "cpus": os.cpu_count(), "runs": runs}, f, indent=1)
    failed = [r["surface"] for r in results if r["failed"]]
    print(f"{sum(r['cases'] for r in results):,} cases over {len(results)} surfaces; "
          f"failures in: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
