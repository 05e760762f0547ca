"""The built-in default data: seeded, with a planted answer that can be checked."""

import numpy as np
import pytest

from aefs_keras.datasets.synthetic_data import synthetic
from aefs_keras.metrics import auc_score, log_loss


def test_seeded_and_string_tokens_stand_for_the_ids():
    a = synthetic(num_rows=2000, seed=4)
    np.testing.assert_array_equal(a.train_arrays[1], synthetic(num_rows=2000, seed=4).train_arrays[1])
    b = synthetic(num_rows=2000, seed=4, categorical_dtype="string")
    assert a.informative_fields == b.informative_fields
    assert sorted(a.informative_fields + a.noise_fields) == sorted(a.schema.names)
    ids, tokens = a.train_arrays[0]["C1"], b.train_arrays[0]["C1"]
    assert tokens.dtype == object
    pairs = set(zip(ids.tolist(), tokens.tolist()))  # one token per id and one id per token
    assert len(pairs) == len(set(ids.tolist())) == len(set(tokens.tolist()))


def test_oracle_auc_without_each_planted_field():
    d = synthetic(num_rows=20_000, seed=1)
    assert set(d.oracle_auc_without) == set(d.informative_fields)
    assert all(0.5 < v < d.oracle_auc for v in d.oracle_auc_without.values())
    # One planted field, no interactions: without it the logit is constant,
    # every score ties, and the AUC is exactly 0.5.
    one = synthetic(num_rows=5000, num_informative=1, num_interactions=0, seed=2)
    assert list(one.oracle_auc_without.values()) == [0.5]


def _pairwise_auc(y, s):
    # The definition: P(score of a positive > score of a negative), ties 1/2.
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auc_score_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 7, 300):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.integers(0, 5, n) / 4.0  # many ties
        assert auc_score(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)
    assert log_loss([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6])))
    with pytest.raises(ValueError, match="both classes"):
        auc_score([1, 1], [0.2, 0.3])


def test_auc_score_by_hand():
    assert auc_score([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.4]) == pytest.approx(0.875)  # (1 + 0.75) / 2


@pytest.mark.parametrize("kwargs, word", [
    ({"num_rows": 5}, "num_rows=5"),
    ({"num_informative": 40}, "num_informative=40"),
    ({"num_interactions": 99}, "num_interactions=99"),
    ({"categorical_dtype": "float"}, "categorical_dtype='float'"),
])
def test_argument_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        synthetic(**kwargs)
