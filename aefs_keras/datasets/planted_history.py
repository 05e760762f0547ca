"""A synthetic dataset whose answer lies in a user history (a list field).

Every item belongs to one of `num_groups` hidden groups. A row's history is
a list of 0 to `history_length` item ids, most of them from the user's
hidden favourite group; the row shows one target item, and the click
probability rises with the share of the history that is in the target's
group. The user id is new on almost every row, so only the history carries
the preference: a model without the history field cannot see it, and a
selector should keep that field on most rows. A dense numeric `price`
(a smaller, known effect) and noise fields complete the schema.
"""

from __future__ import annotations

import numpy as np

from aefs_keras.datasets.ctr_data import CTRData
from aefs_keras.schema import Categorical, DenseNumeric, MultiCategorical, Schema


def history_schema(num_items: int, noise_fields: int, noise_size: int) -> Schema:
    return Schema([
        Categorical("item", vocabulary_size=num_items),
        MultiCategorical("history", share_embedding_with="item", combiner="mean"),
        DenseNumeric("price", normalization="log"),
        *[Categorical(f"noise_{i}", vocabulary_size=noise_size) for i in range(noise_fields)],
    ])


def history_data(num_rows: int = 30_000, history_length: int = 10, num_items: int = 400,
                 num_groups: int = 8, noise_fields: int = 4, noise_size: int = 50,
                 batch_size: int = 256, seed: int = 0) -> CTRData:
    """Rows with a planted signal in the `history` field (see the module).

    Splits 80/10/10 in row order (rows are i.i.d.). Features: `item`
    (int64), `history` (int64, (rows, history_length), padded with -1;
    about one row in eleven has an empty history), `price` (float32, NaN on
    5 % of rows), `noise_*` (int64). The label's log-odds are
    -1 + 3 * (share of the history in the target item's group) - 0.4 *
    log(1 + price) (+ 0.5 when price is missing).

    Example:

    >>> data = history_data(num_rows=1000)
    >>> data.schema.names[:3], data.train_arrays[0]["history"].shape
    (['item', 'history', 'price'], (800, 10))
    """
    if num_rows < 10:
        raise ValueError(f"`num_rows` must be at least 10. Received: num_rows={num_rows!r}")
    rng = np.random.default_rng(seed)
    group = rng.integers(0, num_groups, num_items)
    members = [np.flatnonzero(group == g) for g in range(num_groups)]
    favourite = rng.integers(0, num_groups, num_rows)
    lengths = rng.integers(0, history_length + 1, num_rows)
    history = np.full((num_rows, history_length), -1, "int64")
    share = np.zeros(num_rows)
    target = rng.integers(0, num_items, num_rows)
    for r in range(num_rows):
        n = lengths[r]
        if n == 0:
            continue
        from_favourite = rng.random(n) < 0.8
        picks = np.where(from_favourite, rng.choice(members[favourite[r]], n),
                         rng.integers(0, num_items, n))
        history[r, :n] = picks
        share[r] = np.mean(group[picks] == group[target[r]])
    price = rng.lognormal(2.0, 1.0, num_rows).astype("float32")
    missing = rng.random(num_rows) < 0.05
    logit = -1.0 + 3.0 * share - 0.4 * np.log1p(price) + 0.5 * missing
    price[missing] = np.nan
    labels = (rng.random(num_rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    features = {"item": target.astype("int64"), "history": history, "price": price}
    for i in range(noise_fields):
        features[f"noise_{i}"] = rng.integers(0, noise_size, num_rows).astype("int64")
    a, b = int(0.8 * num_rows), int(0.9 * num_rows)
    part = lambda lo, hi: ({k: v[lo:hi] for k, v in features.items()}, labels[lo:hi])
    return CTRData.from_arrays("history", history_schema(num_items, noise_fields, noise_size),
                               part(0, a), part(a, b), part(b, num_rows), batch_size, seed=seed,
                               split="rows 80/10/10 in order (i.i.d. rows)")
