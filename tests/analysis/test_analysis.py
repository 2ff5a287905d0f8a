"""analysis.py: the published figures of the original study reproduced from its own history, the
result's keys and JSON-safety, curves, targets, NSP, comparison and small or odd inputs."""

import json
from pathlib import Path

import numpy as np
import pytest

from bertstudy.analysis.study import analyze, compare_runs
from bertstudy.analysis.report import format_report
from bertstudy.base.errors import BadInputError
from bertstudy.analysis.history import History, load_history

FIXTURE = Path(__file__).parent.parent / "data" / "original_training_history_100k.json"
ORIGINAL_KEYS = ("total_steps", "data_points", "pearson_correlation", "r_squared", "mlm_stats", "loss_stats",
                 "comparison")
NEW_KEYS = ("association", "curves", "best_curve", "forecast", "bootstrap", "targets", "nsp_stats", "metric",
            "source")


@pytest.fixture(scope="module")
def original():
    return load_history(FIXTURE)


@pytest.fixture(scope="module")
def result(original):
    return analyze(original, "mlm_acc", train_fraction=0.5, targets=(0.6, 0.7, 0.99), bootstrap=200, seed=0)


def make_history(steps, acc, loss=None, nsp=None, path="synthetic.json") -> History:
    steps = np.asarray(steps, dtype=np.int64)
    empty = np.zeros(0)
    return History(path=path, source_format="ours", steps=steps, mlm_acc=np.asarray(acc, float),
                   nsp_acc=empty if nsp is None else np.asarray(nsp, float),
                   loss=empty if loss is None else np.asarray(loss, float), lr=empty)


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_reproduces_the_original_studys_published_figures(result):
    assert result["total_steps"] == 100_000 and result["data_points"] == 1000
    assert round(result["pearson_correlation"], 4) == 0.7869
    assert round(result["r_squared"], 4) == 0.6193
    mlm = result["mlm_stats"]
    assert (round(mlm["mean"], 4), round(mlm["max"], 4), round(mlm["min"], 4)) == (0.5053, 0.6635, 0.1516)
    assert round(mlm["std"], 4) == 0.1048  # population std, as the original computed it
    loss = result["loss_stats"]
    assert (round(loss["initial"], 4), round(loss["final"], 4)) == (8.9572, 2.9728)
    assert loss["decrease"] == pytest.approx(5.9844043254852295)


def test_result_has_the_original_and_the_new_keys_and_is_strict_json(result):
    for key in ORIGINAL_KEYS + NEW_KEYS:
        assert key in result
    assert result["comparison"] is None and "goal_achieved" not in result
    text = json.dumps(result, allow_nan=False)  # no NaN/inf anywhere
    assert json.loads(text)["metric"]["name"] == "mlm_acc"
    fingerprint = result["source"].pop("data_sha256")
    assert result["source"] == {"path": str(FIXTURE), "format": "original", "preset": None, "meta_total_steps": None}
    from bertstudy.analysis.provenance import series_fingerprint

    original = load_history(FIXTURE)
    assert fingerprint == series_fingerprint(original.steps, original.mlm_acc) and len(fingerprint) == 64
    result["source"]["data_sha256"] = fingerprint  # the fixture is shared by the module's tests


def test_curves_on_the_original_history(result):
    curves = result["curves"]
    assert set(curves) == {"linear", "log_linear", "power_saturating"} and all(c["ok"] for c in curves.values())
    assert result["best_curve"] == "log_linear"
    assert curves["log_linear"]["r_squared"] > curves["linear"]["r_squared"] + 0.2
    assert curves["log_linear"]["delta_aic"] == 0.0 and curves["linear"]["delta_aic"] > 100
    # the power law runs into its exponent bound: no saturation visible, and the report says so
    assert "no saturation" in curves["power_saturating"]["note"]
    forecast = result["forecast"]["curves"]
    assert forecast["log_linear"]["mae"] < forecast["linear"]["mae"] / 3
    assert result["forecast"]["split_step"] == 50_100


def test_bootstrap_is_block_based_and_wider_than_fisher(result):
    boot = result["bootstrap"]
    assert boot["resamples"] == 200 and boot["block_length"] >= 10
    lo, hi = boot["association"]["pearson_r_ci"]
    f_lo, f_hi = result["association"]["pearson"]["ci"]
    assert lo < result["pearson_correlation"] < hi and hi - lo > f_hi - f_lo
    assert boot["residual_lag1_autocorrelation"]["linear"] > 0.5  # why blocks are needed
    a_lo, a_hi = boot["curves"]["log_linear"]["a"]
    assert a_lo < result["curves"]["log_linear"]["params"]["a"] < a_hi


def test_targets_on_the_original_history(result):
    by_target = {row["target"]: row for row in result["targets"]}
    six = by_target[0.6]["curves"]["log_linear"]
    assert six["status"] == "within_run" and six["ci"][0] < six["step"] < six["ci"][1]
    assert by_target[0.7]["curves"]["log_linear"]["status"] == "extrapolated"
    far = by_target[0.99]["curves"]["log_linear"]
    assert far["status"] == "extrapolated" and far["step"] > 40 * 100_000  # ~5M steps for 99%


def test_a_target_far_beyond_the_run_is_flagged():
    steps = np.arange(100, 10_001, 100)
    acc = 0.1 + 1e-7 * steps + np.random.default_rng(2).normal(0, 1e-4, len(steps))
    res = analyze(make_history(steps, acc), targets=(0.9,), bootstrap=50)
    linear = res["targets"][0]["curves"]["linear"]
    assert linear["status"] == "beyond_100x_run" and linear["step"] == pytest.approx(8e6, rel=0.05)
    line = next(t for t in format_report(res).splitlines() if t.strip().startswith("linear ") and "beyond" in t)
    # no step count and no "95% CI" for a curve extrapolated beyond 100x the run: only that it is that far
    assert line.split() == ["linear", "beyond", "100x", "the", "run"]


def test_nsp_stayed_at_chance_in_the_original(result):
    nsp = result["nsp_stats"]
    assert nsp["left_chance"] is False and round(nsp["mean"], 4) == 0.4963
    assert "stayed at chance" in nsp["verdict"]


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_saturating_run_target_above_the_ceiling_is_not_reached():
    rng = np.random.default_rng(0)
    steps = np.arange(100, 20_001, 100)
    acc = 0.6 - 1.5 * steps**-0.4 + rng.normal(0, 0.004, len(steps))
    nsp = np.clip(0.5 + 0.4 * (1 - np.exp(-steps / 3000)) + rng.normal(0, 0.03, len(steps)), 0, 1)
    res = analyze(make_history(steps, acc, nsp=nsp), targets=(0.5, 0.9), bootstrap=100, seed=1)
    assert res["best_curve"] == "power_saturating" and res["curves"]["power_saturating"]["note"] == ""
    rows = {row["target"]: row["curves"]["power_saturating"] for row in res["targets"]}
    assert rows[0.9]["status"] == "not_reached" and rows[0.9]["step"] is None
    assert rows[0.9]["share_of_resamples_reaching"] == 0.0 and rows[0.9]["ci"] == [None, None]
    assert rows[0.5]["status"] == "within_run"
    assert res["nsp_stats"]["left_chance"] is True and res["loss_stats"] is None


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_same_seed_same_result_different_seed_different_draws(original):
    one = analyze(original, bootstrap=50, seed=3)
    two = analyze(original, bootstrap=50, seed=3)
    other = analyze(original, bootstrap=50, seed=4)
    assert one == two
    assert one["bootstrap"]["association"] != other["bootstrap"]["association"]


def test_too_few_points_is_bad_input_and_three_points_report_failed_fits():
    with pytest.raises(BadInputError, match="only 2 logged point"):
        analyze(make_history([1, 2], [0.1, 0.2]))
    res = analyze(make_history([100, 200, 300], [0.1, 0.2, 0.25]), targets=(0.3,))
    assert res["curves"]["power_saturating"]["ok"] is False
    assert "too few points" in res["curves"]["power_saturating"]["message"]
    assert res["bootstrap"]["resamples"] == 0 and "too few points" in res["bootstrap"]["message"]
    target = res["targets"][0]["curves"]["power_saturating"]
    assert target["status"] == "not_fitted" and "too few points" in target["message"]
    json.dumps(res, allow_nan=False)
    text = format_report(res)
    assert "not fitted" in text and "never" not in text and "fit_failed" not in text


def test_constant_accuracy_is_reported_not_crashing():
    res = analyze(make_history([100, 200, 300, 400, 500], [0.3] * 5), bootstrap=20)
    assert res["pearson_correlation"] is None and res["r_squared"] is None
    json.dumps(res, allow_nan=False)
    assert "n/a" in format_report(res)


def test_missing_metric_names_the_file(original):
    with pytest.raises(BadInputError, match="original_training_history_100k.json: has no 'eval_mlm_acc'"):
        analyze(original, "eval_mlm_acc")


def test_compare_gives_per_run_summaries_and_differences(original):
    half = make_history(original.steps[:500], original.mlm_acc[:500], loss=original.loss[:500], path="first_half")
    comparison = compare_runs([("50K", half), ("100K", original)])
    runs = comparison["runs"]
    assert runs["50K"]["total_steps"] == 50_000 and runs["100K"]["total_steps"] == 100_000
    diff = comparison["differences"]["100K - 50K"]
    assert diff["pearson_r"] == pytest.approx(runs["100K"]["pearson_r"] - runs["50K"]["pearson_r"])
    assert diff["mean"] == pytest.approx(original.mlm_acc.mean() - original.mlm_acc[:500].mean())
    assert diff["pearson_r_percent"] == pytest.approx(100 * diff["pearson_r"] / runs["50K"]["pearson_r"])


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_require_r_goal(original):
    res = analyze(original, bootstrap=0, require_r=0.85)
    assert res["goal_achieved"] is False and res["goal"]["require_r"] == 0.85
    assert "bootstrap not requested" in res["bootstrap"]["message"]
    assert analyze(original, bootstrap=0, require_r=0.75)["goal_achieved"] is True


def test_report_shows_the_headline_figures(result):
    text = format_report(result)
    for fragment in ("Pearson r   0.7869", "R^2         0.6193", "*log_linear", "mean 0.5053", "8.9572 -> 2.9728",
                     "NSP stayed at chance", "extrapolated"):
        assert fragment in text


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_an_evaluation_at_step_zero_is_left_out_of_the_curves_only():
    steps = np.arange(0, 2001, 100)  # our trainer evaluates the untrained model at step 0
    acc = 0.05 + 0.03 * np.log1p(steps / 50.0)
    res = analyze(make_history(steps, acc), targets=(0.2,), bootstrap=30)
    assert res["data_points"] == 21 and res["association"]["n"] == 21
    assert res["curve_points"] == {"n": 20, "excluded_steps": [0], "why": "curves need step > 0"}
    assert all(c["ok"] and c["n"] == 20 for c in res["curves"].values())
    assert res["bootstrap"]["curves"].keys() == {"linear", "log_linear", "power_saturating"}
    assert "left out step(s) [0]" in format_report(res)


def test_report_of_a_held_out_metric_with_step_zero_is_consistent():
    """--metric eval_mlm_acc on three evaluations (step 0 included): the header says the curves use
    two points, curves and targets say 'not fitted: too few points', and the summaries show the
    analysed metric, with training MLM accuracy only as a labelled extra."""
    history = make_history([50, 100, 150, 200], [0.05, 0.08, 0.1, 0.12])
    history.eval_steps, history.eval_mlm_acc = np.array([0, 100, 200]), np.array([0.0, 0.07, 0.11])
    res = analyze(history, "eval_mlm_acc", targets=(0.6,), bootstrap=0)
    text = format_report(res)
    assert "points: 3 (curves: 2, step 0 left out)" in text
    assert "fitted on 2 of the 3 points" in text
    assert "never" not in text and "fit_failed" not in text
    summaries = text.split("Summaries")[1].splitlines()
    assert summaries[1].startswith("  eval_mlm_acc (analysed)  mean 0.0600")
    assert summaries[2].startswith("  extra, not analysed: training MLM accuracy (mlm_acc)  mean 0.0875")
    assert "Summaries\n  mlm_acc (analysed)" in format_report(analyze(history, targets=(), bootstrap=0))
