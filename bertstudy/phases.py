"""Plateaus and phase transitions in a learning curve: a continuous piecewise-linear fit in ln(step).

A BERT's MLM accuracy often rises (character frequencies), sits on a plateau, then rises again once
attention starts to use context. The smooth families in `curves.py` average over that shape; this
model expresses it. With u = ln(step) and breakpoints b1 < b2 (in u),

    y = a + s1*u + (s2 - s1)*max(u - b1, 0) + (s3 - s2)*max(u - b2, 0)

i.e. straight lines in log-step joined at the breakpoints. For fixed breakpoints the model is linear
in (a, s...), so the breakpoints are profiled: an exhaustive grid over candidate pairs (one least-
squares solve each, vectorized), then a local refinement of the best pair. The breakpoints count as
parameters in AIC (k = 2 + 2 x breaks), the usual convention for segmented regression.

A *plateau* is reported only when the middle segment of the two-break fit rises much more slowly
than the segments on both sides (slope ratio below PLATEAU_SLOPE_RATIO) and the segmented fit beats
the one-break and no-break fits by more than an AIC tie (AIC_TIE). The plateau's intervals come
from a circular block bootstrap of the two-break fit's residuals (`stats.circular_block_indices`).

`rolling_origin_forecast` scores the model as a forecaster at the families' origins (refitted on the
points before each, its last segment extrapolated), and `choose_model` decides whether the phase
model or the leading family is the curve to report (AIC beyond a tie at the effective n, and a
rolling-origin forecast that does not contradict it). Everything here is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from . import dependence, stats
from .stats import circular_block_indices  # noqa: F401  (the resampling scheme lives in stats)

AIC_TIE = 4.0  # AIC gaps below this are ties (Burnham & Anderson: < 4 is "considerable support" for both)
PLATEAU_SLOPE_RATIO = 1 / 3  # the plateau rises at most a third as fast as the rises on either side
MIN_SEGMENT_POINTS = 3  # each segment needs this many points, or its slope is noise
GRID_POINTS = 48  # candidate breakpoints (quantiles of ln(step)) per break in the exhaustive search


@dataclass
class SegmentedFit:
    breaks: tuple[float, ...]  # breakpoints in steps (exp of the breakpoints in ln(step))
    slopes: tuple[float, ...]  # accuracy per unit ln(step) on each segment, left to right
    intercept: float  # value at ln(step) = 0 of the first segment's line
    rss: float  # residual sum of squares
    aic: float  # Gaussian AIC: n*ln(RSS/n) + 2k, k = 2 + 2 x len(breaks)
    n: int  # points fitted
    residuals: np.ndarray = field(repr=False)  # observed minus fitted, in step order

    @property
    def k(self) -> int:
        return 2 + 2 * len(self.breaks)

    def predict(self, steps) -> np.ndarray:
        u = np.log(np.asarray(steps, float))
        return _design(u, np.log(self.breaks)) @ self.coefficients()

    def coefficients(self) -> np.ndarray:
        """(a, s1, s2 - s1, s3 - s2...): the coefficients of `_design`'s columns."""
        return np.array([self.intercept, self.slopes[0], *np.diff(self.slopes)], float)

    def to_json(self) -> dict:
        return {"breaks": [float(b) for b in self.breaks], "slopes_per_ln_step": [float(s) for s in self.slopes],
                "intercept": float(self.intercept), "rss": float(self.rss), "aic": float(self.aic), "n": self.n,
                "k": self.k}


def _design(u: np.ndarray, log_breaks) -> np.ndarray:
    columns = [np.ones_like(u), u] + [np.maximum(u - b, 0.0) for b in log_breaks]
    return np.column_stack(columns)


def _aic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300 * n) / n) + 2 * k


def _fit_fixed(u: np.ndarray, y: np.ndarray, log_breaks) -> tuple[np.ndarray, float]:
    X = _design(u, log_breaks)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef, float(np.sum((y - X @ coef) ** 2))


def _candidates(u: np.ndarray, grid_points: int) -> np.ndarray:
    """Breakpoint candidates between the MIN_SEGMENT_POINTS-th point from each end."""
    lo, hi = u[MIN_SEGMENT_POINTS - 1], u[-MIN_SEGMENT_POINTS]
    if hi <= lo:
        return np.array([])
    return np.linspace(lo, hi, grid_points + 2)[1:-1]


def _segments_ok(u: np.ndarray, log_breaks) -> bool:
    edges = [-np.inf, *log_breaks, np.inf]
    return all(np.count_nonzero((u > left) & (u <= right)) >= MIN_SEGMENT_POINTS
               for left, right in zip(edges[:-1], edges[1:]))


def _grid_rss(u: np.ndarray, Y: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """RSS of each series (rows of Y) for each breakpoint tuple (rows of pairs): (series, tuples)."""
    out = np.empty((len(Y), len(pairs)))
    for j, breaks in enumerate(pairs):
        X = _design(u, breaks)
        q, _ = np.linalg.qr(X)
        fitted = (Y @ q) @ q.T
        out[:, j] = np.sum((Y - fitted) ** 2, axis=1)
    return out


def _best_breaks(u: np.ndarray, y: np.ndarray, n_breaks: int, grid_points: int) -> np.ndarray | None:
    cands = _candidates(u, grid_points)
    if n_breaks == 1:
        tuples = [(b,) for b in cands]
    else:
        tuples = [(b1, b2) for i, b1 in enumerate(cands) for b2 in cands[i + 1:]]
    tuples = np.array([t for t in tuples if _segments_ok(u, t)], float).reshape(-1, n_breaks)
    if len(tuples) == 0:
        return None
    start = tuples[int(np.argmin(_grid_rss(u, y[None, :], tuples)[0]))]

    def profile(log_breaks):
        b = np.sort(log_breaks)
        if b[0] <= u[0] or b[-1] >= u[-1] or not _segments_ok(u, b):
            return np.inf
        return _fit_fixed(u, y, b)[1]

    refined = optimize.minimize(profile, start, method="Nelder-Mead",
                                options={"xatol": 1e-4, "fatol": 1e-14, "maxiter": 400})
    best = np.sort(refined.x) if refined.fun < profile(start) else start
    return best


def fit_segmented(steps, values, n_breaks: int, grid_points: int = GRID_POINTS) -> SegmentedFit | None:
    """Continuous piecewise-linear fit in ln(step) with 0, 1 or 2 breakpoints; None when there are
    too few points for that many segments. Steps must be positive (step 0 is left out by callers)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(x <= 0):
        raise ValueError("steps must be positive for a fit in ln(step)")
    n = len(x)
    if n < MIN_SEGMENT_POINTS * (n_breaks + 1):
        return None
    u = np.log(x)
    log_breaks = np.array([]) if n_breaks == 0 else _best_breaks(u, y, n_breaks, grid_points)
    if log_breaks is None:
        return None
    coef, rss = _fit_fixed(u, y, log_breaks)
    slopes = np.cumsum(coef[1:])
    resid = y - _design(u, log_breaks) @ coef
    return SegmentedFit(tuple(float(v) for v in np.exp(log_breaks)), tuple(float(s) for s in slopes),
                        float(coef[0]), rss, _aic(rss, n, 2 + 2 * n_breaks), n, resid)


def plateau_of(fit: SegmentedFit | None) -> dict | None:
    """The middle segment of a two-break fit when it is a plateau between two rises, else None."""
    if fit is None or len(fit.breaks) != 2:
        return None
    s1, s2, s3 = fit.slopes
    if s1 <= 0 or s3 <= 0 or s2 >= PLATEAU_SLOPE_RATIO * min(s1, s3):
        return None
    start, end = fit.breaks
    level = float(np.mean(fit.predict(np.array([start, end]))))
    return {"start_step": start, "end_step": end, "level": level, "slope_per_ln_step": s2,
            "rise_slopes_per_ln_step": [s1, s3]}


def detect_phases(steps, values, *, n_resamples: int = 200, seed: int = 0, block: int | None = None,
                  level: float = 0.95) -> dict:
    """Fit 0, 1 and 2 breakpoints; report a plateau when the two-break fit wins by more than AIC_TIE
    and its middle segment is flat, with circular-block bootstrap intervals for its start, end and level
    (residual blocks around the two-break fit; block from their lag-1 autocorrelation unless given)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    fits = {k: fit_segmented(x, y, k) for k in (0, 1, 2)}
    aics = {k: (f.aic if f is not None else None) for k, f in fits.items()}
    out = {"model": "continuous piecewise-linear in ln(step)", "aic": {str(k): v for k, v in aics.items()},
           "fits": {str(k): (f.to_json() if f else None) for k, f in fits.items()}, "plateau": None,
           "verdict": "", "aic_tie": AIC_TIE}
    two, rivals = fits[2], [f for k, f in fits.items() if k < 2 and f is not None]
    if two is None or not rivals:
        out["verdict"] = f"too few points for a two-break fit (needs {3 * MIN_SEGMENT_POINTS})"
        return out
    gap = min(f.aic for f in rivals) - two.aic
    out["aic_gap_two_breaks"] = float(gap)
    plateau = plateau_of(two)
    if plateau is None:
        out["verdict"] = "no plateau: the two-break fit has no flat middle segment between two rises"
        return out
    if gap <= AIC_TIE:
        out["verdict"] = f"no plateau: the two-break fit beats fewer breaks by only {gap:.1f} AIC (a tie)"
        return out
    block = block or stats.choose_block_length(two.residuals)
    draws = _bootstrap_plateau(x, y, two, n_resamples, seed, block) if n_resamples > 0 else np.full((0, 3), np.nan)
    q = [0.5 - level / 2, 0.5 + level / 2]
    for key, column in (("start_step", 0), ("end_step", 1), ("level", 2)):
        finite = draws[:, column][np.isfinite(draws[:, column])]
        plateau[f"{key}_ci"] = [float(v) for v in np.quantile(finite, q)] if len(finite) >= 2 else [None, None]
    plateau["bootstrap"] = {"resamples": n_resamples, "block": block, "scheme": "circular block, residuals",
                            "no_plateau_share": _num(np.mean(~np.isfinite(draws[:, 0]))) if n_resamples else None}
    out["plateau"] = plateau
    out["verdict"] = (f"plateau from step {plateau['start_step']:,.0f} to {plateau['end_step']:,.0f} "
                      f"(AIC {gap:.1f} ahead of fewer breaks)")
    return out


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def predict_from_json(fit_json: dict, steps) -> np.ndarray:
    """Values of a fit as `SegmentedFit.to_json` wrote it (the analysis JSON): the charts draw it."""
    u = np.log(np.asarray(steps, float))
    slopes = fit_json["slopes_per_ln_step"]
    coef = np.array([fit_json["intercept"], slopes[0], *np.diff(slopes)], float)
    return _design(u, np.log(fit_json["breaks"])) @ coef


def fit_best_segmented(steps, values) -> SegmentedFit | None:
    """The fit with 0, 1 or 2 breaks that has the smallest AIC (None with fewer than 3 points)."""
    fits = [f for f in (fit_segmented(steps, values, k) for k in (0, 1, 2)) if f is not None]
    return min(fits, key=lambda f: f.aic) if fits else None


def rolling_origin_forecast(steps, values, origins=(0.4, 0.5, 0.6, 0.7, 0.8)) -> dict:
    """The segmented model's forecast at the same origins as `dependence.rolling_origin_forecast`:
    on the points before each origin it fits 0, 1 and 2 breaks, keeps the smallest AIC, and its last
    segment (a line in ln(step)) is extrapolated over all later points; MAE as for the families.
    Nothing after the origin is used, so a phase change that has not begun by then is not foreseen."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    rows = []
    for fraction in origins:
        n_train = int(math.floor(len(x) * fraction))
        if n_train < 4 or n_train >= len(x):
            continue
        best = fit_best_segmented(x[:n_train], y[:n_train])
        mae = float(np.mean(np.abs(best.predict(x[n_train:]) - y[n_train:]))) if best else None
        rows.append({"fraction": fraction, "split_step": float(x[n_train]), "mae": mae,
                     "breaks": [float(b) for b in best.breaks] if best else None})
    maes = [r["mae"] for r in rows if r["mae"] is not None]
    return {"origins": rows, "mean_mae": float(np.mean(maes)) if rows and len(maes) == len(rows) else None}


def choose_model(phase: dict, family_fits: dict, ranking: dict, family_forecast: dict, phase_forecast: dict,
                 steps, values) -> dict:
    """Is the phase model (the two-break fit, a candidate only when it shows a plateau) chosen over the
    best family? Only when both hold:
    - AIC: its lead over the best family, scaled by n_eff/n (the smaller effective n of the two
      fits' residuals, as `dependence.rank_curves` scales gaps), exceeds AIC_TIE;
    - forecast: the rolling-origin check does not contradict it, i.e. its mean MAE over the
      origins (`rolling_origin_forecast`) is no larger than the best family's mean MAE there.
    Otherwise the leading family stays the chosen curve."""
    leader = ranking.get("leader")
    out = {"chosen": leader, "candidate": False, "rule": "phase model chosen only when its effective-n AIC lead "
           f"over the best family exceeds {AIC_TIE:g} and its rolling-origin mean MAE is no larger than the best "
           "family's"}
    two = phase.get("fits", {}).get("2")
    if phase.get("plateau") is None or two is None or leader is None:
        out["verdict"] = "phase model not a candidate: " + (phase.get("verdict") or "no two-break fit")
        return out
    x, y = np.asarray(steps, float), np.asarray(values, float)
    family = family_fits[leader]
    n_eff = min(dependence.effective_n(y - predict_from_json(two, x)) or len(x),
                dependence.effective_n(y - family.predict(x)) or len(x))
    gap = family.aic - two["aic"]
    scaled = gap * min(1.0, n_eff / len(x))
    best_family = family_forecast.get("best_by_mean_mae")
    family_mae = family_forecast["mean_mae"].get(best_family) if best_family else None
    phase_mae = phase_forecast.get("mean_mae")
    aic_wins = scaled > AIC_TIE
    forecast_ok = phase_mae is not None and family_mae is not None and phase_mae <= family_mae
    out.update(candidate=True, aic_gap=float(gap), aic_gap_effective=float(scaled), effective_n=float(n_eff),
               aic_beats_families=bool(aic_wins), forecast_mean_mae=phase_mae, best_family_by_forecast=best_family,
               best_family_mean_mae=family_mae, forecast_contradicts=not forecast_ok)
    if aic_wins and forecast_ok:
        out["chosen"] = "phases"
        out["verdict"] = (f"phase model chosen: AIC {gap:.1f} ahead of {leader} ({scaled:.1f} at effective n "
                          f"{n_eff:.0f}) and rolling-origin MAE {phase_mae:.4f} <= {family_mae:.4f} ({best_family})")
    else:
        why = [] if aic_wins else [f"its AIC lead over {leader} is a tie at effective n ({scaled:.1f})"]
        if not forecast_ok:
            why.append("the rolling-origin forecast contradicts it (mean MAE "
                       f"{'n/a' if phase_mae is None else format(phase_mae, '.4f')} against "
                       f"{'n/a' if family_mae is None else format(family_mae, '.4f')} for {best_family})")
        out["verdict"] = "phase model not chosen: " + "; ".join(why)
    return out


def _bootstrap_plateau(x, y, fit: SegmentedFit, n_resamples: int, seed: int, block: int) -> np.ndarray:
    """(n_resamples, 3): plateau start, end and level per resample; NaN where a resample has none."""
    fitted = fit.predict(x)
    resid = fit.residuals - fit.residuals.mean()
    idx = circular_block_indices(len(x), block, n_resamples, np.random.default_rng(seed))
    draws = np.full((n_resamples, 3), np.nan)
    for i in range(n_resamples):
        refit = fit_segmented(x, fitted + resid[idx[i]], 2, grid_points=24)
        p = plateau_of(refit)
        if p is not None:
            draws[i] = (p["start_step"], p["end_step"], p["level"])
    return draws
