"""The across-model statistics against hand computations."""

import numpy as np
import pytest

from bertstudy.across_models import analysis


def probe_doc(recipe, seed, points):
    """A probe file of one run: points are (step, accuracy, ner gain)."""
    def layer(gain):
        return [{"layer": 0, "score": 0.1, "context_gain": 0.0, "context_gain_ci": [-0.01, 0.01]},
                {"layer": 2, "score": 0.2, "context_gain": gain, "context_gain_ci": [gain - 0.01, gain + 0.02]}]

    return {"recipe": recipe, "seed": seed,
            "points": [{"step": step, "heldout_mask_acc": acc,
                        "tasks": {"ner": layer(gain), "segmentation": layer(gain / 2), "sentiment": layer(-gain)}}
                       for step, acc, gain in points]}


DOCS = [probe_doc("quick", 1, [(500, 0.10, 0.05), (1000, 0.01, 0.01)]),
        probe_doc("quick", 2, [(500, 0.12, 0.02), (1000, 0.02, 0.03)]),
        probe_doc("quick", 3, [(500, 0.11, 0.04), (1000, 0.03, 0.02)]),
        probe_doc("quick-no-constant", 1, [(500, 0.07, 0.01), (1000, 0.04, 0.04)]),
        probe_doc("quick-no-constant", 2, [(500, 0.08, 0.03), (1000, 0.05, 0.06)]),
        probe_doc("quick-no-constant", 3, [(500, 0.06, 0.02), (1000, 0.06, 0.05)])]


def test_the_primary_rho_is_the_hand_computed_spearman():
    result = analysis.analyze(DOCS)
    # accuracy ranks 1..6, gain ranks 1,3,2,4,6,5: sum of squared rank differences 4
    assert result["primary"]["rho"] == pytest.approx(1 - 6 * 4 / (6 * 35))
    assert result["primary"]["n"] == 6
    low, high = result["primary"]["ci"]
    assert -1 <= low <= high <= 1


def test_the_bootstrap_resamples_seeds_within_each_recipe():
    records = analysis.records_from_probes(DOCS)
    final = [r for r in records if r["step"] == 1000]
    draws = analysis.within_recipe_draws(final, 200, seed=0)
    recipes = np.array([r["recipe"] for r in final])
    assert draws.shape == (200, 6)
    for row in draws:
        assert sorted(recipes[row]) == sorted(recipes)  # three of each recipe in every resample


def test_the_recipe_contrast_is_the_difference_of_the_seed_means():
    result = analysis.analyze(DOCS)
    contrast = result["secondary"]["by_task"]["ner"]["recipe_contrast_gain"]
    assert contrast["difference"] == pytest.approx((0.01 + 0.03 + 0.02) / 3 - (0.04 + 0.06 + 0.05) / 3)
    accuracy = result["secondary"]["recipe_contrast_accuracy"]
    assert accuracy["difference"] == pytest.approx(0.02 - 0.05)
    assert accuracy["ci"][0] <= accuracy["difference"] <= accuracy["ci"][1]


def test_the_pooled_within_step_r_centres_each_step_then_correlates():
    records = analysis.records_from_probes(DOCS)
    x, y = [], []
    for step in (500, 1000):
        acc = np.array([r["accuracy"] for r in records if r["step"] == step])
        gain = np.array([r["ner_gain"] for r in records if r["step"] == step])
        x += list(acc - acc.mean())
        y += list(gain - gain.mean())
    pooled = analysis.pooled_centred_r(records, "ner_gain", resamples=100)
    assert pooled["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert pooled["n_runs"] == 6 and pooled["n_points"] == 12


def test_the_seed_spread_is_the_sample_sd_beside_the_test_interval_width():
    spread = analysis.analyze(DOCS)["secondary"]["seed_spread"]
    assert spread["accuracy_sd"] == pytest.approx(np.std([0.01, 0.02, 0.03], ddof=1))
    assert spread["ner"]["median_test_interval_width"] == pytest.approx(0.03)


def test_a_constant_gain_gives_an_undefined_rho_not_an_error():
    flat = [probe_doc("quick", s, [(1000, 0.01 * s, 0.0)]) for s in (1, 2, 3)]
    result = analysis.analyze(flat)
    assert np.isnan(result["primary"]["rho"])
    assert result["primary"]["reading"].startswith("not shown")


def test_an_analysis_of_fewer_runs_than_planned_says_it_is_interim():
    assert analysis.analyze(DOCS)["complete"] is False  # 6 of the plan's 21
    done = analysis.analyze(DOCS, runs_planned=6)
    assert done["complete"] is True and done["runs_probed_at_primary_step"] == 6
