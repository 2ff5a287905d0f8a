"""Statistics on one metric against training steps: association (Pearson and Spearman with Fisher
intervals, Kendall, the OLS slope), a circular block bootstrap that respects autocorrelation, and the
small helpers the curve fits share. The learning-curve families are in `curves.py`.

Everything here is pure: arrays in, dicts out, nothing printed or written.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

STEPS_PER_SLOPE_UNIT = 10_000  # slopes are reported per 10K steps, the original study's unit


def t_quantile(level: float, dof: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2, dof)) if dof > 0 else math.inf


def json_number(value) -> float | None:
    """A float for JSON, or None where the value is undefined (NaN/inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pearson_with_ci(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict:
    """Pearson r, its two-sided p-value and a Fisher-z interval (needs n >= 4 and non-constant data)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "p_value": None, "ci": [None, None], "n": n,
                "message": "undefined: fewer than 3 points or a constant series"}
    result = stats.pearsonr(x, y)
    r = float(result.statistic)
    ci = fisher_interval(r, 1 / math.sqrt(n - 3), level) if n >= 4 else [None, None]
    return {"r": r, "p_value": json_number(result.pvalue), "ci": ci, "n": n, "message": ""}


def spearman_with_ci(x, y, level: float = 0.95) -> dict:
    """Spearman rho, its p-value and a Fisher-z interval with the Bonett-Wright standard error (n >= 4)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p_value": None, "ci": [None, None], "n": n,
                "message": "undefined: fewer than 3 points or a constant series"}
    result = stats.spearmanr(x, y)
    rho = float(result.statistic)
    # Bonett-Wright standard error on Fisher's z scale, through the one interval helper Pearson's uses
    ci = fisher_interval(rho, math.sqrt((1 + rho * rho / 2) / (n - 3)), level) if n >= 4 else [None, None]
    return {"rho": rho, "p_value": json_number(result.pvalue), "ci": ci, "n": n, "message": ""}


def correlation_pair(x, y, level: float = 0.95) -> dict:
    """{"pearson": ..., "spearman": ...} of two series, each with its Fisher-z interval."""
    return {"pearson": pearson_with_ci(np.asarray(x, float), np.asarray(y, float), level),
            "spearman": spearman_with_ci(x, y, level)}


def fisher_interval(coefficient: float, se: float, level: float = 0.95) -> list:
    """A correlation's interval on Fisher's z scale, atanh(r) +/- q se, back through tanh: Pearson's with
    se = 1/sqrt(n - 3), Spearman's with the Bonett-Wright se, Pearson's at an effective n with that n."""
    z = math.atanh(max(min(coefficient, 1 - 1e-15), -1 + 1e-15))
    q = float(stats.norm.ppf(0.5 + level / 2))
    return [math.tanh(z - q * se), math.tanh(z + q * se)]


def association(steps: np.ndarray, values: np.ndarray, level: float = 0.95) -> dict:
    """Pearson (with Fisher-z interval), R^2, Spearman, Kendall and the OLS slope per 10K steps."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    pearson = pearson_with_ci(x, y, level)
    out = {"n": len(x), "pearson": pearson,
           "r_squared": None if pearson["r"] is None else pearson["r"] ** 2}
    if pearson["r"] is None:
        out.update(spearman={"rho": None, "p_value": None}, kendall={"tau": None, "p_value": None},
                   slope_per_10k={"estimate": None, "ci": [None, None], "stderr": None})
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties and tiny n give scipy warnings; the numbers stand
        sp, kt = stats.spearmanr(x, y), stats.kendalltau(x, y)
    reg = stats.linregress(x, y)
    half = t_quantile(level, len(x) - 2) * reg.stderr
    unit = STEPS_PER_SLOPE_UNIT
    out["spearman"] = {"rho": json_number(sp.statistic), "p_value": json_number(sp.pvalue)}
    out["kendall"] = {"tau": json_number(kt.statistic), "p_value": json_number(kt.pvalue)}
    out["slope_per_10k"] = {"estimate": float(reg.slope * unit), "ci": [json_number((reg.slope - half) * unit),
                            json_number((reg.slope + half) * unit)], "stderr": json_number(reg.stderr * unit)}
    return out


def moving_average(values, window: int) -> np.ndarray:
    """Centred moving average of the same length; near the ends the window shrinks to what exists."""
    y = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError("window must be >= 1")
    if len(y) == 0 or window == 1:
        return y.copy()
    csum = np.concatenate([[0.0], np.cumsum(y)])
    idx = np.arange(len(y))
    lo = np.clip(idx - (window - 1) // 2, 0, len(y))
    hi = np.clip(idx + window // 2 + 1, 0, len(y))
    return (csum[hi] - csum[lo]) / (hi - lo)


def lag1_autocorrelation(residuals) -> float | None:
    e = np.asarray(residuals, float)
    e = e - e.mean()
    denom = float(np.sum(e**2))
    return float(np.sum(e[1:] * e[:-1]) / denom) if len(e) > 2 and denom > 0 else None


# --- circular block bootstrap -----------------------------------------------------------------
# Logged training metrics are autocorrelated (neighbouring logs share model state and the LR
# schedule), so resampling single points would understate every interval. Blocks of consecutive
# points keep that short-range dependence inside each resample.

def choose_block_length(residuals) -> int:
    """Block length: n^(1/3), lengthened by the AR(1) plug-in factor (2*rho/(1-rho^2))^(2/3) when
    the residuals' lag-1 autocorrelation rho is positive; at most a third of the series."""
    n = len(residuals)
    base = max(1, round(n ** (1 / 3)))
    rho = lag1_autocorrelation(residuals)
    if rho is not None and 0 < rho < 0.999:
        base = max(base, math.ceil((1.5 * n) ** (1 / 3) * (2 * rho / (1 - rho**2)) ** (2 / 3)))
    return int(min(base, max(1, n // 3)))


def circular_block_indices(n: int, block: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) indices of `block` consecutive positions that wrap around the end, so every
    position (the first and last included) is drawn equally often; blocks that stop at the end (the
    moving-block scheme) leave the first point out of most resamples and bias r and the slope."""
    block = max(1, min(block, n))
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_resamples, n_blocks))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(n_resamples, -1)[:, :n]


def percentile_ci(samples: np.ndarray, level: float) -> list:
    finite = samples[np.isfinite(samples)]
    if len(finite) < 2:
        return [None, None]
    lo, hi = np.quantile(finite, [0.5 - level / 2, 0.5 + level / 2])
    return [float(lo), float(hi)]


def bootstrap_association(steps, values, n_resamples: int, seed: int, block: int, level: float = 0.95) -> dict:
    """Intervals for Pearson r and the OLS slope (per 10K steps) from circular blocks of (step, value)
    pairs; `block` should come from the line's own residuals (`association_block_length`)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    idx = circular_block_indices(len(x), block, n_resamples, np.random.default_rng(seed))
    xb, yb = x[idx], y[idx]
    xc, yc = xb - xb.mean(axis=1, keepdims=True), yb - yb.mean(axis=1, keepdims=True)
    sxy, sxx, syy = (xc * yc).sum(axis=1), (xc**2).sum(axis=1), (yc**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sxy / np.sqrt(sxx * syy)
        slope = sxy / sxx * STEPS_PER_SLOPE_UNIT
    return {"pearson_r_ci": percentile_ci(r, level), "slope_per_10k_ci": percentile_ci(slope, level),
            "pearson_r_se": json_number(np.nanstd(r)) if np.isfinite(r).any() else None}


def association_block_length(steps, values) -> int:
    """Block length for r and the slope: from the residuals of the straight line they describe."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(np.mean(y)))
    return choose_block_length(y - (intercept + slope * x))
