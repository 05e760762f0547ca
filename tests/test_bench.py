"""`aefs-keras bench`: config expansion and errors, the statistics of the
report computed by hand, and a tiny grid end to end (resume included)."""

import json
import math
import os
import re

import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras.bench import load_config
from aefs_keras.bench import report
from aefs_keras.cli import main


def _config(**grid):
    return {"settings": {"max_epochs": 1}, "grids": [{"datasets": ["synthetic"], **grid}]}


def test_grid_expansion_and_quick():
    cfg = load_config({
        "name": "x",
        "grids": [{"name": "g", "datasets": ["synthetic", "frappe"], "backbones": ["deepfm", "dcn"],
                   "selections": ["none", "aefs_adafs"], "k_ratios": [0.3, 0.5], "seeds": [0, 1, 2]}],
        "quick": {"seeds": [0], "datasets": ["frappe"], "max_epochs": 2},
    })
    # none runs once per seed (k does not apply): 2 datasets x 2 backbones x (1 + 2 k) x 3 seeds.
    assert len(cfg.runs) == 2 * 2 * 3 * 3
    assert {r.k_ratio for r in cfg.runs if r.selection == "none"} == {None}
    quick = load_config(cfg.source, quick=True)
    assert len(quick.runs) == 1 * 2 * 3 * 1 and quick.settings["max_epochs"] == 2
    assert {r.dataset for r in quick.runs} == {"frappe"}
    assert cfg.fingerprint != quick.fingerprint


@pytest.mark.parametrize("bad, message", [
    (_config(selections=["lasso"]), r"`selections` has unknown value\(s\) \['lasso'\]"),
    (_config(selections=["aefs_adafs"], k_ratios=[1.5]), r"k_ratios=\[1.5\]"),
    (_config(selections=["none"], datasets=["imagenet"]), r"`datasets` has unknown value\(s\) \['imagenet'\]"),
    ({"settings": {"epochs": 3}, "grids": [{"datasets": ["synthetic"], "selections": ["none"]}]},
     r"Unknown setting\(s\) \['epochs'\]"),
    (_config(selections=["none"], backbone=["dnn"]), r"unknown key\(s\) \['backbone'\]"),
    ({"grids": []}, "`grids` must be a non-empty list"),
    ({**_config(selections=["none"]), "summary": {"pairs": [{"dataset": "frappe", "backbone": "deepfm",
                                                            "grid": "nope"}]}},
     r"`summary` names grid 'nope'"),
    ({**_config(selections=["none"]), "summary": {"pairs": [{"dataset": "frappe"}]}},
     r"exactly `dataset`, `backbone` and `grid`"),
])
def test_config_errors_name_the_key_and_value(bad, message):
    with pytest.raises(ValueError, match=message):
        load_config(bad)


def test_statistics_by_hand():
    # a: mean 0.8, sd 0.01; b: mean 0.79, sd 0.02 (n = 3 each).
    a, b = [0.79, 0.80, 0.81], [0.77, 0.79, 0.81]
    c = report.compare(a, b)
    assert c["diff"] == pytest.approx(0.01)
    assert c["bound"] == pytest.approx(2 * math.sqrt(0.01 ** 2 / 3 + 0.02 ** 2 / 3))
    assert c["within_noise"] is True  # 0.01 <= 0.0258
    assert report.compare([0.9, 0.9001, 0.9002], [0.8, 0.8001, 0.8002])["within_noise"] is False
    assert report.compare([0.8], [0.79])["within_noise"] is None
    # AUKC: trapezoids over k = 0.3, 0.5, 0.7 of AUC 0.70, 0.74, 0.76 -> (0.2*0.72 + 0.2*0.75) / 0.4.
    rs = [{"grid": "g", "dataset": "d", "backbone": "deepfm", "selection": "adafs", "k_ratio": k, "variant": "default",
           "auc": auc} for k, auc in ((0.3, 0.70), (0.5, 0.74), (0.7, 0.76))]
    assert "| 0.7350 | default, default, default |" in report.aukc_table(rs, "g")
    # Searched: each k's point is the variant with the better validation AUC at that k (here "b" at
    # k = 0.5 only: 0.70, 0.78, 0.76 -> (0.2*0.74 + 0.2*0.77) / 0.4), whatever its test AUC.
    searched = [dict(r, val_auc=0.6) for r in rs] + [
        dict(rs[1], variant="b", val_auc=0.61, auc=0.78), dict(rs[2], variant="b", val_auc=0.59, auc=0.90)]
    assert "| 0.7550 | default, b, default |" in report.aukc_table(searched, "g")


def test_verdicts_need_a_baseline():
    def run(sel, auc, params):
        return {"grid": "g", "dataset": "d", "backbone": "deepfm", "selection": sel,
                "k_ratio": None if sel == "none" else 0.5, "variant": "default", "auc": auc,
                "activated_embedding_parameters": params}
    aefs = [run("aefs_adafs", a, 783) for a in (0.80, 0.81, 0.82)]
    assert report.verdicts(aefs, "g") == []  # no baseline: no "nan % fewer" line
    lines = report.verdicts(aefs + [run("none", a, 1287) for a in (0.80, 0.81, 0.82)], "g")
    assert lines == ["- **d**, deepfm, k = 0.5: AEFS vs none (all fields) +0.0000 (2 SE 0.0163): "
                     "within noise; activated embedding parameters 39.2% fewer than none "
                     "(meets the 35 % target)."]


def test_tiny_grid_end_to_end_and_resume(tmp_path, capsys):
    cfg = {
        "name": "tiny",
        "settings": {"synthetic_rows": 4000, "batch_size": 256, "max_epochs": 2, "patience": 1,
                     "static_search_epochs": 1, "d_main": 8, "hidden_units": [8]},
        "grids": [{"name": "m", "datasets": ["synthetic"], "backbones": ["deepfm"],
                   "selections": ["none", "static", "aefs_adafs"], "k_ratios": [0.3, 0.5], "seeds": [0]},
                  # The same run under another grid and variant name is taken over, not trained again.
                  {"name": "again", "datasets": ["synthetic"], "backbones": ["deepfm"], "selections": ["none"],
                   "seeds": [0], "variants": {"same": {}}}],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    out, doc = tmp_path / "out", tmp_path / "docs" / "results.md"
    assert main(["bench", str(path), "--out", str(out), "--report", str(doc)]) == 0
    payload = json.loads((out / "results.json").read_text())
    runs = {r["key"]: r for r in payload["results"]}
    assert len(runs) == 1 + 2 * 2 + 1
    none = runs["m/synthetic/deepfm/none/-/default/0"]
    again = runs.pop("again/synthetic/deepfm/none/-/same/0")
    assert again["reused_from"] == none["key"] and again["grid"] == "again" and again["variant"] == "same"
    assert {k: v for k, v in again.items() if k not in ("key", "grid", "variant", "reused_from")} == {
        k: v for k, v in none.items() if k not in ("key", "grid", "variant")}
    assert "again/synthetic/deepfm/none/-/same/0: taken over from m/synthetic" in capsys.readouterr().out
    assert none["activated_embedding_parameters"] == 39 * (8 + 1)  # DeepFM: d_main + first-order weight
    static = runs["m/synthetic/deepfm/static/0.5/default/0"]
    assert len(static["static_fields"]) == 19 and static["activated_embedding_parameters"] == 19 * 9
    aefs = runs["m/synthetic/deepfm/aefs_adafs/0.3/default/0"]
    assert aefs["k"] == 11 and aefs["activated_embedding_parameters"] == 39 * 4 + 11 * 9
    freq = np.array(aefs["selection_frequency"])
    assert freq.shape == (39,) and freq.sum() == pytest.approx(11)  # every test row keeps exactly k fields
    for r in runs.values():
        assert 0.4 < r["auc"] < 1 and r["train_examples_per_s"] > 0 and r["serving_examples_per_s"] > 0
    text = doc.read_text()
    assert "aefs-keras bench" in text and "| synthetic | deepfm | AEFS (mini-AdaFS) | 0.3 (11) |" in text
    for png in ("m_auc_vs_k.png", "m_throughput_vs_k.png", "m_selection_synthetic.png"):
        assert (out / png).stat().st_size > 1000 and f"({os.path.relpath(out / png, doc.parent)})" in text
    assert (out / "results.csv").read_text().count("\n") == 1 + 6
    assert all(r["machine"] == payload["machine"] for r in runs.values())
    # The code each run ran: this checkout's commit (the fingerprint covers settings only).
    assert all(re.fullmatch(r"[0-9a-f]{40}(\+uncommitted)?|unknown", r["code"]) for r in runs.values())
    assert f"Machine: {payload['machine']}." in text
    # Rerun: nothing left to train, same results.
    capsys.readouterr()
    assert main(["bench", str(path), "--out", str(out), "--report", str(doc)]) == 0
    assert "6 already done, 0 to run" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["results"] == payload["results"]


def test_grid_variants_reach_the_selection_objects():
    from aefs_keras.bench.config import SETTINGS, RunSpec
    from aefs_keras.bench.runner import _model_args

    def spec(selection, **overrides):
        return RunSpec("g", "synthetic", "deepfm", selection, None if selection == "none" else 0.5, "v",
                       tuple(sorted(overrides.items())), (), 0)

    core = _model_args(spec("aefs_mvfs", warmup_steps=5), SETTINGS)["selection"]
    assert type(core) is ak.AEFS and core.controller == "mvfs" and core.warmup_steps == 5
    research = _model_args(spec("aefs_adafs", main_weighting="straight_through"), SETTINGS)["selection"]
    assert isinstance(research, ak.experimental.ResearchAEFS) and research.main_weighting == "straight_through"
    prior = _model_args(spec("aefs_adafs", field_prior="importance"), SETTINGS, importance=lambda: [0.0, 1.0])
    assert len(prior["selection"].field_prior) == 2
    assert "selection" not in _model_args(spec("none"), SETTINGS)
    with pytest.raises(ValueError, match="need a selecting method"):
        _model_args(spec("none", warmup_steps=5), SETTINGS)
    with pytest.raises(ValueError, match="`warmup_steps` does not apply to selection='adafs'"):
        _model_args(spec("adafs", warmup_steps=5), SETTINGS)


def test_search_gives_each_method_its_own_variants():
    cfg = load_config({"grids": [{"name": "fair", "datasets": ["frappe"], "selections": ["none", "adafs"],
                                  "seeds": [0, 1], "search": {
                                      "none": {"a": {}, "b": {"learning_rate": 0.003}},
                                      "adafs": {"ours": {}, "paper": {"weight_scale": "sum"}}}}]})
    variants = sorted({(r.selection, r.variant, r.overrides) for r in cfg.runs})
    assert variants == [("adafs", "ours", ()), ("adafs", "paper", (("weight_scale", "sum"),)),
                        ("none", "a", ()), ("none", "b", (("learning_rate", 0.003),))]
    assert len(cfg.runs) == 8  # 2 methods x 2 variants x 2 seeds
    # learning_rate is a training setting, not a selection option.
    from aefs_keras.bench.config import SETTINGS
    from aefs_keras.bench.runner import _model_args
    none_b = [r for r in cfg.runs if r.variant == "b"][0]
    assert "selection" not in _model_args(none_b, SETTINGS)
    with pytest.raises(ValueError, match="not in its selections"):
        load_config({"grids": [{"datasets": ["frappe"], "selections": ["none"], "search": {"adafs": {"x": {}}}}]})
    with pytest.raises(ValueError, match="`search` must map methods"):
        load_config({"grids": [{"datasets": ["frappe"], "selections": ["none"], "search": {"none": {}}}]})


def test_validated_best_is_chosen_on_validation_not_test():
    def run(sel, variant, val, auc, overrides=None):
        return {"grid": "g", "dataset": "d", "backbone": "deepfm", "selection": sel,
                "k_ratio": None if sel == "none" else 0.5, "variant": variant, "val_auc": val, "auc": auc,
                "overrides": overrides or {}, "k": 2}
    rs = ([run("none", "lr_1e-3", v, a) for v, a in ((0.70, 0.80), (0.71, 0.81))]
          + [run("none", "lr_3e-3", v, a, {"learning_rate": 0.003}) for v, a in ((0.72, 0.70), (0.73, 0.71))]
          + [run("aefs_adafs", "ours", v, a) for v, a in ((0.72, 0.75), (0.72, 0.76))])
    chosen = report.validated(rs, "g")
    # lr_3e-3 has the better validation AUC (0.725 vs 0.705) and the worse test AUC: it is chosen.
    assert chosen[("d", "deepfm", "none", None)][0] == "lr_3e-3"
    table = report.validated_table(rs, "g")
    assert "lr_3e-3 (learning_rate=0.003) | 0.7250 | 0.7050 ± 0.0071 | lr_1e-3 0.7050 |" in table
    lines = report.validated_verdicts(rs, "g")
    assert lines == ["- **d**, deepfm, k = 0.5: AEFS (ours) vs none (all fields) (lr_3e-3) +0.0500 "
                     "(2 SE 0.0141): ABOVE."]  # 2 * sqrt(2 * 0.00707^2 / 2)
    # One variant per method: nothing was searched, no table; named variants
    # (fixed by an earlier search) still get their verdict, all-default ones do not.
    fixed = [r for r in rs if r["variant"] != "lr_3e-3"]
    assert report.validated_table(fixed, "g") is None
    assert report._fixed_variants(fixed, "g") and not report._fixed_variants(rs, "g")
    assert not report._fixed_variants([{**r, "variant": "default"} for r in fixed], "g")
    assert report.validated_verdicts(fixed, "g") == [
        "- **d**, deepfm, k = 0.5: AEFS (ours) vs none (all fields) (lr_1e-3) -0.0500 (2 SE 0.0141): BELOW."]


def test_summary_takes_each_pair_from_its_own_grid():
    def run(grid, ds, sel, variant, val, auc, k_ratio=0.5):
        return {"grid": grid, "dataset": ds, "backbone": "deepfm", "selection": sel,
                "k_ratio": None if sel == "none" else k_ratio, "variant": variant, "val_auc": val, "auc": auc,
                "overrides": {}, "k": 2}
    rs = ([run("a", "d1", "none", "lr", 0.7, a) for a in (0.80, 0.82)]
          + [run("a", "d1", "aefs_adafs", "mixed", 0.7, a) for a in (0.81, 0.83)]
          # grid b: AEFS's better validation variant is the worse one on test; it is the one reported
          + [run("b", "d2", "none", "lr", 0.7, a) for a in (0.90, 0.90)]
          + [run("b", "d2", "aefs_adafs", "good_val", 0.8, a) for a in (0.85, 0.87)]
          + [run("b", "d2", "aefs_adafs", "bad_val", 0.6, a) for a in (0.95, 0.95)]
          # a grid the summary does not name: ignored
          + [run("c", "d2", "aefs_adafs", "x", 0.9, a) for a in (0.99, 0.99)]
          + [run("k", "d1", sel, "v", 0.7, auc, kr) for sel, kr, auc in
             (("static", 0.3, 0.70), ("static", 0.7, 0.80), ("aefs_adafs", 0.3, 0.74), ("aefs_adafs", 0.7, 0.78))])
    lines = report.summary_section(rs, {"pairs": [{"dataset": "d1", "backbone": "deepfm", "grid": "a"},
                                                  {"dataset": "d2", "backbone": "deepfm", "grid": "b"},
                                                  {"dataset": "d3", "backbone": "deepfm", "grid": "a"}],
                                        "aukc_grid": "k", "note": "See elsewhere."})
    text = "\n".join(lines)
    # d1: +0.0100, 2 SE = 2 * sqrt(0.01414^2 / 2 * 2) = 0.0283 -> within noise
    assert "| d1 | deepfm | `a` | lr, 0.8100 ± 0.0141 | mixed, 0.8200 ± 0.0141 | +0.0100 (0.0283) | within noise | 2, 2 |" in text
    # d2: 0.86 - 0.90 = -0.0400, 2 SE = 2 * sqrt(0.01414^2 / 2) = 0.0200 -> below
    assert "| d2 | deepfm | `b` | lr, 0.9000 ± 0.0000 | good_val, 0.8600 ± 0.0141 | -0.0400 (0.0200) | BELOW |" in text
    assert "on 1 of 2 pairs; below it on d2 deepfm -0.0400 (2 SE 0.0200)." in text
    assert "No runs yet for: d3 deepfm (a)." in text
    # AUKC: mean of the two k points: AEFS 0.76, static 0.75
    assert "d1 (deepfm) 0.7600 against 0.7500: at least the static top-k's." in text
    assert lines[-1] == "See elsewhere."


def test_methods_against_none_within_one_grid():
    def run(sel, variant, val, auc, values=10):
        return {"grid": "m", "dataset": "d", "backbone": "dcn", "selection": sel,
                "k_ratio": None if sel == "none" else 0.5, "variant": variant, "val_auc": val, "auc": auc,
                "overrides": {}, "k": 2, "activated_embedding_parameters": values}
    rs = ([run("none", "lr_1e-3", 0.70, a, 20) for a in (0.80, 0.82)]
          + [run("none", "lr_3e-3", 0.60, a, 20) for a in (0.99, 0.99)]  # better on test, worse on validation
          + [run("mixed_dimension", "lr_1e-3", 0.71, a, 12) for a in (0.83, 0.85)]
          + [{**run("mixed_dimension", "x", 0.9, 0.5), "grid": "other"}])  # another grid: ignored
    text = "\n".join(report.methods_against_none(rs, "m"))
    # 0.84 - 0.81 = +0.0300; 2 SE = 2 * sqrt(2 * 0.01414^2 / 2) = 0.0283 -> above
    assert "| d | dcn | static mixed-dimension: lr_1e-3 | 0.8400 ± 0.0141 | +0.0300 (0.0283) | ABOVE | 12 (20) | 2 |" in text
    assert text.count("| d | dcn |") == 1


def test_frontier_marks_points_no_other_point_beats():
    def run(sel, k, auc, values, train, serve):
        return {"grid": "g", "dataset": "d", "backbone": "deepfm", "selection": sel, "k_ratio": k,
                "variant": "default", "auc": auc, "activated_embedding_parameters": values,
                "train_examples_per_s": train, "serving_examples_per_s": serve}
    rs = [run("none", None, 0.80, 100, 10.0, 50.0), run("static", 0.5, 0.79, 50, 20.0, 100.0),
          run("aefs_adafs", 0.5, 0.78, 60, 8.0, 40.0)]
    table = report.frontier_table(rs, "g")
    # AEFS: less AUC than static at more cost on every axis; none: the best AUC; static: the cheapest.
    assert "| AEFS (mini-AdaFS) | 0.5 | 0.7800 | 60 | 8 | 40 | - |" in table
    assert "| none (all fields) | - | 0.8000 | 100 | 10 | 50 | values, train, serve |" in table
    assert "| static early (global top-k) | 0.5 | 0.7900 | 50 | 20 | 100 | values, train, serve |" in table
    # Timed on another machine, AEFS's 10x throughput does not beat the others' times (nor they its):
    # only the embedding values are compared across machines.
    fast = [dict(r, machine="Intel Xeon, 2 cores") for r in rs[:2]] + [
        dict(rs[2], machine="AMD EPYC, 2 cores", train_examples_per_s=100.0, serving_examples_per_s=500.0)]
    table = report.frontier_table(fast, "g")
    assert "| AEFS (mini-AdaFS) | 0.5 | 0.7800 | 60 | 100 | 500 | AMD EPYC | train, serve |" in table
    assert "| static early (global top-k) | 0.5 | 0.7900 | 50 | 20 | 100 | Intel Xeon | values, train, serve |" in table


def test_machines_line_names_each_grids_machines():
    from aefs_keras.bench.report import machines_line

    payload = {"machine": "B"}
    runs = [{"grid": "g1", "machine": "A"}, {"grid": "g2"}, {"grid": "g2", "machine": "B"}]
    assert machines_line(payload, runs) == ("Machines (compare throughput within one): grid `g1`: A; "
                                            "grid `g2`: B.")
    assert machines_line(payload, runs[1:]) == "Machine: B."


def test_take_over_needs_a_source_with_validation_auc():
    from aefs_keras.bench.runner import _take_over

    grid = {"datasets": ["frappe"], "selections": ["none"], "seeds": [0], "variants": {"v": {}}}
    cfg = load_config({"grids": [{**grid, "name": "old"}, {**grid, "name": "new"}, {**grid, "name": "later"}]})
    old, new, later = (f"{g}/frappe/deepfm/none/-/v/0" for g in ("old", "new", "later"))
    done = {old: {"key": old, "auc": 0.90},  # saved before validation AUC was recorded
            new: {"key": new, "auc": 0.90, "val_auc": 0.89},
            later: {"key": later, "auc": 0.90, "reused_from": old}}  # taken over from `old` earlier
    logged = []
    _take_over(cfg, done, logged.append)
    assert done[later]["reused_from"] == new and done[later]["val_auc"] == 0.89
    assert done[old] == {"key": old, "auc": 0.90} and not logged  # nothing new, one source replaced
    # With only the old source, the run is trained, not taken over.
    done = {old: {"key": old, "auc": 0.90}, later: {"key": later, "auc": 0.90, "reused_from": old}}
    _take_over(cfg, done, logged.append)
    assert set(done) == {old}


def test_validation_curve_equals_the_bench_run_at_its_epoch_end(tmp_path):
    """benchmarks/validation_curve.py retrains a bench run: its epoch-end
    point is the bench's run (same test AUC), and mid-epoch points differ."""
    import sys

    from aefs_keras.bench.runner import load_data, run_one

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import validation_curve

    raw = {"settings": {"synthetic_rows": 4000, "batch_size": 256, "max_epochs": 1, "d_main": 8,
                        "hidden_units": [8]},
           "grids": [{"name": "g", "datasets": ["synthetic"], "backbones": ["deepfm"],
                      "selections": ["none"], "seeds": [1]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(raw))
    cfg = load_config(str(path))
    spec, = cfg.runs
    data = load_data("synthetic", cfg.settings)
    bench = run_one(spec, data, cfg.settings)
    got = validation_curve.curve(spec, data, cfg.settings, checks_per_epoch=2, epochs=1)
    assert [p["epochs"] for p in got["points"]] == [round(6 / 13, 4), 1.0]  # 3,200 rows / 256: 13 steps
    assert [p["epoch_end"] for p in got["points"]] == [False, True]
    assert got["best_at_epoch_ends"]["test_auc"] == pytest.approx(bench["auc"], abs=1e-6)
    assert got["points"][0]["test_auc"] != pytest.approx(got["points"][1]["test_auc"], abs=1e-4)
    with pytest.raises(SystemExit):  # a run the config does not have
        validation_curve.main([str(path), "g/synthetic/deepfm/none/-/default"])
