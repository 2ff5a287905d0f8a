"""Honest association (downstream/association.py) on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bertstudy.analysis.stats import fisher_interval
from bertstudy.downstream.mlm_vs_score import downstream_correlations, format_downstream
from bertstudy.downstream.association import (association, collapse_pre_learning, first_difference_correlation,
                                              mcnemar, paired_bootstrap_f1, paired_tests, partial_correlation,
                                              sentence_counts)
from bertstudy.downstream.metrics import segmentation_f1
from tests.downstream_helpers import rising_and_flat_doc

# x, y, z with deviations from their means x (-2,-1,0,1,2), y (-1,-2,1,0,2), z (-1,-1,0,0,2):
# Sxx = Syy = 10, Szz = 6, Sxy = 8, Sxz = Syz = 7
X, Y, Z = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [0, 0, 1, 1, 3]


def test_partial_correlation_by_hand_formula_and_residuals():
    # formula: r_xy = 8/10, r_xz = r_yz = 7/sqrt(60), so r_xz r_yz = 49/60 and
    # r_xy.z = (48/60 - 49/60) / (1 - 49/60) = (-1/60) / (11/60) = -1/11
    r_xy, r_xz, r_yz = 0.8, 7 / math.sqrt(60), 7 / math.sqrt(60)
    formula = (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert formula == pytest.approx(-1 / 11)
    # residuals: Sxx.z = 10 - 49/6 = 11/6, Syy.z = 11/6, Sxy.z = 8 - 49/6 = -1/6, r = (-1/6)/(11/6) = -1/11
    out = partial_correlation(X, Y, Z)
    assert out["r"] == pytest.approx(-1 / 11) and out["n"] == 5 and out["controls"] == 1
    # t = r sqrt(dof / (1 - r^2)) with dof = 5 - 3 = 2: t = -1/sqrt(60); with 2 dof the two-sided p is
    # 1 - |t|/sqrt(2 + t^2) = 1 - (1/sqrt(60)) / (11/sqrt(60)) = 10/11
    assert out["p_value"] == pytest.approx(10 / 11)
    # Fisher interval at se 1/sqrt(n - 4) = 1
    assert out["ci"] == pytest.approx(fisher_interval(-1 / 11, 1.0))
    assert out["ci"][0] < -1 / 11 < out["ci"][1]


def test_partial_correlation_matches_the_residual_method_on_random_data():
    rng = np.random.default_rng(3)
    z = rng.normal(size=30)
    x, y = z + rng.normal(size=30), 2 * z + rng.normal(size=30)
    rx = x - np.polyval(np.polyfit(z, x, 1), z)
    ry = y - np.polyval(np.polyfit(z, y, 1), z)
    out = partial_correlation(x, y, z)
    assert out["r"] == pytest.approx(sps.pearsonr(rx, ry).statistic)
    assert out["ci"] == pytest.approx(fisher_interval(out["r"], 1 / math.sqrt(30 - 4)))
    assert sps.pearsonr(x, y).statistic > 0.5 > abs(out["r"])  # the shared z made the plain r


def test_partial_correlation_undefined_cases():
    assert partial_correlation([1, 2, 3], [3, 1, 2], [1, 2, 4])["r"] is None  # fewer than 4 points
    assert partial_correlation(X, Y, [1, 1, 1, 1, 1])["r"] is None  # constant control
    assert partial_correlation(X, [2, 2, 2, 2, 2], Z)["r"] is None  # constant series
    assert partial_correlation([1, 2, float("nan"), 4, 5], Y, Z)["r"] is None
    line = partial_correlation([2 * z + 1 for z in Z], Y, Z)  # x is exactly a line in z
    assert line["r"] is None and "straight line" in line["message"]
    assert partial_correlation(X[:4], Y[:4], [0, 0, 1, 2])["ci"] == [None, None]  # n = 4: r but no interval
    with pytest.raises(ValueError):
        partial_correlation(X, Y, Z[:4])


def _points(steps, accs, scores=None):
    scores = scores if scores is not None else [0.5 + 0.01 * i for i in range(len(steps))]
    return [{"step": s, "heldout_mlm_acc": a, "score": v} for s, a, v in zip(steps, accs, scores)]


def test_collapse_keeps_the_last_of_the_planted_pre_learning_run():
    points = _points([0, 1, 2, 5, 10, 20, 50], [0.0, 0.0, 0.00003, 0.0, 0.0002, 0.03, 0.0])
    kept, collapsed = collapse_pre_learning(points[::-1])  # any order: sorted by step first
    # 0.00003 equals 0 at 4 decimals; 0.0002 (one token of a few thousand) is a change; the later 0 stays
    assert collapsed == 3 and [p["step"] for p in kept] == [5, 10, 20, 50]
    assert collapse_pre_learning(points, tolerance=0.0)[1] == 1  # exact equality: steps 0 and 1 only
    assert collapse_pre_learning(_points([0, 10], [0.0, 0.1]))[1] == 0
    assert collapse_pre_learning(_points([0, 1], [None, None]))[1] == 0
    assert collapse_pre_learning([]) == ([], 0)


def test_first_differences_on_a_known_case():
    x, y = [0, 1, 3, 6, 10], [0, 2, 3, 7, 10]  # differences (1, 2, 3, 4) and (2, 1, 4, 3)
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-0.5, -1.5, 1.5, 0.5): Sxy = 3, Sxx = Syy = 5, r = 0.6
    out = first_difference_correlation(x, y)
    assert out["r"] == pytest.approx(0.6) and out["n"] == 4
    assert out["ci"] == pytest.approx(fisher_interval(0.6, 1.0))
    assert sps.pearsonr(x, y).statistic > 0.95  # the levels trend together far more than they move together
    assert first_difference_correlation([1, 2, 3, 4], [1, 1, 1, 1])["r"] is None


def test_mcnemar_exact_counts_by_hand():
    # 3 both right, 2 both wrong, 5 right only under A (b10), 1 right only under B (b01)
    a = [1] * 3 + [0] * 2 + [1] * 5 + [0] * 1
    b = [1] * 3 + [0] * 2 + [0] * 5 + [1] * 1
    out = mcnemar(a, b)
    assert (out["b01"], out["b10"], out["n"]) == (1, 5, 11)
    # P(X <= 1 | Binomial(6, 1/2)) = (1 + 6)/64; two-sided: 14/64 = 7/32
    assert out["p_value"] == pytest.approx(7 / 32)
    assert out["accuracy_a"] == pytest.approx(8 / 11) and out["accuracy_b"] == pytest.approx(4 / 11)
    assert mcnemar([1, 0, 1], [0, 0, 0])["p_value"] == pytest.approx(2 / 4)  # b10 = 2: 2 * (1/4)
    assert mcnemar([1, 0, 1], [1, 0, 1]) == {"b01": 0, "b10": 0, "n": 3, "accuracy_a": pytest.approx(2 / 3),
                                              "accuracy_b": pytest.approx(2 / 3), "p_value": 1.0}
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


def test_sentence_counts_sum_to_segmentation_f1():
    gold, pred_a, pred_b = ["besbe", "bebe", "bme"], ["bebes", "bebe", "sss"], ["besbe", "bebe", "sss"]
    counts_a, counts_b = sentence_counts(gold, pred_a), sentence_counts(gold, pred_b)
    # sentence 1: 我们/是学/生 vs gold 我们/是/学生: 1 right of 3 predicted, 3 gold
    assert counts_a.tolist() == [[1, 3, 3], [2, 2, 2], [0, 3, 1]]
    out = paired_bootstrap_f1(counts_a, counts_b, n_resamples=200)
    assert out["f1_a"] == pytest.approx(segmentation_f1(gold, pred_a)["score"])
    assert out["f1_b"] == pytest.approx(segmentation_f1(gold, pred_b)["score"])
    assert out["difference"] == pytest.approx(out["f1_b"] - out["f1_a"])


def test_paired_bootstrap_identical_predictions():
    counts = np.array([[2, 3, 3], [1, 2, 2], [4, 4, 5]])
    out = paired_bootstrap_f1(counts, counts.copy(), n_resamples=500, seed=1)
    assert out["difference"] == 0 and out["p_value"] == 1.0 and out["ci"] == [0.0, 0.0]


def test_paired_bootstrap_one_strictly_better_everywhere():
    rng = np.random.default_rng(0)
    gold = rng.integers(3, 12, size=40)
    better = np.column_stack([gold, gold, gold])  # every word right in every sentence
    worse = np.column_stack([gold - rng.integers(1, 3, size=40), gold, gold])  # fewer right in every sentence
    out = paired_bootstrap_f1(worse, better, n_resamples=1000, seed=2)
    assert out["f1_b"] == 1.0 and out["difference"] > 0 and out["ci"][0] > 0 and out["p_value"] == 0.0
    reverse = paired_bootstrap_f1(better, worse, n_resamples=1000, seed=2)
    assert reverse["difference"] == pytest.approx(-out["difference"]) and reverse["p_value"] == 0.0
    assert reverse["ci"][1] < 0
    again = paired_bootstrap_f1(worse, better, n_resamples=1000, seed=2)
    assert again == out  # seeded
    with pytest.raises(ValueError, match="gold"):
        paired_bootstrap_f1(worse, np.column_stack([gold, gold, gold + 1]))


STEPS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]
ACCS = [0.0, 0.0, 0.0, 0.0, 0.0002, 0.03, 0.03, 0.05, 0.06, 0.13]
SCORES = [0.60, 0.60, 0.60, 0.60, 0.61, 0.62, 0.65, 0.66, 0.65, 0.66]


def test_association_collapses_then_correlates():
    out = association(_points(STEPS, ACCS, SCORES))
    assert (out["checkpoints"], out["n"], out["collapsed"]) == (10, 7, 3)
    assert out["pre_learning_steps"] == [0, 1, 2, 5]
    kept = slice(3, None)
    assert out["mlm_vs_score"]["pearson"]["r"] == pytest.approx(sps.pearsonr(ACCS[kept], SCORES[kept]).statistic)
    ln = np.log(STEPS[kept])
    assert out["ln_step_vs_score"]["pearson"]["r"] == pytest.approx(sps.pearsonr(ln, SCORES[kept]).statistic)
    partial = partial_correlation(SCORES[kept], ACCS[kept], ln)
    assert out["partial_mlm_given_ln_step"]["r"] == pytest.approx(partial["r"])
    assert out["first_differences"]["r"] == pytest.approx(
        sps.pearsonr(np.diff(ACCS[kept]), np.diff(SCORES[kept])).statistic)
    assert out["first_differences"]["n"] == 6


def test_association_leaves_step_zero_out_of_ln_step():
    out = association(_points([0, 10, 100, 1000, 10000], [0.0, 0.1, 0.2, 0.25, 0.3], [0.5, 0.6, 0.62, 0.7, 0.71]))
    assert out["collapsed"] == 0 and out["pre_learning_steps"] == [] and out["n"] == 5
    assert out["mlm_vs_score"]["pearson"]["n"] == 5 and out["ln_step_vs_score"]["pearson"]["n"] == 4
    assert out["partial_mlm_given_ln_step"]["n"] == 4


def test_downstream_correlations_carries_the_honest_key():
    result = downstream_correlations(rising_and_flat_doc())
    cws = result["tasks"]["cws"]
    assert cws["mlm_vs_score"]["pearson"]["r"] == pytest.approx(1.0)  # the existing keys stay
    honest = cws["honest"]
    assert honest["collapsed"] == 0 and honest["n"] == 6  # no two checkpoints share an accuracy here
    assert honest["mlm_vs_score"]["pearson"]["r"] == pytest.approx(1.0)
    assert honest["partial_mlm_given_ln_step"]["r"] == pytest.approx(1.0)  # score is MLM accuracy + 0.6
    assert set(result["tasks"]["sentiment"]["honest"]) >= {"partial_mlm_given_ln_step", "first_differences"}
    text = format_downstream(result)
    assert "honest: no pre-learning checkpoints to collapse, n=6" in text
    assert "partial r of score and MLM acc given ln step 1.000" in text and "first differences r" in text


def test_paired_tests_between_adjacent_checkpoints_by_hand():
    """Each checkpoint against the next by step, on the last layer's per-item lists."""
    reviews = {0: [0, 0, 0, 0, 1, 1], 10: [1, 1, 1, 0, 1, 1], 100: [1, 1, 1, 0, 1, 0]}
    points = [{"step": s, "score": sum(c) / 6, "item_correct": c} for s, c in reviews.items()][::-1]  # any order
    out = paired_tests(points)
    assert (out["tested"], out["skipped"], out["alpha"]) == (2, 0, 0.05)
    first, second = out["pairs"]
    # 0 -> 10: three reviews turn right, none wrong: b01 = 3, b10 = 0, p = 2 (1/2)^3 = 1/4
    assert (first["step_a"], first["step_b"], first["test"]) == (0, 10, "mcnemar")
    assert (first["b01"], first["b10"], first["p_value"]) == (3, 0, pytest.approx(0.25))
    assert first["score_a"] == pytest.approx(2 / 6) and first["score_b"] == pytest.approx(5 / 6)
    # 10 -> 100: one review turns wrong: p = 1
    assert (second["b01"], second["b10"], second["p_value"]) == (0, 1, 1.0) and out["differ"] == 0
    assert paired_tests(points, alpha=0.3)["differ"] == 1


def test_paired_tests_bootstraps_segmentation_and_skips_older_points():
    gold, worse, better = ["besbe", "bebe", "bme"], ["bebes", "bebe", "sss"], ["besbe", "bebe", "bme"]
    counts = {0: sentence_counts(gold, worse).tolist(), 5: sentence_counts(gold, better).tolist()}
    points = [{"step": 0, "score": 0.4, "sentence_counts": counts[0]},
              {"step": 5, "score": 1.0, "sentence_counts": counts[5]},
              {"step": 9, "score": 1.0}]  # scored before the per-item lists: its pair is skipped
    out = paired_tests(points, n_resamples=300, seed=4)
    assert (out["tested"], out["skipped"]) == (1, 1)
    pair = out["pairs"][0]
    assert pair["test"] == "paired_bootstrap_f1" and (pair["step_a"], pair["step_b"]) == (0, 5)
    expected = paired_bootstrap_f1(counts[0], counts[5], n_resamples=300, seed=4)
    assert {k: pair[k] for k in expected} == expected  # the same seeded bootstrap, pair by pair
    assert pair["f1_a"] == pytest.approx(segmentation_f1(gold, worse)["score"]) and pair["f1_b"] == 1.0
    assert paired_tests(points, n_resamples=300, seed=4) == out  # seeded
    assert paired_tests([]) == {**paired_tests([]), "pairs": [], "tested": 0, "skipped": 0, "differ": 0}
    assert association(_points(STEPS, ACCS, SCORES))["adjacent"]["skipped"] == len(STEPS) - 1


def test_best_layer_against_the_last_only_where_a_shallower_layer_won():
    """At step 10 layer 0 is best and carries its own per-review list: McNemar of the last layer (A)
    against it (B) by hand: two reviews right only under layer 0, none only under the last: p = 2 (1/2)^2.
    At step 20 the last layer is best (no list of its own): not tested."""
    from bertstudy.downstream.association import best_layer_vs_last

    points = [{"step": 20, "score": 1.0, "item_correct": [1, 1, 1, 1], "best_layer": {"layer": 2, "score": 1.0}},
              {"step": 10, "score": 0.5, "item_correct": [1, 1, 0, 0],
               "best_layer": {"layer": 0, "score": 1.0, "item_correct": [1, 1, 1, 1]}}]
    out = best_layer_vs_last(points)
    assert out["tested"] == 1 and out["differ"] == 0
    pair = out["pairs"][0]
    assert (pair["step"], pair["layer"], pair["test"]) == (10, 0, "mcnemar")
    assert (pair["b01"], pair["b10"], pair["p_value"]) == (2, 0, pytest.approx(0.5))
    assert association(points)["best_layer_vs_last"] == out
    assert best_layer_vs_last([{"step": 1, "score": 0.5}])["tested"] == 0  # an older file: nothing to test
