"""Honest statistics for autocorrelated learning curves: HAC slope errors, effective n, AIC ties,
a rolling-origin forecast check and r's dependence on the step range.

A learning curve's neighbouring points share model state and the LR schedule, so its residuals are
strongly autocorrelated (lag-1 0.75-0.91 around the fitted curves of both the original study and
our CPU tier). Every "n independent points" formula then overstates the evidence: a p-value of
1e-200 on 1,000 logged points says more about the logging interval than about learning. This module
states what the data can support. Pure: arrays in, dicts out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sstats

from bertstudy.analysis import curves, stats

AIC_TIE = 4.0  # AIC gaps below this (after the effective-n adjustment) are ties
ROLLING_ORIGINS = (0.4, 0.5, 0.6, 0.7, 0.8)  # forecast origins, as shares of the curve points
POWER_BOUND_C = 0.01  # a power law whose exponent sits at or below this is log-linear in disguise


def newey_west_lag(n: int) -> int:
    """The usual automatic lag: floor(4 (n/100)^(2/9)) (Newey & West 1994), at least 1."""
    return max(1, int(math.floor(4 * (n / 100) ** (2 / 9))))


def newey_west_slope(steps, values, lag: int | None = None, level: float = 0.95) -> dict:
    """OLS slope per 10K steps with its plain and its Newey-West (Bartlett kernel) standard error."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    n = len(x)
    if n < 4 or np.ptp(x) == 0:
        return {"estimate": None, "se_plain": None, "se_hac": None, "ci_hac": [None, None], "lag": None}
    lag = newey_west_lag(n) if lag is None else int(lag)
    X = np.column_stack([np.ones(n), x - x.mean()])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    e = y - X @ coef
    bread = np.linalg.inv(X.T @ X)
    scores = X * e[:, None]
    meat = scores.T @ scores
    for j in range(1, min(lag, n - 1) + 1):
        w = 1 - j / (lag + 1)
        gamma = scores[j:].T @ scores[:-j]
        meat += w * (gamma + gamma.T)
    cov_hac = bread @ meat @ bread * n / (n - 2)
    se_plain = math.sqrt(np.sum(e**2) / (n - 2) * bread[1, 1])
    se_hac = math.sqrt(max(cov_hac[1, 1], 0.0))
    unit = stats.STEPS_PER_SLOPE_UNIT
    q = float(sstats.norm.ppf(0.5 + level / 2))
    return {"estimate": float(coef[1] * unit), "se_plain": se_plain * unit, "se_hac": se_hac * unit,
            "ci_hac": [float((coef[1] - q * se_hac) * unit), float((coef[1] + q * se_hac) * unit)],
            "lag": lag, "se_ratio": se_hac / se_plain if se_plain > 0 else None}


def effective_n(residuals) -> float | None:
    """n (1 - rho) / (1 + rho) for lag-1 autocorrelation rho > 0 (AR(1) variance inflation); n otherwise."""
    e = np.asarray(residuals, float)
    rho = stats.lag1_autocorrelation(e)
    if rho is None:
        return None
    return float(len(e) * (1 - rho) / (1 + rho)) if rho > 0 else float(len(e))


def rank_curves(fits: dict, curve_x, curve_y) -> dict:
    """Order the fitted families by AIC; a gap counts only after scaling by n_eff/n (the AIC of n
    autocorrelated points counts each as independent), and a scaled gap under AIC_TIE is a tie.
    A power law with its exponent at the bound is reported as log-linear (the limit c -> 0)."""
    x, y = np.asarray(curve_x, float), np.asarray(curve_y, float)
    ok = {name: f for name, f in fits.items() if f.ok and math.isfinite(f.aic)}
    if not ok:
        return {"order": [], "leader": None, "tied_with_leader": [], "verdict": "no curve could be fitted"}
    order = sorted(ok, key=lambda name: ok[name].aic)
    leader = ok[order[0]]
    resid = y - leader.predict(x)
    n_eff = effective_n(resid) or float(len(x))
    scale = min(1.0, n_eff / len(x))
    rows = []
    for name in order:
        gap = ok[name].aic - leader.aic
        rows.append({"name": name, "delta_aic": float(gap), "delta_aic_effective": float(gap * scale),
                     "residual_lag1": stats.lag1_autocorrelation(y - ok[name].predict(x))})
    tied = [r["name"] for r in rows[1:] if r["delta_aic_effective"] < AIC_TIE]
    notes = {}
    power = ok.get("power_saturating")
    if power is not None and power.params["c"] <= POWER_BOUND_C:
        notes["power_saturating"] = (f"exponent c = {power.params['c']:.2g} at the bound: a - b*step^(-c) is then "
                                     "log-linear (a - b + b*c*ln(step)); read it as log-linear")
    verdict = (f"{order[0]} leads; tied with {', '.join(tied)} (effective n {n_eff:.0f} of {len(x)})" if tied
               else f"{order[0]} leads by more than {AIC_TIE:g} effective AIC (effective n {n_eff:.0f} of {len(x)})")
    return {"order": rows, "leader": order[0], "tied_with_leader": tied, "effective_n": n_eff,
            "scale": scale, "notes": notes, "verdict": verdict}


def rolling_origin_forecast(steps, values, fit, origins=ROLLING_ORIGINS) -> list[dict]:
    """Fit a model on the points before each origin (a fraction of the points) and score its mean absolute
    error on all later points; one split can fall on a phase change, several rarely all do. `fit(x, y)`
    returns a fitted model (anything with `predict(steps)`) or None when none could be fitted. One row per
    origin that leaves 4 points or more before it and one after: `fraction`, `split_step`, `model` and
    `mae` (None without a model). Nothing after the origin is used."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    rows = []
    for fraction in origins:
        n_train = int(math.floor(len(x) * fraction))
        if n_train < 4 or n_train >= len(x):
            continue
        model = fit(x[:n_train], y[:n_train])
        mae = float(np.mean(np.abs(model.predict(x[n_train:]) - y[n_train:]))) if model is not None else None
        rows.append({"fraction": fraction, "split_step": float(x[n_train]), "model": model, "mae": mae})
    return rows


def _family_fit(name: str):
    def fit(x, y):
        fitted = curves.fit_curve(name, x, y)
        return fitted if fitted.ok else None
    return fit


def family_forecast(steps, values, origins=ROLLING_ORIGINS) -> dict:
    """Every family's rolling-origin forecast: its MAE at each origin, its mean over the origins (None
    unless it has a finite MAE at every one), how often each family had the lowest MAE, and the best by mean."""
    forecasts = {name: rolling_origin_forecast(steps, values, _family_fit(name), origins) for name in curves.CURVE_NAMES}
    first = forecasts[curves.CURVE_NAMES[0]]
    per_origin = [{"fraction": row["fraction"], "split_step": row["split_step"],
                   "mae": {name: forecasts[name][i]["mae"] for name in curves.CURVE_NAMES}}
                  for i, row in enumerate(first)]
    maes = {name: [r["mae"] for r in rows if r["mae"] is not None and math.isfinite(r["mae"])]
            for name, rows in forecasts.items()}
    mean_mae = {name: (float(np.mean(v)) if len(v) == len(per_origin) and v else None) for name, v in maes.items()}
    wins = {name: 0 for name in curves.CURVE_NAMES}
    for row in per_origin:
        scored = {k: v for k, v in row["mae"].items() if v is not None}
        if scored:
            wins[min(scored, key=scored.get)] += 1
    scored = {k: v for k, v in mean_mae.items() if v is not None}
    return {"origins": per_origin, "mean_mae": mean_mae, "wins": wins,
            "best_by_mean_mae": min(scored, key=scored.get) if scored else None}


def r_by_step_range(steps, values, fractions=(0.25, 0.5, 1.0)) -> dict:
    """Pearson r over the first quarter, half and all of the step range, and on a log-spaced
    subsample: r measures the range and the logging density as much as the learning."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    out = {}
    for fraction in fractions:
        keep = x <= x.min() + fraction * (x.max() - x.min())
        r = stats.pearson_with_ci(x[keep], y[keep])["r"] if keep.sum() >= 3 else None
        out[f"first_{int(round(fraction * 100))}pct"] = {"r": r, "n": int(keep.sum()), "last_step": float(x[keep].max())}
    positive = x[x > 0]
    if len(positive) >= 3:
        targets = np.geomspace(positive.min(), positive.max(), min(50, len(positive)))
        idx = np.unique([int(np.argmin(np.abs(x - t))) for t in targets])
        out["log_spaced"] = {"r": stats.pearson_with_ci(x[idx], y[idx])["r"], "n": int(len(idx))}
    return out
