"""Plateaus and phase transitions in a learning curve: a continuous piecewise-linear fit in ln(step).

A BERT's MLM accuracy often rises (character frequencies), sits on a plateau, then rises again once
attention starts to use context. The smooth families in `stats.py` average over that shape; this
model expresses it. With u = ln(step) and breakpoints b1 < b2 (in u),

    y = a + s1*u + (s2 - s1)*max(u - b1, 0) + (s3 - s2)*max(u - b2, 0)

i.e. straight lines in log-step joined at the breakpoints. For fixed breakpoints the model is linear
in (a, s...), so the breakpoints are profiled: an exhaustive grid over candidate pairs (one least-
squares solve each, vectorized), then a local refinement of the best pair. The breakpoints count as
parameters in AIC (k = 2 + 2 x breaks), the usual convention for segmented regression.

A *plateau* is reported only when the middle segment of the two-break fit rises much more slowly
than the segments on both sides (slope ratio below PLATEAU_SLOPE_RATIO) and the segmented fit beats
the one-break and no-break fits by more than an AIC tie (AIC_TIE). Everything here is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

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


def circular_block_indices(n: int, block: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) indices of blocks that wrap around the end, so every position (the first and
    last included) is drawn equally often: the moving-block scheme under-samples both ends."""
    block = max(1, min(block, n))
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_resamples, n_blocks))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(n_resamples, -1)[:, :n]


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
    block = block or _block_from(two.residuals)
    draws = _bootstrap_plateau(x, y, two, n_resamples, seed, block)
    q = [0.5 - level / 2, 0.5 + level / 2]
    for key, column in (("start_step", 0), ("end_step", 1), ("level", 2)):
        finite = draws[:, column][np.isfinite(draws[:, column])]
        plateau[f"{key}_ci"] = [float(v) for v in np.quantile(finite, q)] if len(finite) >= 2 else [None, None]
    plateau["bootstrap"] = {"resamples": n_resamples, "block": block, "scheme": "circular block, residuals",
                            "no_plateau_share": float(np.mean(~np.isfinite(draws[:, 0])))}
    out["plateau"] = plateau
    out["verdict"] = (f"plateau from step {plateau['start_step']:,.0f} to {plateau['end_step']:,.0f} "
                      f"(AIC {gap:.1f} ahead of fewer breaks)")
    return out


def _block_from(residuals: np.ndarray) -> int:
    e = residuals - residuals.mean()
    denom = float(np.sum(e**2))
    rho = float(np.sum(e[1:] * e[:-1]) / denom) if denom > 0 and len(e) > 2 else 0.0
    n = len(e)
    base = max(1, round(n ** (1 / 3)))
    if 0 < rho < 0.999:
        base = max(base, math.ceil((1.5 * n) ** (1 / 3) * (2 * rho / (1 - rho**2)) ** (2 / 3)))
    return int(min(base, max(1, n // 3)))


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
