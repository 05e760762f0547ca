"""What XLA's compile costs: the first `fit` and `evaluate` of one batch,
plain against `jit_compile=True`, and the second (traced or compiled).

    python benchmarks/xla_compile_time.py --out benchmarks/results/xla_compile_time.json

DeepFM without selection and with AEFS (scale.py's models, Keras' Adam) at
benchmarks/xla_training.py's two sizes, each size in its own process.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from scale import _data, write_json  # noqa: E402
from xla_training import SIZES  # noqa: E402


def _child(size):
    import aefs_keras as ak
    from scale import _model

    cfg = SIZES[size]
    _, _, ds = _data(cfg["rows_per_field"], cfg["batch"], 4)
    out = []
    for selection in (None, "aefs"):
        for jit in (False, True):
            model = _model(cfg["rows_per_field"], selection, cfg["d_main"], "adam", cfg["hidden"])
            ak.default_compile(model, optimizer=model.optimizer, jit_compile=jit)
            row = {"size": size, "selection": selection or "none", "jit_compile": jit}
            for what, call in (("fit", lambda: model.fit(ds.take(1), verbose=0)),
                               ("evaluate", lambda: model.evaluate(ds.take(1), verbose=0))):
                for attempt in ("first", "second"):
                    t = time.perf_counter()
                    call()
                    row[f"{attempt}_{what}_s"] = round(time.perf_counter() - t, 3)
            out.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)))
        return
    results = []
    for size in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", size], capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"size": size, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        results += json.loads(proc.stdout.strip().splitlines()[-1])
    for r in results:
        print(json.dumps(r))
    write_json({"results": results}, args.out)


if __name__ == "__main__":
    main()
