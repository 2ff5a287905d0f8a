"""Honest statistics on synthetic series with known answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from bertstudy.analysis import curves, dependence, stats

ORIGINAL = Path(__file__).parent.parent / "data" / "original_training_history_100k.json"


def _ar1(n, rho, seed):
    rng = np.random.default_rng(seed)
    e = np.empty(n)
    e[0] = rng.normal()
    for i in range(1, n):
        e[i] = rho * e[i - 1] + rng.normal() * np.sqrt(1 - rho**2)
    return e


def test_hac_slope_error_matches_the_spread_of_slopes_under_ar1_noise():
    # Under AR(1) noise with rho 0.8 the plain OLS error understates the true spread of the slope
    # about 3x; Newey-West's must be near the spread seen across 300 simulated series.
    x = np.arange(500.0)
    slopes, plain, hac = [], [], []
    for seed in range(300):
        y = 0.001 * x + _ar1(500, 0.8, seed)
        out = dependence.newey_west_slope(x, y, lag=20)
        slopes.append(out["estimate"]), plain.append(out["se_plain"]), hac.append(out["se_hac"])
    true_sd = np.std(slopes)
    assert np.mean(plain) < 0.5 * true_sd
    assert 0.75 * true_sd < np.mean(hac) < 1.25 * true_sd


def test_hac_equals_plain_order_for_independent_noise():
    x = np.arange(400.0)
    y = 0.002 * x + np.random.default_rng(0).normal(size=400)
    out = dependence.newey_west_slope(x, y)
    assert 0.7 < out["se_ratio"] < 1.3


def test_effective_n_of_ar1_residuals():
    e = _ar1(20_000, 0.75, 3)
    assert dependence.effective_n(e) == pytest.approx(20_000 * 0.25 / 1.75, rel=0.1)
    assert dependence.effective_n(np.random.default_rng(1).normal(size=500)) == pytest.approx(500, rel=0.15)


def test_small_aic_gap_is_a_tie_and_a_bound_power_law_reads_as_log_linear():
    history = json.loads(ORIGINAL.read_text())
    x, y = np.array(history["steps"], float), np.array(history["mlm_acc"], float)
    ranking = dependence.rank_curves(curves.fit_all_curves(x, y), x, y)
    assert ranking["leader"] == "log_linear"
    assert ranking["tied_with_leader"] == ["power_saturating"]
    assert "log-linear" in ranking["notes"]["power_saturating"]
    assert ranking["order"][-1]["name"] == "linear" and ranking["order"][-1]["delta_aic_effective"] > 100


def test_a_clear_winner_is_not_a_tie():
    x = np.linspace(10, 10_000, 300)
    y = 0.1 + 0.03 * np.log(x) + np.random.default_rng(4).normal(0, 0.002, 300)
    ranking = dependence.rank_curves(curves.fit_all_curves(x, y), x, y)
    assert ranking["leader"] in ("log_linear", "power_saturating")
    assert "linear" not in ranking["tied_with_leader"]


def test_rolling_origin_forecast_uses_only_the_points_before_each_origin():
    x = np.arange(1.0, 21.0)
    seen = []

    class Last:
        def __init__(self, xs, ys):
            seen.append(len(xs))
            self.value = ys[-1]

        def predict(self, steps):
            return np.full(len(steps), self.value)

    rows = dependence.rolling_origin_forecast(x, 2 * x, Last, origins=(0.1, 0.5, 1.0))
    assert seen == [10] and [r["split_step"] for r in rows] == [11.0]  # 2 points and 20 of 20 are skipped
    assert rows[0]["mae"] == pytest.approx(np.mean(2 * x[10:] - 20))
    assert dependence.rolling_origin_forecast(x, x, lambda a, b: None)[0]["mae"] is None


@pytest.mark.slow  # curve fits on 400-point curves
def test_family_forecast_picks_the_true_family():
    x = np.linspace(100, 50_000, 400)
    y = 0.1 + 0.03 * np.log(x) + np.random.default_rng(5).normal(0, 0.003, 400)
    check = dependence.family_forecast(x, y)
    assert len(check["origins"]) == 5
    assert check["best_by_mean_mae"] in ("log_linear", "power_saturating")
    assert check["wins"]["linear"] == 0


def test_r_depends_on_the_step_range_as_on_the_original():
    history = json.loads(ORIGINAL.read_text())
    x, y = np.array(history["steps"], float), np.array(history["mlm_acc"], float)
    ranges = dependence.r_by_step_range(x, y)
    assert ranges["first_25pct"]["r"] == pytest.approx(0.927, abs=0.001)
    assert ranges["first_50pct"]["r"] == pytest.approx(0.865, abs=0.001)
    assert ranges["first_100pct"]["r"] == pytest.approx(0.787, abs=0.001)
    assert ranges["log_spaced"]["n"] <= 50
