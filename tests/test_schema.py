import numpy as np
import pytest

from aefs_keras import Categorical, Numeric, Schema
from aefs_keras.layers import FieldIds


def small_schema():
    return Schema([
        Categorical("user", vocabulary_size=3),
        Categorical("ad", vocabulary=["a", "b", "c"]),
        Categorical("site", hash_buckets=7),
        Numeric("price", boundaries=[1.0, 10.0]),
    ])


def test_sizes_and_offsets():
    s = small_schema()
    assert s.field_sizes == [4, 4, 7, 4]
    assert s.offsets == [0, 4, 8, 15]
    assert s.total_size == 19


def test_json_round_trip(tmp_path):
    s = small_schema()
    path = tmp_path / "schema.json"
    s.to_json(str(path))
    assert Schema.from_json(str(path)) == s
    assert Schema.from_json(s.to_json()) == s


@pytest.mark.parametrize("kwargs, word", [
    ({}, "exactly one"),
    ({"vocabulary_size": 3, "hash_buckets": 4}, "exactly one"),
    ({"vocabulary_size": 0}, "vocabulary_size=0"),
    ({"vocabulary": ["a", "a"]}, "duplicates"),
    ({"hash_buckets": 5, "dtype": "float32"}, "dtype='float32'"),
])
def test_bad_categorical(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Categorical("x", **kwargs)


def test_bad_numeric_and_duplicates():
    with pytest.raises(ValueError, match="strictly increasing"):
        Numeric("p", boundaries=[2.0, 1.0])
    with pytest.raises(ValueError, match="Duplicated"):
        Schema([Numeric("p", boundaries=[1.0]), Numeric("p", boundaries=[2.0])])


def test_field_ids_exact():
    import tensorflow as tf

    s = small_schema()
    feats = {
        "user": np.array([0, 2, 3, -1], "int64"),
        "ad": np.array(["c", "", "zz", "a"]),
        "site": np.array(["x", "y", "x", "q"]),
        "price": np.array([0.5, 1.0, 99.0, np.nan], "float32"),
    }
    ids = FieldIds(s)(feats).numpy()
    assert ids[:, 0].tolist() == [0, 2, 3, 3]  # out of range -> OOV id 3
    assert ids[:, 1].tolist() == [3, 0, 0, 1]  # OOV (and "") -> 0, list -> 1..
    expected_hash = tf.strings.to_hash_bucket_fast(feats["site"], 7).numpy().tolist()
    assert ids[:, 2].tolist() == expected_hash
    assert ids[:, 3].tolist() == [0, 1, 2, 3]  # NaN -> missing id 3
    assert ids.min() >= 0 and (ids < np.array(s.field_sizes)).all()


def test_check_feature_dtypes_names_the_problem():
    s = small_schema()
    good = {"user": "int64", "ad": "string", "site": "string", "price": "float32"}
    s.check_feature_dtypes(good)
    with pytest.raises(ValueError, match=r"Missing feature\(s\) \['price'\]"):
        s.check_feature_dtypes({k: v for k, v in good.items() if k != "price"})
    with pytest.raises(ValueError, match="Feature `user` must have dtype int64.*float32"):
        s.check_feature_dtypes({**good, "user": "float32"})
    with pytest.raises(ValueError, match="Feature `ad` must have dtype string.*int64"):
        s.check_feature_dtypes({**good, "ad": "int64"})


def test_vocabulary_with_hashed_oov_buckets():
    import json

    import aefs_keras as ak

    field = Categorical("ad", vocabulary=["a", "b"], oov_buckets=4)
    assert field.size == 6 and Schema([field]).get_config()["fields"][0]["oov_buckets"] == 4
    again = Schema.from_config(json.loads(json.dumps(Schema([field]).get_config())))
    assert again.field("ad") == field
    assert "oov_buckets" not in Schema([Categorical("ad", vocabulary=["a"])]).get_config()["fields"][0]
    ids = ak.layers.FieldIds(Schema([field]))({"ad": np.array(["a", "b"] + [f"x{i}" for i in range(40)])})
    ids = ids.numpy()[:, 0]
    assert ids[0] == 4 and ids[1] == 5  # the vocabulary after the 4 hashed ids
    assert set(ids[2:]) == {0, 1, 2, 3}  # unseen values spread over the hashed ids
    with pytest.raises(ValueError, match="oov_buckets=0"):
        Categorical("ad", vocabulary=["a"], oov_buckets=0)
    with pytest.raises(ValueError, match="applies to `vocabulary` fields only"):
        Categorical("ad", hash_buckets=8, oov_buckets=2)
