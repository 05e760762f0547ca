"""A Criteo-shaped file of any size, streamed to disk with a planted label.

`write_criteo_like(path, rows)` writes Criteo's layout (tab-separated:
label, I1-I13, C1-C26, no header) so that everything that reads Criteo
(`aefs-keras preprocess criteo`, `load("criteo")`) reads it:

- I1-I13: non-negative integers with heavy tails (geometric), each missing
  (an empty cell) at its own rate between 2 % and 45 %, as in Criteo.
- C1-C26: 8-digit hex tokens. Field j has up to `max_values * (j + 1) ** -1.1`
  distinct values (a Zipf law over fields, the largest `max_values`),
  and within a field values follow a Zipf law of exponent 1.05 (a few very
  frequent values and a long tail), so the distinct count seen keeps
  growing with the rows, as Criteo's does; 3 % of cells are empty.
- label: Bernoulli(sigmoid(logit)), the logit a sum of planted effects of
  I1, I2, I5 (log-scaled), C1, C3, C8, C14 (a fixed random effect per
  value) and one interaction C3 x C8, with the bias set for a click rate
  of about 25 %. The other 32 fields are noise.

Memory stays flat: rows are drawn and written `chunk` at a time.
"""

from __future__ import annotations

import gzip
import math
import os
import time

import numpy as np

NUM_INTEGER, NUM_CATEGORICAL = 13, 26
PLANTED_INTEGER = (0, 1, 4)  # I1, I2, I5
PLANTED_CATEGORICAL = (0, 2, 7, 13)  # C1, C3, C8, C14
_MISSING_RATE = np.linspace(0.02, 0.45, NUM_INTEGER)
_BIAS = -0.6  # click rate about 25 %


def field_sizes(max_values: int) -> list[int]:
    """Distinct values possible per categorical field (Zipf over fields)."""
    return [max(4, int(max_values * (j + 1) ** -1.1)) for j in range(NUM_CATEGORICAL)]


def _value_effect(field, ranks, scale):
    # A fixed pseudo-random effect per (field, value): a hash, not a table,
    # so that fields with millions of values cost no memory.
    h = (ranks.astype(np.uint64) * np.uint64(2654435761) + np.uint64(field * 97 + 13)) % np.uint64(100_003)
    return scale * (h.astype("float64") / 100_003.0 - 0.5) * 2.0


def _zipf_cdf(size, exponent=1.05):
    p = 1.0 / np.arange(1, size + 1, dtype="float64") ** exponent
    return np.cumsum(p / p.sum())


def write_criteo_like(path: str, rows: int, seed: int = 0, max_values: int = 2_000_000,
                      chunk: int = 200_000, progress: bool = True, header: bool = False) -> dict:
    """Streams `rows` Criteo-shaped rows to `path` (".gz": gzip level 1).

    Args:
        path: output file; written under a temporary name and renamed when
            complete, so a killed run leaves no half file under `path`.
        rows: number of rows.
        seed: random seed (the same seed and sizes give the same file).
        max_values: distinct values possible in the largest field (C1).
        chunk: rows drawn and written at a time.
        progress: print rows/s every 10 s.
        header: write a header row first (label, I1-I13, C1-C26), so the
            file reads as your own CSV/TSV (`--train FILE --label label`)
            rather than `--format criteo`.

    Returns:
        A summary: rows, click rate, seconds, bytes.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.tsv")
    >>> write_criteo_like(path, 1000, max_values=500, progress=False)["rows"]
    1000
    >>> len(open(path).readline().rstrip("\\n").split("\\t"))
    40
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"`rows` must be a positive integer. Received: rows={rows!r}")
    if not isinstance(max_values, int) or max_values < 4:
        raise ValueError(f"`max_values` must be an integer >= 4. Received: max_values={max_values!r}")
    rng = np.random.default_rng(seed)
    sizes = field_sizes(max_values)
    cdfs = [_zipf_cdf(s) for s in sizes]
    salts = rng.integers(1, 2**31, NUM_CATEGORICAL)
    tmp = path + ".tmp"
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1, newline="")) if path.endswith(".gz") else (
        lambda p: open(p, "w", newline=""))
    clicks, done, start, last = 0, 0, time.perf_counter(), time.perf_counter()
    with opener(tmp) as f:
        if header:
            f.write("\t".join(["label"] + [f"I{i + 1}" for i in range(NUM_INTEGER)]
                              + [f"C{j + 1}" for j in range(NUM_CATEGORICAL)]) + "\n")
        while done < rows:
            n = min(chunk, rows - done)
            logit = np.full(n, _BIAS)
            columns = []
            for i in range(NUM_INTEGER):
                values = rng.geometric(1.0 / (2.0 + 3.0 * i), n) - 1
                missing = rng.random(n) < _MISSING_RATE[i]
                if i in PLANTED_INTEGER:
                    logit += np.where(missing, 0.0, 0.35 * (np.log1p(values) - math.log1p(2.0 + 3.0 * i)))
                text = values.astype(str).astype(object)
                text[missing] = ""
                columns.append(text)
            ranks = {}
            for j in range(NUM_CATEGORICAL):
                r = np.minimum(np.searchsorted(cdfs[j], rng.random(n)), sizes[j] - 1)
                ranks[j] = r
                if j in PLANTED_CATEGORICAL:
                    logit += _value_effect(j, r, 0.9)
                tokens = np.char.mod("%08x", (r.astype(np.uint64) * np.uint64(2654435761)
                                             + np.uint64(salts[j])) % np.uint64(2**32)).astype(object)
                tokens[rng.random(n) < 0.03] = ""
                columns.append(tokens)
            logit += _value_effect(99, ranks[2] * 7919 + ranks[7], 0.8)  # C3 x C8
            label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
            clicks += int(label.sum())
            table = np.column_stack([label.astype(str).astype(object)] + columns)
            f.write("".join("\t".join(row) + "\n" for row in table))
            done += n
            now = time.perf_counter()
            if progress and now - last > 10.0:
                print(f"synth: {done:,} of {rows:,} rows, {done / (now - start):,.0f} rows/s, "
                      f"ETA {(rows - done) / (done / (now - start)):.0f} s", flush=True)
                last = now
    os.replace(tmp, path)
    return {"rows": rows, "click_rate": clicks / rows, "seconds": time.perf_counter() - start,
            "bytes": os.path.getsize(path)}
