"""The small real datasets under ../shared/data, loaded for benchmarks.

Each loader returns a `CTRData` with a schema whose preprocessing runs in
the graph (vocabularies, bucket boundaries), so a model trained on it takes
raw values and exports as is. Vocabularies and boundaries come from the
training split only, by the rules of the preprocessing artifact
(`preprocess.fit_schema`). These sets fit in memory; big files go through
`aefs_keras.datasets.load`.
"""

from __future__ import annotations

import csv
import gzip
import os

import numpy as np

from aefs_keras.datasets.ctr_data import CTRData
from aefs_keras.datasets.formats import FRAPPE_FIELDS
from aefs_keras.datasets.preprocess import fit_schema
from aefs_keras.datasets.readers import read_libsvm

NAMES = ("criteo_80k", "census_kdd", "frappe")


def _split_arrays(features, labels, order, fractions):
    """(train, valid, test) arrays: the rows in `order`, cut by `fractions`."""
    n_train, n_valid = int(len(labels) * fractions[0]), int(len(labels) * fractions[1])
    parts = (order[:n_train], order[n_train:n_train + n_valid], order[n_train + n_valid:])
    return [({k: v[p] for k, v in features.items()}, labels[p]) for p in parts]


def _splits(name, columns, numeric, labels, order, fractions, batch_size, seed, split, numeric_transform,
            min_count):
    """Fixed splits by `order`; the schema fitted on the training rows only."""
    features = {k: (np.array([float(v) if v not in ("", "?") else np.nan for v in values], "float32")
                    if k in numeric else np.array(values, dtype=object))
                for k, values in columns.items()}
    arrays = _split_arrays(features, labels, order, fractions)
    schema = fit_schema(arrays[0][0], numeric, min_count=min_count, numeric=numeric_transform)
    return CTRData.from_arrays(name, schema, *arrays, batch_size, seed, split=split)


def load_criteo_80k(data_dir, batch_size=1024, seed=0, min_count=2):
    """criteo_80k: time order kept; first 70 % train, next 10 % valid, last 20 % test.
    I1-I13 by the log-squared transform, C1-C26 vocabularies (min count)."""
    path = os.path.join(data_dir, "criteo_80k", "criteo_80k.csv.gz")
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: rows with {len(header)} columns expected; bad lines {bad[:5]}")
    labels = np.array([float(r[1]) for r in rows], "float32")
    columns = {h: [r[j] for r in rows] for j, h in enumerate(header) if h not in ("row_id", "label")}
    n = len(rows)
    train_rows = np.arange(int(n * 0.7))
    numeric = {f"I{i}" for i in range(1, 14)}
    return _splits("criteo_80k", columns, numeric, labels, np.arange(n), (0.7, 0.1), batch_size,
                   seed, "sequential 70/10/20 (time order)", "log_squared", min_count)


_CENSUS_NUMERIC = {0: "age", 5: "wage_per_hour", 16: "capital_gains", 17: "capital_losses",
                   18: "dividends", 30: "num_persons_worked_for_employer", 39: "weeks_worked"}


def load_census_kdd(data_dir, batch_size=1024, seed=0, min_count=2, split_seed=0):
    """census_kdd: 40 features (7 numeric with 16 train quantile buckets, 33
    categorical), instance weight dropped; seeded random 70/10/20 split."""
    path = os.path.join(data_dir, "census_kdd", "census-income.test.gz")
    with gzip.open(path, "rt") as f:
        rows = [line.rstrip("\n").split(", ") for line in f if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) != 42]
    if bad:
        raise ValueError(f"{path}: 42 columns expected; bad lines {bad[:5]}")
    labels = np.array([r[41].strip().startswith("50000+") for r in rows], "float32")
    keep = [j for j in range(41) if j != 24]
    columns = {_CENSUS_NUMERIC.get(j, f"f{j}"): [r[j].strip() for r in rows] for j in keep}
    order = np.random.default_rng(split_seed).permutation(len(rows))
    return _splits("census_kdd", columns, set(_CENSUS_NUMERIC.values()), labels, order, (0.7, 0.1),
                   batch_size, seed, f"random 70/10/20 (split seed {split_seed})", "quantile", min_count)


def load_frappe(data_dir, batch_size=1024, seed=0, split_seed=0):
    """frappe: the valid and test files pooled (86,582 rows), seeded random
    70/10/20 split; ids by the declared field ranges (`read_libsvm`)."""
    paths = [os.path.join(data_dir, "frappe", f) for f in ("valid.libsvm", "test.libsvm")]
    ds, schema = read_libsvm(paths, FRAPPE_FIELDS, batch_size=65_536)
    batches = list(ds.as_numpy_iterator())
    features = {n: np.concatenate([b[0][n] for b in batches]) for n in schema.names}
    labels = np.concatenate([b[1] for b in batches]).astype("float32")
    order = np.random.default_rng(split_seed).permutation(len(labels))
    arrays = _split_arrays(features, labels, order, (0.7, 0.1))
    return CTRData.from_arrays("frappe", schema, *arrays, batch_size, seed,
                               split=f"random 70/10/20 (split seed {split_seed})")


def load_benchmark(name: str, data_dir: str = "../shared/data", **kwargs) -> CTRData:
    """One of `NAMES` from `data_dir` (default: the shared data folder)."""
    loaders = {"criteo_80k": load_criteo_80k, "census_kdd": load_census_kdd, "frappe": load_frappe}
    if name not in loaders:
        raise ValueError(f"`name` must be one of {list(NAMES)}. Received: name={name!r}")
    if not os.path.isdir(os.path.join(data_dir, name)):
        raise FileNotFoundError(f"No {name!r} under data_dir={data_dir!r}")
    return loaders[name](data_dir, **kwargs)
