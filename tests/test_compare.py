"""`aefs-keras compare` / `ak.compare`: every method on the user's file, one
table, the AUC-cost frontier and a recommendation made on validation."""

import json
import re

import numpy as np
import pytest

from aefs_keras import cli
from aefs_keras.comparison import Candidate, mark_frontier, recommend


def _c(method, val, values, serve=1.0):
    return Candidate(method, 1e-3, val, 0.0, 0.0, values, 0.0, serve, 1, {})


def test_recommendation_is_the_cheapest_near_the_best():
    cands = [_c("none", 0.8000, 100), _c("static", 0.7995, 50), _c("mixed_dimension", 0.8004, 70),
             _c("aefs", 0.7990, 80)]
    best, why = recommend(cands, max_auc_loss=0.001)
    assert best.method == "static" and "cheapest" in why
    assert recommend(cands, max_auc_loss=0.0001)[0].method == "mixed_dimension"
    assert recommend(cands, budget=75)[0].method == "mixed_dimension"
    with pytest.raises(ValueError, match="budget"):
        recommend(cands, budget=10)
    # Equal cost: the faster to serve.
    assert recommend([_c("none", 0.8, 50, serve=1.0), _c("static", 0.8, 50, serve=2.0)])[0].method == "static"
    mark_frontier(cands)
    assert [c.on_frontier for c in cands] == [False, True, True, False]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 4000
    a, b, c, d = rng.integers(0, 30, n), rng.integers(0, 10, n), rng.normal(size=n), rng.integers(0, 40, n)
    logit = rng.normal(size=30)[a] + 0.8 * c - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    path = tmp_path_factory.mktemp("cmp") / "clicks.csv"
    with open(path, "w") as f:
        f.write("click,site,slot,score,noise\n")
        for i in range(n):
            f.write(f"{y[i]},s{a[i]},{b[i]},{c[i]:.3f},n{d[i]}\n")
    return path


def test_compare_on_a_tiny_file(tiny, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code = cli.main(["compare", "--train", str(tiny), "--label", "click", "--k", "2", "--epochs", "2",
                     "--learning-rates", "0.003", "--batch-size", "512", "--hidden-units", "8", "--d-main", "8",
                     "--out", str(out_dir), "--name", "pick"])
    assert code == 0
    out = capsys.readouterr().out
    for label in ("no selection", "static top-k", "static mixed-dimension", "AEFS (paper's form)",
                  "AEFS (mixed resolution)"):
        assert re.search(rf"^{re.escape(label)}\s+0\.003\s+0\.\d{{4}}\s+0\.\d{{4}}", out, re.M), label
    ranking = re.search(r"fields by validation AUC lost when shuffled: (.*)\n", out).group(1).split(", ")
    assert {r.split(" ")[0] for r in ranking[:2]} == {"site", "score"}  # the planted fields first
    assert out.count("<- recommended") == 1
    report = json.loads((out_dir / "pick.json").read_text())
    chosen = [c for c in report["candidates"] if c["method"] == report["recommended"]][0]
    best = max(c["val_auc"] for c in report["candidates"])
    cheaper = [c for c in report["candidates"] if c["val_auc"] >= best - 0.001
               and c["values_per_example"] < chosen["values_per_example"]]
    assert chosen["val_auc"] >= best - 0.001 and not cheaper  # chosen on validation, as the rule says
    assert (out_dir / "pick.png").stat().st_size > 1000
    assert (out_dir / "pick.keras").exists() and (out_dir / "serving" / "pick" / "1" / "saved_model.pb").exists()
    # Static methods read the planted fields: k = 2 of 4.
    values = {c["method"]: c["values_per_example"] for c in report["candidates"]}
    assert values["static"] == 2 * 8 + 2 and values["mixed_dimension"] == 2 * 8 + 2 * 4 + 4


def test_compare_argument_errors(tiny, capsys):
    assert cli.main(["compare", "--train", str(tiny), "--label", "click", "--methods", "lasso"]) == 2
    assert "--methods must be some of" in capsys.readouterr().err
    assert cli.main(["compare", "--train", str(tiny), "--label", "click", "--k", "2", "--k-ratio", "0.5"]) == 2
    assert "Give --k or --k-ratio, not both" in capsys.readouterr().err
