"""Column kinds settled on the whole file, and bad rows reported once,
before training, by column (aefs_keras.datasets.infer)."""

import re

import pytest

from aefs_keras import cli
from aefs_keras.datasets.infer import infer_format


def _write(path, rows, header="label,user,year,price"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def _rows(n, year=lambda i: str(1990 + i % 30), price=lambda i: f"{(i * 7919) % 100003 / 7:.3f}"):
    return [f"{i % 2},u{i % 40},{year(i)},{price(i)}" for i in range(n)]


def test_a_word_after_the_sample_makes_a_year_column_categorical(tmp_path):
    # Data row 3,000 is the file's line 3,001 (the header is line 1).
    path = _write(tmp_path / "d.csv", _rows(5000, year=lambda i: "unknown" if i == 2999 else str(1990 + i % 30)))
    fmt, why = infer_format(str(path))
    assert dict(fmt.features)["year"] == "categorical"
    assert "line 3001 holds 'unknown'" in why["year"] and "read as categories" in why["year"]
    assert why.bad_rows.lines == 5000 and why.bad_rows.bad_rows == 0 and str(why.bad_rows) == ""


def test_a_word_in_a_many_valued_numeric_column_is_named_with_its_rows(tmp_path):
    rows = _rows(5000, price=lambda i: "n/a" if i in (2500, 4000) else f"{i * 1.37:.2f}")
    path = _write(tmp_path / "d.csv", rows + ["1,u3", "", "x,u1,1999,2.5"])
    fmt, why = infer_format(str(path))
    assert dict(fmt.features)["price"] == "numeric"
    assert "first line 2502 holding 'n/a'" in why["price"] and "--categorical price" in why["price"]
    scan = why.bad_rows
    assert scan.lines == 5003 and scan.bad_rows == 5  # 2 n/a, 1 short row, 1 empty line, 1 bad label
    text = str(scan)
    assert "non-number in numeric column 'price': 2 (first at line 2502, 'n/a')" in text
    assert "wrong number of columns: 1 (first at line 5002" in text and "empty line: 1 (first at line 5003)" in text
    assert "non-number in the label: 1 (first at line 5004, 'x')" in text
    with pytest.raises(ValueError, match=r"d\.csv:2502: column 'price' holds 'n/a', not a number "
                                         r"\(--categorical price reads it as a category\)"):
        infer_format(str(path), strict=True)


def test_train_keeps_the_row_and_reports_bad_rows_once_before_training(tmp_path, capsys):
    rows = _rows(4000, year=lambda i: "unknown" if i == 2999 else str(1990 + i % 30))
    path = _write(tmp_path / "d.csv", rows + ["1,u3"])
    code = cli.main(["train", "--train", str(path), "--epochs", "1", "--hidden-units", "8", "--d-main", "4",
                     "--batch-size", "1024", "--out", str(tmp_path / "m")])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"year\s+categorical\s+\(numbers, but line 3001 holds 'unknown'", out)
    assert out.count("wrong number of columns") == 1
    report = out.index("Bad rows in")
    assert report < out.index("Best epoch") and "rows read" not in out
