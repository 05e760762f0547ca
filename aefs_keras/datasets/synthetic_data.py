"""The built-in default data: Criteo-shaped, with a planted answer.

Labels come from a known logistic model over a few *informative* fields
(main effects plus pairwise interactions); every other field is pure
noise. A good selector should keep the informative fields, and the AUC of
the true logit (`oracle_auc`) bounds what any model can reach.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aefs_keras.datasets.ctr_data import CTRData
from aefs_keras.metrics import auc_score
from aefs_keras.schema import Categorical, Numeric, Schema


@dataclasses.dataclass
class SyntheticData(CTRData):
    """What `synthetic` returns: a `CTRData` with the planted answer.

    Attributes (besides `CTRData`'s):
        informative_fields: fields the label depends on.
        noise_fields: fields it does not depend on.
        interactions: pairs of informative fields with an interaction term.
        oracle_auc: test AUC of the true logit.
        oracle_auc_without: informative field -> test AUC of the true logit
            without that field's terms (main effect and interactions): how
            much each planted field is worth.
    """

    informative_fields: list = dataclasses.field(default_factory=list)
    noise_fields: list = dataclasses.field(default_factory=list)
    interactions: list = dataclasses.field(default_factory=list)
    oracle_auc: float = float("nan")
    oracle_auc_without: dict = dataclasses.field(default_factory=dict)


def _zipf_ids(rng, n, vocab, exponent):
    p = 1.0 / np.arange(1, vocab + 1) ** exponent
    ranks = rng.choice(vocab, size=n, p=p / p.sum())
    return rng.permutation(vocab)[ranks].astype("int64")  # rank -> scattered id


def _token(field_index: int, i: int) -> str:
    # Odd multiplier mod 2**32 is a bijection: distinct ids, distinct tokens.
    return format((i * 2654435761 + field_index * 40503) % 2**32, "08x")


def _as_string_tokens(features, schema, vocabulary_size):
    fields, out = [], dict(features)
    for j, f in enumerate(schema.fields):
        if isinstance(f, Categorical):
            vocab = [_token(j, i) for i in range(vocabulary_size)]
            out[f.name] = np.array(vocab, dtype=object)[features[f.name]]
            f = Categorical(f.name, vocabulary=vocab)
        fields.append(f)
    return out, Schema(fields)


def synthetic(
    num_rows: int = 200_000,
    num_numeric: int = 13,
    num_categorical: int = 26,
    vocabulary_size: int = 1000,
    num_informative: int = 8,
    num_interactions: int = 4,
    main_scale: float = 0.8,
    interaction_scale: float = 0.6,
    zipf_exponent: float = 1.1,
    positive_rate: float = 0.2,
    missing_rate: float = 0.02,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    batch_size: int = 2048,
    seed: int = 0,
    categorical_dtype: str = "int64",
) -> SyntheticData:
    """Criteo-shaped data (I1..I13 numeric, C1..C26 categorical) with planted signal.

    Args:
        num_rows: rows in total (train + test).
        num_numeric, num_categorical: field counts (Criteo: 13 and 26).
        vocabulary_size: ids per categorical field, Zipf-distributed.
        num_informative: fields the label depends on (chosen at random).
        num_interactions: pairs of informative fields with an interaction.
        main_scale, interaction_scale: standard deviations of the effects.
        zipf_exponent: skew of the id distribution.
        positive_rate: target mean of the label.
        missing_rate: fraction of numeric values that are NaN.
        valid_fraction, test_fraction: shares of rows held out as `valid`
            and `test` (the rest is `train`); rows are i.i.d.
        batch_size: batch size of the datasets.
        seed: everything is reproducible from it.
        categorical_dtype: `"int64"` (ids in [0, vocabulary_size)) or
            `"string"` (Criteo-like 8-hex-digit tokens with a declared
            vocabulary, so models take strings as served models do).

    Example:

    >>> data = synthetic(num_rows=2000, seed=1)
    >>> data.schema.num_fields, len(data.informative_fields)
    (39, 8)
    """
    for arg, value in (("num_rows", num_rows), ("vocabulary_size", vocabulary_size)):
        if not isinstance(value, int) or value < 10:
            raise ValueError(f"`{arg}` must be an integer >= 10. Received: {arg}={value!r}")
    num_fields = num_numeric + num_categorical
    if not 1 <= num_informative <= num_fields:
        raise ValueError(
            f"`num_informative` must be in [1, {num_fields}]. Received: num_informative={num_informative!r}"
        )
    max_pairs = num_informative * (num_informative - 1) // 2
    if not 0 <= num_interactions <= max_pairs:
        raise ValueError(
            f"`num_interactions` must be in [0, {max_pairs}]. Received: num_interactions={num_interactions!r}"
        )
    if categorical_dtype not in ("int64", "string"):
        raise ValueError(
            "`categorical_dtype` must be 'int64' or 'string'. "
            f"Received: categorical_dtype={categorical_dtype!r}"
        )
    for arg, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"`{arg}` must be in (0, 1). Received: {arg}={value!r}")
    if valid_fraction + test_fraction >= 0.9:
        raise ValueError(
            "`valid_fraction` + `test_fraction` must leave at least 10% for training. "
            f"Received: {valid_fraction} + {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    num_train = int(round(num_rows * (1.0 - valid_fraction - test_fraction)))
    num_valid = int(round(num_rows * valid_fraction))
    end_valid = num_train + num_valid

    features: dict[str, np.ndarray] = {}
    fields = []
    for i in range(num_numeric):
        name = f"I{i + 1}"
        values = rng.lognormal(mean=1.0, sigma=1.0 + 0.05 * i, size=num_rows).astype("float32")
        values[rng.random(num_rows) < missing_rate] = np.nan
        train_vals = values[:num_train]
        qs = np.nanquantile(train_vals, np.linspace(0, 1, 17)[1:-1])
        fields.append(Numeric(name, boundaries=np.unique(qs.astype("float32")).tolist()))
        features[name] = values
    for i in range(num_categorical):
        name = f"C{i + 1}"
        features[name] = _zipf_ids(rng, num_rows, vocabulary_size, zipf_exponent)
        fields.append(Categorical(name, vocabulary_size=vocabulary_size))
    schema = Schema(fields)

    if categorical_dtype == "string":
        features, schema = _as_string_tokens(features, schema, vocabulary_size)

    # Ids as the model will see them, to plant effects per id / bucket.
    ids = {}
    for f in schema.fields:
        x = features[f.name]
        if isinstance(f, Numeric):
            b = np.searchsorted(np.asarray(f.boundaries), x, side="right")
            ids[f.name] = np.where(np.isnan(x), len(f.boundaries) + 1, b)
        elif f.vocabulary is not None:  # token -> its vocabulary position (+1: OOV is 0)
            index = {t: i + 1 for i, t in enumerate(f.vocabulary)}
            ids[f.name] = np.array([index[t] for t in x.tolist()])
        else:
            ids[f.name] = x
    chosen = sorted(rng.choice(num_fields, size=num_informative, replace=False).tolist())
    informative = [schema.names[i] for i in chosen]
    logit = np.zeros(num_rows)
    terms: dict[str, np.ndarray] = {}  # informative field -> every term it enters
    for name in informative:
        table = rng.normal(0.0, main_scale, size=schema.field(name).size)
        terms[name] = table[ids[name]]
        logit += terms[name]
    all_pairs = [(a, b) for i, a in enumerate(informative) for b in informative[i + 1:]]
    pair_idx = rng.choice(len(all_pairs), size=num_interactions, replace=False) if num_interactions else []
    interactions = [all_pairs[i] for i in sorted(pair_idx)]
    for a, b in interactions:
        ua = rng.normal(size=schema.field(a).size)
        ub = rng.normal(size=schema.field(b).size)
        term = interaction_scale * ua[ids[a]] * ub[ids[b]]
        logit += term
        terms[a] = terms[a] + term
        terms[b] = terms[b] + term
    lo, hi = -20.0, 20.0  # bias so that the mean click rate is positive_rate
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) > positive_rate:
            hi = mid
        else:
            lo = mid
    prob = 1 / (1 + np.exp(-(logit + lo)))
    labels = (rng.random(num_rows) < prob).astype("float32")

    def rows(lo, hi):
        return {k: v[lo:hi] for k, v in features.items()}, labels[lo:hi]

    train_x, train_y = rows(0, num_train)
    valid_x, valid_y = rows(num_train, end_valid)
    test_x, test_y = rows(end_valid, num_rows)
    return SyntheticData.from_arrays(
        "synthetic", schema, (train_x, train_y), (valid_x, valid_y), (test_x, test_y), batch_size, seed,
        split=f"sequential {num_train}/{end_valid - num_train}/{num_rows - end_valid} of {num_rows} rows",
        informative_fields=informative,
        noise_fields=[n for n in schema.names if n not in informative],
        interactions=interactions,
        oracle_auc=auc_score(test_y, logit[end_valid:]),
        oracle_auc_without={n: auc_score(test_y, (logit - terms[n])[end_valid:]) for n in informative},
    )
