"""Streaming readers and the preprocessing artifact: fixtures with known bad
rows, the real shared files against a plain-Python reading, round trips."""

import csv
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from aefs_keras.datasets import csv_format, fit_preprocessing, load, Preprocessing, read_text
from aefs_keras.layers import FieldIds

from conftest import shared_data


def _criteo_row(label, ints, cats):
    return "\t".join([str(label)] + [str(v) for v in ints] + list(cats))


GOOD = [
    _criteo_row(1, [1, "", 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], ["a"] * 26),
    _criteo_row(0, [0] * 13, ["b"] * 25 + [""]),
    _criteo_row(0, [2] * 13, ["a"] * 26),
    _criteo_row(1, [-1] * 13, ["c"] * 26),
    _criteo_row(0, [100] * 13, ["a"] * 26),
    _criteo_row(1, [7] * 13, ["b"] * 26),
]


@pytest.fixture
def criteo_file(tmp_path):
    lines = [
        GOOD[0],                                              # line 1
        GOOD[1],                                              # 2
        "1\t2\t3",                                            # 3: wrong number of columns
        GOOD[2],                                              # 4
        _criteo_row(0, [1, 2, 3, 4, "x5", 6, 7, 8, 9, 10, 11, 12, 13], ["a"] * 26),  # 5: non-numeric
        GOOD[3],                                              # 6
        "",                                                   # 7: empty line
        GOOD[4],                                              # 8
        GOOD[5],                                              # 9
        GOOD[5][:40],                                         # 10: truncated last line, no newline
    ]
    path = tmp_path / "day_0.txt"
    path.write_text("\n".join(lines))
    return path


def _read_all(ds):
    feats, labels = {}, []
    for f, y in ds.as_numpy_iterator():
        labels.extend(y.tolist())
        for k, v in f.items():
            feats.setdefault(k, []).extend(v.tolist())
    return feats, labels


def test_bad_rows_are_skipped_counted_and_located(criteo_file):
    ds, report = load("criteo", str(criteo_file), batch_size=4)
    feats, labels = _read_all(ds)
    assert labels == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert report.rows[str(criteo_file)] == 6 and report.skipped[str(criteo_file)] == 4
    assert report.first_bad[str(criteo_file)] == [
        (3, "wrong number of columns"), (5, "non-numeric value in a numeric column"),
        (7, "empty line"), (10, "wrong number of columns")]
    assert np.isnan(feats["I2"][0]) and feats["I1"][:2] == [1.0, 0.0]  # empty = missing
    assert feats["C26"][1] == b"" and feats["C1"][3] == b"c"
    # A second pass (epoch) is not counted twice.
    _read_all(ds)
    assert report.skipped[str(criteo_file)] == 4


def test_strict_mode_names_file_and_line(criteo_file):
    ds, _ = load("criteo", str(criteo_file), batch_size=4, strict=True)
    with pytest.raises(Exception, match=r"day_0\.txt:3: wrong number of columns"):
        _read_all(ds)


def test_gzip_and_corrupt_gzip(criteo_file, tmp_path):
    gz = tmp_path / "day_0.txt.gz"
    gz.write_bytes(gzip.compress(criteo_file.read_bytes()))
    ds, report = load("criteo", str(gz), batch_size=3)
    assert _read_all(ds)[1] == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0] and report.total_skipped == 4
    fake = tmp_path / "fake.txt.gz"
    fake.write_text("not gzip at all")
    with pytest.raises(ValueError, match="fake.txt.gz.*not a gzip file"):
        load("criteo", str(fake))
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(criteo_file.read_bytes() * 50)[:200])  # truncated stream
    # In a child process with a time limit: it must fail, not hang.
    script = (f"import aefs_keras as ak\nds, _ = ak.datasets.load('criteo', {str(cut)!r})\n"
              "for _ in ds: pass\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode != 0
    assert "cut.txt.gz: corrupt or truncated gzip file" in proc.stderr


def test_preprocessing_artifact(criteo_file, tmp_path):
    pp = fit_preprocessing("criteo", [str(criteo_file)], min_count=2, progress=False)
    assert pp.rows == 6 and pp.skipped == 4
    # C1 over the good rows: a x3, b x2, c x1 -> c is rarer than min_count; no "" seen, so none
    # kept (an empty C1 at serving time gets the OOV id; `vocabulary` keeps "" once seen).
    assert list(pp.schema.field("C1").vocabulary) == ["a", "b"]
    # I1 values 1, 0, 2, -1, 100, 7: log-squared boundaries up to floor(ln(100)^2) = 21.
    assert len(pp.schema.field("I1").boundaries) == 5 + 20
    path = str(tmp_path / "artifact.json")
    pp.save(path)
    again = Preprocessing.load(path)
    assert again.schema == pp.schema and again.format == pp.format
    (tmp_path / "bad.json").write_text('{"artifact_version": 99}')
    with pytest.raises(ValueError, match="artifact_version 99"):
        Preprocessing.load(str(tmp_path / "bad.json"))
    # The same artifact drives training and export: raw rows in, one id mapping.
    model = ak.default_compile(ak.build_model(again.schema, "dnn", hidden_units=[4], d_main=4))
    ds, _ = load(path, str(criteo_file), batch_size=4)
    model.fit(ds, epochs=1, verbose=0)
    served = ak.export(model, str(tmp_path / "serving"), "criteo")
    fn = tf.saved_model.load(served).signatures["serving_default"]
    x, _ = next(iter(ds))
    np.testing.assert_allclose(fn(**x)["probability"].numpy(), model.predict(x, verbose=0), atol=1e-5)


def test_generic_csv_with_text_label(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("age,city,income\n 38, Paris, 50000+.\n 44, Rome, - 50000.\n oops, Rome, - 50000.\n")
    fmt = csv_format([("age", "numeric"), ("city", "categorical"), ("income", "label")],
                     positive_label="50000+.")
    ds, report = load(fmt, str(path))
    feats, labels = _read_all(ds)
    assert labels == [1.0, 0.0] and feats["city"] == [b"Paris", b"Rome"] and feats["age"] == [38.0, 44.0]
    assert report.first_bad[str(path)] == [(4, "non-numeric value in a numeric column")]
    with pytest.raises(ValueError, match="kind"):
        csv_format([("age", "number")])


def test_tfrecord(tmp_path):
    schema = ak.Schema([ak.Categorical("ad", vocabulary=["a", "b"]), ak.Numeric("price", boundaries=[1.0])])
    path = str(tmp_path / "rows.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for ad, price, y in [("a", 0.5, 1.0), ("zz", 3.0, 0.0)]:
            ex = tf.train.Example(features=tf.train.Features(feature={
                "ad": tf.train.Feature(bytes_list=tf.train.BytesList(value=[ad.encode()])),
                "price": tf.train.Feature(float_list=tf.train.FloatList(value=[price])),
                "label": tf.train.Feature(float_list=tf.train.FloatList(value=[y]))}))
            w.write(ex.SerializeToString())
    ds, report = load("tfrecord", path, schema=schema)
    feats, labels = _read_all(ds)
    assert report is None and labels == [1.0, 0.0] and feats["ad"] == [b"a", b"zz"]


def _plain_rows(path, delimiter, skip_header):
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    return rows[1:] if skip_header else rows


def test_shared_criteo_and_avazu_match_plain_python():
    root = shared_data("criteo_small")
    rows = _plain_rows(root / "train.csv", "\t", False)
    feats, labels = _read_all(load("criteo", str(root / "train.csv"), batch_size=1000)[0])
    assert len(labels) == len(rows) == 7200
    for i in (0, 1, 4321, 7199):
        assert labels[i] == float(rows[i][0])
        assert feats["C7"][i] == rows[i][20].encode()
        v = rows[i][5]
        assert (np.isnan(feats["I5"][i]) and v == "") or feats["I5"][i] == float(v)
    avazu = shared_data("avazu_small")
    rows = _plain_rows(avazu / "train.csv", ",", True) + _plain_rows(avazu / "dev.csv", ",", False)
    feats, labels = _read_all(load("avazu", [str(avazu / "train.csv"), str(avazu / "dev.csv")])[0])
    assert len(labels) == len(rows) == 8087 + 480
    for i in (0, 8086, 8087, len(rows) - 1):
        assert labels[i] == float(rows[i][1]) and feats["site_id"][i] == rows[i][5].encode()


def test_preprocess_and_train_commands(criteo_file, tmp_path, capsys):
    from aefs_keras import cli

    artifact = str(tmp_path / "a.json")
    assert cli.main(["preprocess", "criteo", str(criteo_file), "--out", artifact, "--min-count", "1"]) == 0
    assert "6 rows (4 bad rows skipped)" in capsys.readouterr().out
    assert cli.main(["train", "--format", "criteo", "--train", str(criteo_file), "--valid", str(criteo_file),
                     "--artifact", artifact, "--backbone", "dnn", "--epochs", "1", "--batch-size", "4",
                     "--d-main", "4", "--hidden-units", "4"]) == 0
    out = capsys.readouterr().out
    assert "Using the preprocessing artifact" in out and "6 rows read, 4 skipped" in out and "test AUC" in out


def test_libsvm_bad_tokens_are_counted(tmp_path):
    from aefs_keras.datasets import LibsvmFormat

    fmt = LibsvmFormat((("user", 0, 9), ("item", 10, 19)))
    path = tmp_path / "x.libsvm"
    path.write_text("1 3:1 12:1\n0 3:1\n1 3:1 x:1\n0 3:1 25:1\n\n-1 0:1 19:1\n")
    ds, report = load(fmt, str(path))
    feats, labels = _read_all(ds)
    assert labels == [1.0, 0.0] and feats["user"] == [3, 0] and feats["item"] == [2, 9]
    assert report.first_bad[str(path)] == [
        (2, "wrong number of columns"), (3, "bad libsvm token (expected index:value)"),
        (4, "libsvm index outside its field's range"), (5, "empty line")]
    frappe = shared_data("frappe")
    _, labels = _read_all(load("frappe", str(frappe / "test.libsvm"), batch_size=4096)[0])
    assert len(labels) == sum(1 for line in open(frappe / "test.libsvm") if line.strip())


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_splits_are_deterministic_and_disjoint(tmp_path, mode):
    path = tmp_path / "rows.txt"
    # The last line has no newline: it must still land in a split.
    path.write_text("\n".join(_criteo_row(i % 2, [i] * 13, [f"c{i}"] * 26) for i in range(200)))

    def rows(split, seed=3):
        ds, _ = load("criteo", str(path), batch_size=16, split=split, split_mode=mode, split_seed=seed)
        return _read_all(ds)[0]["I1"]

    train, test = rows((0.0, 0.8)), rows((0.8, 1.0))
    assert sorted(train + test) == list(range(200)) and not set(train) & set(test)
    assert rows((0.0, 0.8)) == train  # the same in every run
    if mode == "sequential":
        assert train == list(range(160)) and test == list(range(160, 200))
    else:
        assert 130 <= len(train) <= 190 and rows((0.0, 0.8), seed=4) != train
    with pytest.raises(ValueError, match="split="):
        load("criteo", str(path), split=(0.5, 0.2))


def test_census_kdd_through_generic_csv():
    root = shared_data("census_kdd")
    columns = [(f"f{j}", "skip" if j == 24 else ("numeric" if j in (0, 5, 16, 17, 18, 30, 39) else "categorical"))
               for j in range(41)] + [("income", "label")]
    fmt = csv_format(columns, ",", header="none", positive_label="50000+.")
    feats, labels = _read_all(load(fmt, str(root / "census-income.test.gz"), batch_size=8192)[0])
    with gzip.open(root / "census-income.test.gz", "rt") as f:
        rows = [line.rstrip("\n").split(", ") for line in f if line.strip()]
    assert len(labels) == len(rows) == 99762
    assert sum(labels) == sum(r[-1].startswith("50000+") for r in rows)
    for i in (0, 5000, 99761):
        assert feats["f0"][i] == float(rows[i][0]) and feats["f4"][i] == rows[i][4].encode()


def test_windows_line_ends(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(("\r\n".join(GOOD[:3]) + "\r\n").encode())
    feats, labels = _read_all(load("criteo", str(path))[0])
    assert labels == [1.0, 0.0, 0.0] and feats["C26"] == [b"a", b"", b"a"]


def test_kdd12_fixture(tmp_path):
    path = tmp_path / "training.txt"
    path.write_text("0\t1\t42\t7\t3\t2\t1\t1001\t5\t6\t9\t77\n"
                    "2\t3\t42\t8\t3\t3\t2\t1002\t5\t6\t9\t0\n"
                    "1\t1\t43\n")
    feats, labels = _read_all(load("kdd12", str(path))[0])
    assert labels == [0.0, 1.0]  # Click > 0
    assert feats["AdID"] == [b"7", b"8"] and feats["UserID"] == [b"77", b"0"] and "Impression" not in feats


def test_tfrecord_shards_round_trip(criteo_file, tmp_path):
    pp = fit_preprocessing("criteo", [str(criteo_file)], min_count=1, progress=False)
    ds, _ = load("criteo", str(criteo_file), batch_size=4)
    paths = ak.datasets.write_tfrecord_shards(ds, str(tmp_path / "shards"), rows_per_shard=4)
    assert [os.path.basename(p) for p in paths] == ["part-00000.tfrecord.gz", "part-00001.tfrecord.gz"]
    back, _ = load("tfrecord", paths, schema=pp.schema)
    a, b = _read_all(ds), _read_all(back)
    assert a[1] == b[1] and a[0]["C26"] == b[0]["C26"]
    np.testing.assert_array_equal(np.array(a[0]["I2"]), np.array(b[0]["I2"]))  # NaN survives
    # shuffle=True is honoured for TFRecord too: the same rows, features still with their labels
    mixed, _ = load("tfrecord", paths, schema=pp.schema, shuffle=True, seed=3, batch_size=3)
    c = _read_all(mixed)
    rows = lambda f: sorted(zip(f[1], f[0]["C26"]))  # noqa: E731
    assert rows(c) == rows(a) and len(c[1]) == len(a[1])
    assert c[0]["C26"] != a[0]["C26"]  # and in another order


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = str(tmp_path / "rows.parquet")
    pq.write_table(pa.table({"ad": ["a", None, "b"], "price": [1.5, None, 3.0], "click": [1, 0, 1]}), path)
    ds = ak.datasets.read_parquet(path, [("ad", "categorical"), ("price", "numeric"), ("click", "label")],
                                  batch_size=2)
    feats, labels = _read_all(ds)
    assert labels == [1.0, 0.0, 1.0] and feats["ad"] == [b"a", b"", b"b"] and np.isnan(feats["price"][1])
    with pytest.raises(ValueError, match=r"rows\.parquet: no column 'nope' \(columns: ad, price, click\)"):
        _read_all(ak.datasets.read_parquet(path, [("ad", "categorical"), ("nope", "label")]))


def test_parquet_list_columns_train_and_match_the_lookup(tmp_path):
    """Parquet list columns (strings with a null element and a null list,
    integer ids) and a text column split at "|" come out padded as the model
    takes them, and train a model with MultiCategorical and DenseNumeric."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = str(tmp_path / "lists.parquet")
    pq.write_table(pa.table({
        "tags": pa.array([["x", None, "y"], None, [], ["z"]], pa.list_(pa.string())),
        "items": pa.array([[3, 1], [2], [], [0, 0, 4]], pa.list_(pa.int64())),
        "text_tags": ["x|y", "", " z | x", None],
        "price": [1.0, None, 2.5, 4.0], "click": [1, 0, 0, 1]}), path)
    columns = [("tags", "multi_categorical"), ("items", "multi_categorical"), ("text_tags", "multi_categorical"),
               ("price", "dense_numeric"), ("click", "label")]
    ds = ak.datasets.read_parquet(path, columns, batch_size=4)
    x, y = next(iter(ds))
    assert x["tags"].numpy().tolist() == [[b"x", b"y"], [b"", b""], [b"", b""], [b"z", b""]]
    assert x["items"].numpy().tolist() == [[3, 1, -1], [2, -1, -1], [-1, -1, -1], [0, 0, 4]]
    assert x["text_tags"].numpy().tolist() == [[b"x", b"y"], [b"", b""], [b"z", b"x"], [b"", b""]]
    assert np.isnan(x["price"].numpy()[1]) and y.numpy().tolist() == [1, 0, 0, 1]
    schema = ak.Schema([ak.MultiCategorical("tags", vocabulary=["x", "y", "z"]),
                        ak.MultiCategorical("items", vocabulary_size=5, combiner="sum"),
                        ak.MultiCategorical("text_tags", vocabulary=["x", "y", "z"], share_embedding_with="tags"),
                        ak.DenseNumeric("price", normalization="log")])
    ids = FieldIds(schema)(x)
    # Per-field ids (vocabulary ids from 1 after the OOV id 0; integer ids as they are), -1 padding.
    np.testing.assert_array_equal(ids["bag_ids"].numpy()[:, :, :3].tolist(), [
        [[1, 2, -1], [3, 1, -1], [1, 2, -1]], [[-1, -1, -1], [2, -1, -1], [-1, -1, -1]],
        [[-1, -1, -1], [-1, -1, -1], [3, 1, -1]], [[3, -1, -1], [0, 0, 4], [-1, -1, -1]]])
    model = ak.build_model(schema, "deepfm", "aefs", d_main=4, hidden_units=[4], k=2)
    ak.default_compile(model)
    model.fit(ds.repeat(2), epochs=1, verbose=0)
    assert np.isfinite(model.predict(ds, verbose=0)).all()


def _bad_rows_file(tmp_path, line_end="\n"):
    lines = [GOOD[0], "", GOOD[1], " \t ", "1\t2\t3", GOOD[2],
             _criteo_row(0, [1, 2, 3, 4, "x5", 6, 7, 8, 9, 10, 11, 12, 13], ["a"] * 26),
             _criteo_row(1, ["nan"] + [1] * 12, ["d"] * 26),  # TF's number rule rejects "nan"
             "\t" * 39,  # blank cells only, right column count: a blank line
             GOOD[3], GOOD[4], GOOD[5], GOOD[5][:40]]
    path = tmp_path / "bad_rows.txt"
    path.write_bytes(line_end.join(lines).encode())
    return path


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_arrow_engine_equals_tensorflow_engine(tmp_path, line_end):
    path = str(_bad_rows_file(tmp_path, line_end))
    fits = {e: fit_preprocessing("criteo", [path], min_count=1, progress=False, engine=e) for e in ("arrow", "tf")}
    assert fits["arrow"].schema == fits["tf"].schema
    assert fits["arrow"].rows == fits["tf"].rows == 6 and fits["arrow"].skipped == fits["tf"].skipped == 7
    assert list(fits["arrow"].schema.field("C1").vocabulary) == ["a", "b", "c"]  # no empty C1 among the good rows
    # Bounded: the 2 most frequent values per field (ties by value), chosen inside Arrow, equal the
    # TensorFlow engine's exact counts.
    bounded = {e: fit_preprocessing("criteo", [path], min_count=1, max_vocab=2, oov_buckets=3, progress=False,
                                    engine=e) for e in ("arrow", "tf")}
    assert bounded["arrow"].schema == bounded["tf"].schema
    assert list(bounded["arrow"].schema.field("C1").vocabulary) == ["a", "b"]
    # Same bad lines and reasons as the TensorFlow reader reports.
    from aefs_keras.datasets import arrow_scan
    from aefs_keras.datasets.formats import CRITEO, ReadReport

    report = ReadReport([path], keep=10)
    arrow_scan.scan(CRITEO, [path], report, False, lambda n, x: None)
    _, tf_report = load("criteo", path)
    _read_all(_)
    tf_report.keep = 10
    assert report.first_bad[path] == [
        (2, "empty line"), (4, "empty line"), (5, "wrong number of columns"),
        (7, "non-numeric value in a numeric column"), (8, "non-numeric value in a numeric column"),
        (9, "empty line"), (13, "wrong number of columns")]
    assert tf_report.first_bad[path] == report.first_bad[path][:5]
    with pytest.raises(ValueError, match=r"bad_rows\.txt:2: empty line"):
        fit_preprocessing("criteo", [path], progress=False, engine="arrow", strict=True)
    with pytest.raises(ValueError, match="engine='spark'"):
        fit_preprocessing("criteo", [path], progress=False, engine="spark")
    with pytest.raises(ValueError, match="fmt='criteo_tsv'"):
        fit_preprocessing("criteo_tsv", [path], progress=False)


def test_arrow_engine_blocks_and_gzip(tmp_path):
    # Many small blocks: rows split across block edges are neither lost nor doubled.
    from aefs_keras.datasets import arrow_scan
    from aefs_keras.datasets.formats import CRITEO, ReadReport

    rows = [_criteo_row(i % 2, [i] * 13, [f"v{i % 7}"] * 26) for i in range(500)]
    plain = tmp_path / "many.txt"
    plain.write_text("\n".join(rows) + "\n")
    report = ReadReport([str(plain)])
    counts, n = arrow_scan.scan(CRITEO, [str(plain)], report, False, lambda name, x: None, block_bytes=1000)
    assert n == 500 and counts["C3"][b"v0"] == len(range(0, 500, 7))
    gz = tmp_path / "many.txt.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert fit_preprocessing("criteo", [str(gz)], progress=False, engine="arrow").rows == 500
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.txt.gz: corrupt or truncated gzip"):
        fit_preprocessing("criteo", [str(cut)], progress=False, engine="arrow")


def test_avazu_time_fields(tmp_path):
    header = "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category," \
             "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21"
    rest = ",".join(["x"] * 21)
    # 2014-10-21 was a Tuesday, 2016-02-29 a Monday, 2014-10-26 a Sunday.
    lines = [header, f"1,0,14102100,{rest}", f"2,1,16022923,{rest}", f"3,0,14102607,{rest}",
             f"4,0,14023000,{rest}", f"5,0,1410210x,{rest}", f"6,1,14102124,{rest}"]
    path = tmp_path / "avazu.csv"
    path.write_text("\n".join(lines) + "\n")
    ds, report = load("avazu_time", str(path))
    feats, labels = _read_all(ds)
    assert labels == [0.0, 1.0, 0.0] and "hour" not in feats
    assert feats["hour_of_day"] == [b"00", b"23", b"07"] and feats["weekday"] == [b"1", b"0", b"6"]
    assert report.first_bad[str(path)] == [(5, "bad time value (expected YYMMDDHH)"),
                                           (6, "bad time value (expected YYMMDDHH)"),
                                           (7, "bad time value (expected YYMMDDHH)")]
    fits = [fit_preprocessing("avazu_time", [str(path)], min_count=1, progress=False, engine=e)
            for e in ("arrow", "tf")]
    assert fits[0].schema == fits[1].schema and fits[0].skipped == fits[1].skipped == 3
    assert list(fits[0].schema.field("weekday").vocabulary) == ["0", "1", "6"]
    saved = tmp_path / "a.json"
    fits[0].save(str(saved))
    assert Preprocessing.load(str(saved)).format.split_time == "hour"


def test_shared_files_same_artifact_on_both_engines():
    criteo = shared_data("criteo_small")
    avazu = shared_data("avazu_small")
    for fmt, path in (("criteo", criteo / "train.csv"), ("avazu", avazu / "train.csv")):
        a, t = (fit_preprocessing(fmt, [str(path)], progress=False, engine=e) for e in ("arrow", "tf"))
        assert a.schema == t.schema and a.rows == t.rows and a.skipped == t.skipped == 0


def test_split_by_time_column_text_and_parquet(tmp_path):
    """split_mode="time:COLUMN": the earliest rows train, the latest test,
    whatever the file order; equal times stay together; a row without a
    number there is a bad row."""
    rng = np.random.default_rng(0)
    n = 1000
    when = rng.permutation(n) // 2 * 10  # pairs of equal times, shuffled
    path = tmp_path / "t.csv"
    rows = [f"{i % 2},{w},u{i % 7}" for i, w in enumerate(when)] + ["1,not-a-time,u1"]
    path.write_text("label,ts,user\n" + "\n".join(rows) + "\n")
    fmt = csv_format([("label", "label"), ("ts", "numeric"), ("user", "categorical")], header="always")
    got = {}
    for part in ((0.0, 0.8), (0.8, 0.9), (0.9, 1.0)):
        ds, report = read_text(fmt, [str(path)], batch_size=64, split=part, split_mode="time:ts")
        got[part] = np.concatenate([x["ts"].numpy() for x, _ in ds])
        assert report.total_skipped == 1 and "non-numeric" in str(report)
    train, valid, test = got.values()
    assert len(train) + len(valid) + len(test) == n
    assert train.max() < valid.min() and valid.max() < test.min()
    assert (len(train), len(valid), len(test)) == (800, 100, 100)  # the cuts fall between pairs here
    with pytest.raises(ValueError, match="no column 'when'"):
        read_text(fmt, [str(path)], split=(0, 0.5), split_mode="time:when")

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"label": [i % 2 for i in range(n)], "ts": when.astype("int64"),
                             "user": [f"u{i % 7}" for i in range(n)]}), tmp_path / "t.parquet")
    columns = [("label", "label"), ("ts", "numeric"), ("user", "categorical")]
    parts = [np.concatenate([x["ts"].numpy() for x, _ in ak.datasets.read_parquet(
        str(tmp_path / "t.parquet"), columns, batch_size=64, split=part, split_mode="time:ts")])
        for part in ((0.0, 0.8), (0.8, 0.9), (0.9, 1.0))]
    for a, b in zip(parts, got.values()):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))


def test_parquet_categories_are_read_as_they_were_counted(tmp_path):
    """Booleans, floats and integers read as categories: the reader's text
    is the text the preprocessing counted (Arrow's), so none is OOV."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = str(tmp_path / "kinds.parquet")
    pq.write_table(pa.table({"flag": [True, False, None, True], "score": [1.0, 2.5, 1.0, None],
                             "code": pa.array([3, 4, 3, 3], pa.int32()), "click": [1, 0, 1, 0]}), path)
    fmt = csv_format([("flag", "categorical"), ("score", "categorical"), ("code", "categorical"),
                      ("click", "label")], header="always")
    pp = fit_preprocessing(fmt, [path], min_count=1, progress=False)
    ds, _ = load(fmt, [path], batch_size=4)
    x, _ = next(iter(ds))
    for name in ("flag", "score", "code"):
        values = [v.decode() for v in x[name].numpy()]
        vocab = pp.schema.field(name).vocabulary
        assert all(v in vocab for v in values), (name, values, vocab)
    assert [v.decode() for v in x["flag"].numpy()] == ["true", "false", "", "true"]


def test_parquet_integer_lists_through_the_artifact(tmp_path):
    """A list<integer> column fitted by the preprocessing has a text
    vocabulary; read as the artifact reads it (`lists_as_text`, what the
    CLI and an artifact path ask for) it feeds the artifact's model, ids
    matching the vocabulary."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = str(tmp_path / "ids.parquet")
    pq.write_table(pa.table({"items": pa.array([[3, 1], [2], [], [3, None, 7]], pa.list_(pa.int64())),
                             "click": [1, 0, 0, 1]}), path)
    fmt = csv_format([("items", "multi_categorical"), ("click", "label")], header="always")
    pp = fit_preprocessing(fmt, [path], min_count=1, progress=False)
    vocab = list(pp.schema.field("items").vocabulary)
    assert sorted(vocab) == ["1", "2", "3", "7"]
    ds, _ = load(fmt, [path], batch_size=4, lists_as_text=True)
    x, _ = next(iter(ds))
    assert x["items"].numpy().tolist() == [[b"3", b"1"], [b"2", b""], [b"", b""], [b"3", b"7"]]  # null dropped
    pp.save(str(tmp_path / "pp.json"))
    ds_artifact, _ = load(str(tmp_path / "pp.json"), [path], batch_size=4)  # an artifact: text by default
    np.testing.assert_array_equal(next(iter(ds_artifact))[0]["items"], x["items"])
    ids = FieldIds(pp.schema)(x)["bag_ids"].numpy()[:, 0]
    first = [1 + vocab.index(v) for v in ("3", "1")]  # ids from 1 after the OOV id 0
    assert ids[0, :2].tolist() == first and (ids[2] == -1).all()
    model = ak.build_model(pp.schema, "deepfm", None, d_main=4, hidden_units=[4])
    assert np.isfinite(model(x)).all()
    # Without lists_as_text the ids stay integers (for schemas with integer ids).
    assert next(iter(load(fmt, [path], batch_size=4)[0]))[0]["items"].dtype == tf.int64


def _stream_counts(budget, chunks):
    """Feeds `chunks` (arrays of bytes values) to a `_Counts` of `budget`."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    from aefs_keras.datasets.arrow_scan import _Counts

    c = _Counts(budget)
    sizes = []
    for chunk in chunks:
        c.add(pc.value_counts(pa.array(chunk, pa.binary())))
        if c.table is not None:
            sizes.append(len(c.table))
    return c, sizes


def test_count_budget_space_saving_bounds():
    # A Zipf stream whose distinct values far exceed the budget: counts kept
    # bound the truth from above within their error, nothing seen more
    # often than the floor is lost, and the table never outgrows the budget.
    rng = np.random.default_rng(0)
    ranks = np.minimum(rng.zipf(1.3, 60_000), 50_000)
    values = np.array([f"v{r}".encode() for r in ranks], dtype=object)
    chunks = np.array_split(values, 60)
    true = dict(zip(*np.unique(values.astype(bytes), return_counts=True)))
    exact, _ = _stream_counts(None, chunks)
    assert exact.result(1) == {v: int(k) for v, k in true.items()} and exact.floor == 0
    budget = 300
    c, sizes = _stream_counts(budget, chunks)
    assert len(true) > 10 * budget and max(sizes) <= budget and c.floor > 0
    table = c.table.to_pydict()
    for v, est, err in zip(table["v"], table["c"], table["e"]):
        assert true[v] <= est <= true[v] + err and err <= c.floor
    kept = set(table["v"])
    assert all(v in kept for v, k in true.items() if k > c.floor)
    # The 20 most frequent are certain here, and equal the exact top 20.
    top = c.result(1, max_size=20)
    assert c.exact_set
    assert set(top) == set(sorted(true, key=lambda v: (-true[v], v))[:20])
    # A top 290 of a 300 budget cannot be certified.
    c.result(1, max_size=290)
    assert not c.exact_set


def test_count_budget_through_fit_preprocessing(tmp_path):
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    ranks = np.minimum(rng.zipf(1.2, 4000), 3000)
    rows = [_criteo_row(i % 2, [i % 5] * 13, [f"c{ranks[i]}"] + [f"v{i % 3}"] * 25) for i in range(4000)]
    path = tmp_path / "zipf.txt"
    path.write_text("\n".join(rows) + "\n")
    fit = lambda **kw: fit_preprocessing("criteo", [str(path)], min_count=2, max_vocab=10, progress=False,
                                         engine="arrow", **kw)
    plain, roomy, tight = fit(), fit(count_budget=100_000), fit(count_budget=40)
    assert roomy.schema == plain.schema and roomy.options["approximate_counts"] == {}
    assert "count_budget" not in plain.options
    approx = tight.options["approximate_counts"]
    assert list(approx) == ["C1"] and approx["C1"]["floor"] > 0
    if approx["C1"]["exact_set"]:
        assert set(tight.schema.field("C1").vocabulary) == set(plain.schema.field("C1").vocabulary)
    # The record survives the artifact.
    tight.save(str(tmp_path / "a.json"))
    assert Preprocessing.load(str(tmp_path / "a.json")).options["approximate_counts"] == approx
    # The command line's flag reaches it.
    from aefs_keras import cli

    out = tmp_path / "cli.json"
    assert cli.main(["preprocess", "criteo", str(path), "--out", str(out), "--engine", "arrow",
                     "--max-vocab", "10", "--count-budget", "40"]) == 0
    assert Preprocessing.load(str(out)).options["approximate_counts"] == approx
    with pytest.raises(ValueError, match="count_budget=5"):
        fit(count_budget=5)
    with pytest.raises(ValueError, match="needs the arrow engine"):
        fit_preprocessing("criteo", [str(path)], progress=False, engine="tf", count_budget=100)


def test_shuffle_rows_permutes_within_blocks_anew_each_epoch():
    from aefs_keras.datasets.readers import shuffle_rows

    n = 25
    rows = tf.data.Dataset.from_tensor_slices(({"a": tf.range(n), "b": tf.range(n) * 10}, tf.range(n) * 100))
    ds = shuffle_rows(rows.batch(3), batch_size=4, seed=7, block=10)  # uneven batches in, blocks of 10

    def epoch():
        out = list(ds)
        assert [int(tf.shape(y)[0]) for _, y in out] == [4] * 6 + [1]
        a = np.concatenate([x["a"].numpy() for x, _ in out])
        # features and label stay together
        np.testing.assert_array_equal(np.concatenate([x["b"].numpy() for x, _ in out]), a * 10)
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in out]), a * 100)
        return a

    first, second = epoch(), epoch()
    for a in (first, second):
        # each row once, and each block of 10 rows stays in its own 10 positions
        assert sorted(a) == list(range(n))
        for start in range(0, n, 10):
            assert sorted(a[start:start + 10]) == list(range(start, min(start + 10, n)))
    assert list(first) != list(second)  # a new order each epoch
    again = shuffle_rows(rows.batch(3), batch_size=4, seed=7, block=10)
    assert list(np.concatenate([x["a"].numpy() for x, _ in again])) == list(first)  # seeded
    other = shuffle_rows(rows.batch(3), batch_size=4, seed=8, block=10)
    assert list(np.concatenate([x["a"].numpy() for x, _ in other])) != list(first)
