"""Learning-curve families on one metric against training steps: fits, forecasts, bootstrap refits
and steps-to-target. Pure: arrays in, `CurveFit`s or dicts out.

Curves (x = training step):
- linear            y = a + b*x
- log_linear        y = a + b*ln(x)                 (needs x > 0)
- power_saturating  y = a - b*x^(-c)                (a is the ceiling when b > 0, c > 0)
The power law is fitted by profiling: for fixed c it is linear in (a, b), so a grid over c gives a
global start that scipy's curve_fit then refines; no luck with starting values is involved.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from bertstudy.analysis.stats import circular_block_indices, json_number, t_quantile

CURVE_NAMES = ("linear", "log_linear", "power_saturating")
PARAM_NAMES = {"linear": ("a", "b"), "log_linear": ("a", "b"), "power_saturating": ("a", "b", "c")}
FORMULAS = {"linear": "a + b*step", "log_linear": "a + b*ln(step)", "power_saturating": "a - b*step^(-c)"}
POWER_C_GRID = np.geomspace(0.01, 5.0, 240)  # exponents tried when profiling the power law
POWER_C_BOUNDS = (1e-4, 10.0)  # curve_fit's range for c; beyond it the curve is a step or a constant


@dataclass
class CurveFit:
    name: str  # one of CURVE_NAMES
    params: dict[str, float]  # estimates in raw step units, keys PARAM_NAMES[name]
    param_ci: dict[str, tuple[float, float]]  # 95% t-intervals from the fit's covariance
    r_squared: float  # 1 - RSS/TSS on the points fitted
    aic: float  # Gaussian AIC: n*ln(RSS/n) + 2k
    rss: float  # residual sum of squares
    n: int  # points fitted
    ok: bool  # False when the fit was not possible; message says why
    message: str  # "" when ok
    cov: np.ndarray | None = field(default=None, repr=False)  # parameter covariance (raw units)

    @property
    def k(self) -> int:
        return len(PARAM_NAMES[self.name])

    def param_vector(self) -> np.ndarray:
        return np.array([self.params[p] for p in PARAM_NAMES[self.name]], dtype=float)

    def predict(self, steps: np.ndarray) -> np.ndarray:
        x = np.asarray(steps, dtype=float)
        if not self.ok:
            return np.full(x.shape, np.nan)
        return curve_value(self.name, self.param_vector(), x)

    def prediction_band(self, steps, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Band for a new observation: parameter uncertainty (delta method) plus residual noise."""
        x = np.asarray(steps, dtype=float)
        centre = self.predict(x)
        if not self.ok or self.cov is None or self.n <= self.k:
            return np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        grad = curve_gradient(self.name, self.param_vector(), x)  # (len(x), k)
        param_var = np.einsum("ij,jk,ik->i", grad, self.cov, grad)
        noise_var = self.rss / (self.n - self.k)
        half = t_quantile(level, self.n - self.k) * np.sqrt(np.maximum(param_var, 0) + noise_var)
        return centre - half, centre + half

    def to_json(self) -> dict:
        return {"name": self.name, "formula": FORMULAS[self.name], "ok": self.ok, "message": self.message,
                "params": {k: json_number(v) for k, v in self.params.items()},
                "param_ci": {k: [json_number(lo), json_number(hi)] for k, (lo, hi) in self.param_ci.items()},
                "r_squared": json_number(self.r_squared), "aic": json_number(self.aic), "rss": json_number(self.rss), "n": self.n}


def curve_value(name: str, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    if name == "linear":
        return p[0] + p[1] * x
    if name == "log_linear":
        return p[0] + p[1] * np.log(x)
    return p[0] - p[1] * np.power(x, -p[2])


def curve_gradient(name: str, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    ones = np.ones_like(x)
    if name == "linear":
        return np.column_stack([ones, x])
    if name == "log_linear":
        return np.column_stack([ones, np.log(x)])
    power = np.power(x, -p[2])
    return np.column_stack([ones, -power, p[1] * power * np.log(x)])


def _failed(name: str, n: int, message: str) -> CurveFit:
    names = PARAM_NAMES[name]
    return CurveFit(name, {p: math.nan for p in names}, {p: (math.nan, math.nan) for p in names},
                    math.nan, math.nan, math.nan, n, False, message)


def gaussian_aic(rss: float, n: int, k: int) -> float:
    """n*ln(RSS/n) + 2k. An exact fit has RSS 0 and AIC -inf; a floor keeps AIC finite (and still the smallest)."""
    return n * math.log(max(rss, 1e-300 * n) / n) + 2 * k


def _finish(name: str, p: np.ndarray, cov: np.ndarray | None, x: np.ndarray, y: np.ndarray) -> CurveFit:
    n, k = len(x), len(p)
    rss = float(np.sum((y - curve_value(name, p, x)) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    aic = gaussian_aic(rss, n, k)
    q = t_quantile(0.95, n - k)
    ci = {}
    for i, pname in enumerate(PARAM_NAMES[name]):
        se = math.sqrt(cov[i, i]) if cov is not None and cov[i, i] >= 0 else math.nan
        ci[pname] = (float(p[i] - q * se), float(p[i] + q * se))
    r2 = 1 - rss / tss if tss > 0 else math.nan
    return CurveFit(name, {pn: float(v) for pn, v in zip(PARAM_NAMES[name], p)}, ci, r2, aic, rss, n, True, "", cov)


def _fit_linear_design(name: str, x: np.ndarray, y: np.ndarray, design_x: np.ndarray) -> CurveFit:
    n = len(x)
    if np.ptp(design_x) == 0:
        return _failed(name, n, "all steps are equal: no slope can be fitted")
    X = np.column_stack([np.ones(n), design_x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rss = float(np.sum((y - X @ coef) ** 2))
    cov = (rss / (n - 2)) * np.linalg.inv(X.T @ X) if n > 2 else None
    return _finish(name, coef, cov, x, y)


def profile_power_exponent(x: np.ndarray, Y: np.ndarray, c_grid: np.ndarray = POWER_C_GRID):
    """For each row of Y (one series per row, shared x) the exponent c with the smallest RSS of
    y = a - b*x^(-c), and that fit's a and b. Vectorized: one matrix product over a grid of c, then
    a parabolic step in ln(c) between the best grid point's neighbours (so draws are not stuck on
    the grid), then the exact (a, b) for each row's c."""
    Y = np.atleast_2d(Y)
    scale = x.max()
    Z = np.power(x[None, :] / scale, -c_grid[:, None])  # (G, n); scaled so powers stay moderate
    Zc = Z - Z.mean(axis=1, keepdims=True)
    szz = np.sum(Zc**2, axis=1)  # (G,)
    Yc = Y - Y.mean(axis=1, keepdims=True)
    szy = Yc @ Zc.T  # (B, G)
    rss = np.sum(Yc**2, axis=1)[:, None] - szy**2 / szz[None, :]
    best = np.argmin(rss, axis=1)
    rows = np.arange(len(Y))
    log_c = np.log(c_grid[best])
    inner = (best > 0) & (best < len(c_grid) - 1)
    if inner.any():
        i = best[inner]
        r_lo, r_mid, r_hi = rss[rows[inner], i - 1], rss[rows[inner], i], rss[rows[inner], i + 1]
        h = np.log(c_grid[i + 1]) - np.log(c_grid[i])  # the grid is geometric: equal steps in ln(c)
        curvature = r_lo - 2 * r_mid + r_hi
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curvature > 0, 0.5 * h * (r_lo - r_hi) / curvature, 0.0)
        log_c[inner] += np.clip(np.nan_to_num(shift), -h, h)
    c = np.exp(log_c)
    Zr = np.power(x[None, :] / scale, -c[:, None])  # (B, n): each row's own exponent
    Zrc = Zr - Zr.mean(axis=1, keepdims=True)
    slope = np.sum(Yc * Zrc, axis=1) / np.sum(Zrc**2, axis=1)  # coefficient of (x/scale)^(-c) = -b*scale^c
    intercept = Y.mean(axis=1) - slope * Zr.mean(axis=1)
    b = -slope * np.power(scale, c)
    return intercept, b, c


def _fit_power(x: np.ndarray, y: np.ndarray) -> CurveFit:
    name, n = "power_saturating", len(x)
    if np.any(x <= 0):
        return _failed(name, n, "steps must be positive for a power law")
    a0, b0, c0 = (float(v[0]) for v in profile_power_exponent(x, y[None, :]))
    scale = x.max()
    bs0 = b0 / scale**c0  # b in scaled units: a - bs*(x/scale)^(-c)

    def model(xs, a, bs, c):
        return a - bs * np.power(xs, -c)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = optimize.curve_fit(
                model, x / scale, y, p0=[a0, bs0, min(max(c0, 1e-3), 9.0)],
                bounds=([-np.inf, -np.inf, POWER_C_BOUNDS[0]], [np.inf, np.inf, POWER_C_BOUNDS[1]]), maxfev=20000,
            )
    except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
        return _failed(name, n, f"curve_fit did not converge: {exc}")
    if not np.all(np.isfinite(popt)):
        return _failed(name, n, "curve_fit returned non-finite parameters")
    a, bs, c = popt
    # Back to raw step units: b = bs * scale^c; the covariance follows by the chain rule.
    jac = np.array([[1, 0, 0], [0, scale**c, bs * scale**c * math.log(scale)], [0, 0, 1]])
    cov = jac @ pcov @ jac.T if np.all(np.isfinite(pcov)) else None
    return _finish(name, np.array([a, bs * scale**c, c]), cov, x, y)


def fit_curve(name: str, steps: np.ndarray, values: np.ndarray) -> CurveFit:
    """Fit one named curve; a fit that is not possible comes back with ok=False and a message."""
    if name not in CURVE_NAMES:
        raise ValueError(f"unknown curve {name!r}; choose from {', '.join(CURVE_NAMES)}")
    x, y = np.asarray(steps, float), np.asarray(values, float)
    n, k = len(x), len(PARAM_NAMES[name])
    if n < k + 1:
        return _failed(name, n, f"too few points: {n} (a {name} fit needs at least {k + 1})")
    if name == "linear":
        return _fit_linear_design(name, x, y, x)
    if np.any(x <= 0):
        return _failed(name, n, f"steps must be positive for {name}")
    if name == "log_linear":
        return _fit_linear_design(name, x, y, np.log(x))
    return _fit_power(x, y)


def fit_all_curves(steps: np.ndarray, values: np.ndarray) -> dict[str, CurveFit]:
    return {name: fit_curve(name, steps, values) for name in CURVE_NAMES}


def best_curve(fits: dict[str, CurveFit]) -> str | None:
    """The successful fit with the smallest AIC, or None when none succeeded."""
    ok = [f for f in fits.values() if f.ok and math.isfinite(f.aic)]
    return min(ok, key=lambda f: f.aic).name if ok else None


def forecast_check(steps, values, train_fraction: float = 0.5) -> dict:
    """Fit each curve on the first `train_fraction` of the points and score it on the rest."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    n_train = int(math.floor(len(x) * train_fraction))
    out = {"train_fraction": train_fraction, "n_train": n_train, "n_test": len(x) - n_train,
           "split_step": float(x[n_train]) if 0 < n_train < len(x) else None, "curves": {}}
    for name in CURVE_NAMES:
        if n_train < 1 or n_train >= len(x):
            fit = _failed(name, n_train, "nothing to forecast: the split leaves no training or test points")
        else:
            fit = fit_curve(name, x[:n_train], y[:n_train])
        entry = {"mae": None, "rmse": None, "fit": fit}
        if fit.ok:
            err = fit.predict(x[n_train:]) - y[n_train:]
            entry["mae"], entry["rmse"] = float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))
        out["curves"][name] = entry
    scored = {k: v["mae"] for k, v in out["curves"].items() if v["mae"] is not None}
    out["best_by_mae"] = min(scored, key=scored.get) if scored else None
    return out


def bootstrap_curve_params(fit: CurveFit, steps, values, n_resamples: int, seed: int, block: int) -> np.ndarray:
    """(n_resamples, k) parameter draws: refits of fitted curve + blocks of its centred residuals.
    The power law is refitted by the vectorized profile over c (one matrix product for all draws)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    fitted = fit.predict(x)
    resid = (y - fitted) - np.mean(y - fitted)
    idx = circular_block_indices(len(x), block, n_resamples, np.random.default_rng(seed))
    Y = fitted[None, :] + resid[idx]
    if fit.name == "power_saturating":
        grid = np.geomspace(POWER_C_BOUNDS[0], POWER_C_GRID[-1], 300)  # reaches the fit's lower bound
        a, b, c = profile_power_exponent(x, Y, grid)
        return np.column_stack([a, b, c])
    design = x if fit.name == "linear" else np.log(x)
    X = np.column_stack([np.ones_like(design), design])
    coef, *_ = np.linalg.lstsq(X, Y.T, rcond=None)
    return coef.T


def steps_to_target(name: str, params: np.ndarray, target: float) -> np.ndarray:
    """Step at which each parameter row's curve reaches `target`; inf where it never does
    (slope <= 0, or a target at or above the power law's ceiling a)."""
    p = np.atleast_2d(np.asarray(params, float))
    out = np.full(len(p), np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if name == "linear":
            ok = p[:, 1] > 0
            out[ok] = (target - p[ok, 0]) / p[ok, 1]
        else:
            if name == "log_linear":
                ok = p[:, 1] > 0
                log_step = (target - p[ok, 0]) / p[ok, 1]
            else:
                ok = (p[:, 0] > target) & (p[:, 1] > 0) & (p[:, 2] > 0)
                log_step = (np.log(p[ok, 1]) - np.log(p[ok, 0] - target)) / p[ok, 2]
            out[ok] = np.exp(np.minimum(log_step, 700.0))  # exp(700) ~ 1e304: "never" in practice
    out[~np.isfinite(out)] = np.inf
    return out


def interval_with_unreached(samples: np.ndarray, level: float = 0.95) -> list:
    """Percentile interval of draws that may be inf (not reached); an inf bound comes back None."""
    s = np.sort(np.asarray(samples, float))
    if len(s) == 0:
        return [None, None]
    lo = s[int(math.floor((0.5 - level / 2) * (len(s) - 1)))]
    hi = s[int(math.ceil((0.5 + level / 2) * (len(s) - 1)))]
    return [json_number(lo), json_number(hi)]
