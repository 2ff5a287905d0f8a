"""stats.py against scipy/numpy and hand computations on inputs whose answers are known."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from bertstudy.analysis import curves, stats

STEPS = np.arange(100, 100_001, 100, dtype=float)


def test_exact_line_gives_r_one_and_the_known_slope():
    y = 0.1 + 3e-6 * STEPS
    a = stats.association(STEPS, y)
    assert a["pearson"]["r"] == pytest.approx(1.0)
    assert a["r_squared"] == pytest.approx(1.0)
    assert a["spearman"]["rho"] == pytest.approx(1.0)
    assert a["kendall"]["tau"] == pytest.approx(1.0)
    assert a["slope_per_10k"]["estimate"] == pytest.approx(0.03)
    fit = curves.fit_curve("linear", STEPS, y)
    assert fit.ok and fit.params["a"] == pytest.approx(0.1) and fit.params["b"] == pytest.approx(3e-6)
    assert fit.r_squared == pytest.approx(1.0)
    assert math.isfinite(fit.aic)  # RSS 0 is floored, not -inf


def test_association_matches_scipy_on_noisy_data():
    rng = np.random.default_rng(1)
    x = np.arange(1, 201, dtype=float)
    y = np.log(x) + rng.normal(0, 0.5, len(x))
    a = stats.association(x, y)
    assert a["pearson"]["r"] == pytest.approx(sps.pearsonr(x, y).statistic)
    assert a["pearson"]["p_value"] == pytest.approx(sps.pearsonr(x, y).pvalue)
    assert a["spearman"]["rho"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert a["kendall"]["tau"] == pytest.approx(sps.kendalltau(x, y).statistic)
    reg = sps.linregress(x, y)
    assert a["slope_per_10k"]["estimate"] == pytest.approx(reg.slope * 10_000)
    half = sps.t.ppf(0.975, len(x) - 2) * reg.stderr * 10_000
    assert a["slope_per_10k"]["ci"] == pytest.approx([reg.slope * 10_000 - half, reg.slope * 10_000 + half])


def test_fisher_z_interval_matches_a_hand_computation():
    rng = np.random.default_rng(2)
    x = np.arange(50, dtype=float)
    y = x + rng.normal(0, 20, 50)
    out = stats.pearson_with_ci(x, y)
    r, n = out["r"], 50
    z, se = 0.5 * math.log((1 + r) / (1 - r)), 1 / math.sqrt(n - 3)
    lo, hi = math.tanh(z - 1.959963984540054 * se), math.tanh(z + 1.959963984540054 * se)
    assert out["ci"] == pytest.approx([lo, hi], rel=1e-9)
    assert lo < r < hi


def test_constant_or_tiny_series_is_reported_undefined_not_crashing():
    out = stats.association([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5])
    assert out["pearson"]["r"] is None and out["r_squared"] is None and "constant" in out["pearson"]["message"]
    assert stats.pearson_with_ci([1, 2], [1, 2])["r"] is None


def test_power_law_recovers_a_saturating_curve_and_wins_by_aic():
    rng = np.random.default_rng(3)
    truth = {"a": 0.72, "b": 3.0, "c": 0.35}
    y = truth["a"] - truth["b"] * STEPS ** -truth["c"] + rng.normal(0, 0.004, len(STEPS))
    fits = curves.fit_all_curves(STEPS, y)
    power = fits["power_saturating"]
    assert power.ok
    assert power.params["a"] == pytest.approx(truth["a"], abs=0.01)
    assert power.params["c"] == pytest.approx(truth["c"], rel=0.1)
    lo, hi = power.param_ci["a"]
    assert lo < truth["a"] < hi
    assert curves.best_curve(fits) == "power_saturating"
    assert fits["power_saturating"].aic < fits["log_linear"].aic - 10
    band_lo, band_hi = power.prediction_band(STEPS)
    inside = np.mean((y >= band_lo) & (y <= band_hi))
    assert 0.9 < inside <= 1.0  # a 95% band for new observations covers about 95% of them


def test_log_linear_data_pick_log_linear_and_forecast_beats_linear():
    rng = np.random.default_rng(4)
    y = -0.5 + 0.1 * np.log(STEPS) + rng.normal(0, 0.02, len(STEPS))
    fits = curves.fit_all_curves(STEPS, y)
    assert fits["log_linear"].params["b"] == pytest.approx(0.1, rel=0.05)
    assert fits["log_linear"].aic < fits["linear"].aic
    check = curves.forecast_check(STEPS, y, train_fraction=0.5)
    assert check["n_train"] == 500 and check["split_step"] == STEPS[500]
    assert check["curves"]["log_linear"]["mae"] < check["curves"]["linear"]["mae"] / 3
    assert check["best_by_mae"] in ("log_linear", "power_saturating")


def test_too_few_points_are_a_failed_fit_with_a_message():
    fit = curves.fit_curve("power_saturating", [1, 2, 3], [0.1, 0.2, 0.3])
    assert not fit.ok and "too few points" in fit.message
    assert np.isnan(fit.predict([5])).all()
    assert curves.fit_curve("log_linear", [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4]).ok is False
    assert curves.best_curve({"x": fit}) is None
    check = curves.forecast_check([1, 2], [0.1, 0.2], train_fraction=0.5)
    assert all(c["mae"] is None for c in check["curves"].values())
    with pytest.raises(ValueError):
        curves.fit_curve("cubic", [1, 2, 3], [1, 2, 3])


def test_moving_average_matches_numpy_convolution_in_the_interior():
    y = np.arange(20, dtype=float) ** 1.5
    smooth = stats.moving_average(y, 5)
    assert len(smooth) == len(y)
    assert smooth[2:-2] == pytest.approx(np.convolve(y, np.ones(5) / 5, mode="valid"))
    assert smooth[0] == pytest.approx(y[:3].mean())  # shrunken window at the ends
    assert stats.moving_average(y, 1) == pytest.approx(y)


def _ar1(n, phi, sigma, rng):
    e = np.empty(n)
    e[0] = rng.normal(0, sigma / math.sqrt(1 - phi**2))
    for i in range(1, n):
        e[i] = phi * e[i - 1] + rng.normal(0, sigma)
    return e


def test_block_length_grows_with_autocorrelation():
    rng = np.random.default_rng(5)
    white = rng.normal(size=1000)
    assert stats.choose_block_length(white) == 10  # n^(1/3)
    assert stats.choose_block_length(_ar1(1000, 0.9, 1, rng)) > 30
    assert stats.choose_block_length(np.arange(5.0)) >= 1


def test_block_indices_are_runs_of_consecutive_positions_that_wrap():
    idx = stats.circular_block_indices(100, 10, 7, np.random.default_rng(0))
    assert idx.shape == (7, 100) and idx.min() >= 0 and idx.max() < 100
    steps = np.diff(idx[:, :10], axis=1)
    assert ((steps == 1) | (steps == -99)).all()  # consecutive, wrapping from the last position to the first


def test_circular_blocks_cover_the_ends_as_often_as_the_middle():
    # blocks that stop at the end left the first held-out point of the CPU tier out of 78% of resamples
    idx = stats.circular_block_indices(40, 12, 4000, np.random.default_rng(1))
    share_with_first = np.mean((idx == 0).any(axis=1))
    share_with_middle = np.mean((idx == 20).any(axis=1))
    assert abs(share_with_first - share_with_middle) < 0.05 and share_with_first > 0.5


def test_association_block_comes_from_the_lines_own_residuals():
    # a straight line plus white noise needs no long blocks, even though a curve through it would
    x = np.arange(1, 401, dtype=float)
    y = 0.001 * x + np.random.default_rng(2).normal(0, 0.01, 400)
    assert stats.association_block_length(x, y) == round(400 ** (1 / 3))
    curved = 0.05 * np.log(x) + np.random.default_rng(2).normal(0, 0.001, 400)
    assert stats.association_block_length(x, curved) > 2 * round(400 ** (1 / 3))


def test_block_bootstrap_slope_interval_contains_truth_on_ar1_noise():
    rng = np.random.default_rng(6)
    x = np.arange(1, 601, dtype=float) * 100
    slope = 2e-6
    y = 0.3 + slope * x + _ar1(len(x), 0.7, 0.02, rng)
    resid = y - curves.fit_curve("linear", x, y).predict(x)
    block = stats.choose_block_length(resid)
    boot = stats.bootstrap_association(x, y, 400, seed=0, block=block)
    lo, hi = boot["slope_per_10k_ci"]
    assert lo < slope * 10_000 < hi
    # it is wider than the i.i.d. OLS interval, which ignores the autocorrelation
    ols_lo, ols_hi = stats.association(x, y)["slope_per_10k"]["ci"]
    assert hi - lo > ols_hi - ols_lo
    fit = curves.fit_curve("linear", x, y)
    draws = curves.bootstrap_curve_params(fit, x, y, 400, seed=1, block=block)
    assert draws.shape == (400, 2)
    b_lo, b_hi = np.quantile(draws[:, 1], [0.025, 0.975])
    assert b_lo < slope < b_hi


def test_power_law_bootstrap_draws_stay_near_the_truth():
    rng = np.random.default_rng(7)
    y = 0.7 - 2.0 * STEPS**-0.3 + rng.normal(0, 0.005, len(STEPS))
    fit = curves.fit_curve("power_saturating", STEPS, y)
    draws = curves.bootstrap_curve_params(fit, STEPS, y, 200, seed=0, block=10)
    a_lo, a_hi = np.quantile(draws[:, 0], [0.025, 0.975])
    assert a_lo < 0.7 < a_hi and a_hi - a_lo < 0.05


def test_steps_to_target_inverts_each_curve():
    assert curves.steps_to_target("linear", [0.1, 1e-5], 0.6)[0] == pytest.approx(50_000)
    assert curves.steps_to_target("log_linear", [0.0, 0.1], 0.5)[0] == pytest.approx(math.exp(5))
    step = curves.steps_to_target("power_saturating", [0.8, 2.0, 0.5], 0.6)[0]
    assert 0.8 - 2.0 * step**-0.5 == pytest.approx(0.6)
    # above the ceiling, a falling line, a flat log: never
    assert curves.steps_to_target("power_saturating", [0.8, 2.0, 0.5], 0.8)[0] == math.inf
    assert curves.steps_to_target("linear", [0.9, -1e-6], 0.95)[0] == math.inf
    assert curves.steps_to_target("log_linear", [0.0, 0.0], 0.5)[0] == math.inf
    rows = curves.steps_to_target("linear", np.array([[0.1, 1e-5], [0.1, -1e-5]]), 0.6)
    assert rows[0] == pytest.approx(50_000) and rows[1] == math.inf


def test_interval_with_unreached_draws_is_open_ended():
    draws = np.concatenate([np.arange(90.0), np.full(10, np.inf)])
    lo, hi = curves.interval_with_unreached(draws)
    assert lo == pytest.approx(2.0) and hi is None
    assert curves.interval_with_unreached(np.arange(100.0)) == [2.0, 97.0]


def test_one_fisher_interval_for_pearson_and_spearman():
    import math

    x = np.arange(12.0)
    y = x + np.random.default_rng(5).normal(0, 3, 12)
    r = stats.pearson_with_ci(x, y)
    assert r["ci"] == pytest.approx(stats.fisher_interval(r["r"], 1 / math.sqrt(12 - 3)))
    rho = stats.spearman_with_ci(x, y)
    assert rho["ci"] == pytest.approx(stats.fisher_interval(rho["rho"], math.sqrt((1 + rho["rho"] ** 2 / 2) / 9)))
