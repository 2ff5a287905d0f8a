"""Plateaus and phase transitions in a learning curve: a continuous piecewise-linear fit in ln(step).

A BERT's MLM accuracy often rises (character frequencies), sits on a plateau, then rises again once
attention starts to use context. The smooth families in `curves.py` average over that shape; this
model expresses it. With u = ln(step) and breakpoints b1 < b2 (in u),

    y = a + s1*u + (s2 - s1)*max(u - b1, 0) + (s3 - s2)*max(u - b2, 0)

i.e. straight lines in log-step joined at the breakpoints. For fixed breakpoints the model is linear
in (a, s...), so the breakpoints are profiled: an exhaustive grid over candidate pairs (one least-
squares solve each, vectorized), then a local refinement of the best pair. The breakpoints count as
parameters in AIC (k = 2 + 2 x breaks), the usual convention for segmented regression.

Fits with 0 to MAX_BREAKS (5) breaks are made and the data choose how many: each extra break must
gain more than an AIC tie (AIC_TIE) over the fit kept so far, its gain scaled to the effective n
of the residuals (a flat start before anything is
learnt, the rise, the plateau, the second rise and its bends; a fixed cap of three spent a break on
the flat start of the 100K run and missed its plateau). A *plateau* is reported only when the kept fit
has a run of inner segments that rises much more slowly than the segments on both sides (slope
ratio below PLATEAU_SLOPE_RATIO). The plateau's intervals come from a circular block bootstrap of
the kept fit's residuals (`stats.circular_block_indices`), refitted with as many breaks.

Whether the phase model or the leading family is the curve to report is phase_choice.py's question.
Everything here is pure.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from bertstudy.analysis import dependence, stats
from bertstudy.analysis.curves import gaussian_aic
from bertstudy.analysis.dependence import AIC_TIE  # one tie rule for the families and the phase model
from bertstudy.analysis.stats import circular_block_indices, json_number
PLATEAU_SLOPE_RATIO = 1 / 3  # the plateau rises at most a third as fast as the rises on either side
MIN_SEGMENT_POINTS = 3  # each segment needs this many points, or its slope is noise
GRID_POINTS = 48  # candidate breakpoints (quantiles of ln(step)) per break in the exhaustive search
# Candidate grid per break count: the exhaustive search stays at or below ~2,000 tuples (C(24,3) =
# 2,024, C(12,4) = 495, C(10,5) = 252); Nelder-Mead refines the best tuple off the grid.
GRID_POINTS_BY_BREAKS = {1: GRID_POINTS, 2: GRID_POINTS, 3: 24, 4: 12, 5: 10}
PATIENCE = 2  # break counts in a row that may fail to earn their place before the search stops
BOOTSTRAP_GRID_POINTS = 24  # each bootstrap refit searches a coarser grid (capped as above)
MAX_BREAKS = 5  # the information criterion chooses 0-5; more than five bends is noise at ~1,000 points


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
    cands = _candidates(u, min(grid_points, GRID_POINTS_BY_BREAKS[n_breaks]))
    tuples = itertools.combinations(cands, n_breaks)
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
    """Continuous piecewise-linear fit in ln(step) with `n_breaks` breakpoints; None when there are
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
                        float(coef[0]), rss, gaussian_aic(rss, n, 2 + 2 * n_breaks), n, resid)


def plateau_of(fit: SegmentedFit | None) -> dict | None:
    """The widest run of inner segments that is flat between two rises, else None. Flat: each
    segment of the run rises less than PLATEAU_SLOPE_RATIO times the slower of the two rises
    around the run (so a flat start before anything is learnt, with no rise before it, is no plateau)."""
    if fit is None or len(fit.breaks) < 2:
        return None
    slopes, best = fit.slopes, None
    for first in range(1, len(slopes) - 1):
        for last in range(first, len(slopes) - 1):
            before, after = slopes[first - 1], slopes[last + 1]
            if before <= 0 or after <= 0:
                continue
            if all(slopes[k] < PLATEAU_SLOPE_RATIO * min(before, after) for k in range(first, last + 1)):
                start, end = fit.breaks[first - 1], fit.breaks[last]
                if best is None or math.log(end / start) > math.log(best[1] / best[0]):
                    best = (start, end, first, last)
    if best is None:
        return None
    start, end, first, last = best
    level = float(np.mean(fit.predict(np.array([start, end]))))
    flat = [slopes[k] for k in range(first, last + 1)]
    return {"start_step": start, "end_step": end, "level": level, "slope_per_ln_step": float(np.mean(flat)),
            "rise_slopes_per_ln_step": [slopes[first - 1], slopes[last + 1]]}


def fit_break_counts(steps, values, max_breaks: int = MAX_BREAKS) -> dict:
    """Fits with 0, 1, ... breaks, forward: PATIENCE counts in a row that do not earn their place
    (AIC_TIE over the fit kept so far) end the search, and the counts after them are not fitted (None,
    as for too few points). Two, not one: a plateau inside a straight trend needs two breaks at once."""
    fits, kept, failed = {}, None, 0
    for k in range(max_breaks + 1):
        fits[k] = fit_segmented(steps, values, k)
        if fits[k] is None:
            continue
        if kept is not None and not earns_place(fits[kept], fits[k]):
            failed += 1
            if failed == PATIENCE:
                break
            continue
        kept, failed = k, 0
    return {k: fits.get(k) for k in range(max_breaks + 1)}


def scaled_aic_gain(fewer: SegmentedFit, more: SegmentedFit) -> float:
    """AIC(fewer) - AIC(more), scaled by n_eff/n (the smaller effective n of the two fits' residuals):
    AIC counts n autocorrelated points as independent and would buy a break for every wiggle, as
    `dependence.rank_curves` scales the families' gaps."""
    n_eff = min(dependence.effective_n(fewer.residuals) or fewer.n, dependence.effective_n(more.residuals) or more.n)
    return (fewer.aic - more.aic) * min(1.0, n_eff / more.n)


def earns_place(kept: SegmentedFit, more: SegmentedFit) -> bool:
    return scaled_aic_gain(kept, more) > AIC_TIE


def final_flat_of(fit: SegmentedFit | None, last_step: float) -> dict | None:
    """The run's end when the kept fit's last segment is flat after a rise (it rises less than
    PLATEAU_SLOPE_RATIO times the segment before it), else None. It is not a plateau: no second rise
    follows it (yet), so `plateau_of` cannot report it; the analysis reports it beside the plateau."""
    if fit is None or not fit.breaks:
        return None
    rise, last = fit.slopes[-2], fit.slopes[-1]
    if rise <= 0 or last >= PLATEAU_SLOPE_RATIO * rise:
        return None
    start = fit.breaks[-1]
    return {"start_step": start, "end_step": float(last_step),
            "level": float(np.mean(fit.predict(np.array([start, last_step])))),
            "slope_per_ln_step": float(last), "rise_slope_per_ln_step": float(rise)}


def select_breaks(fits: dict) -> int | None:
    """Fewest breaks unless more beat it by more than AIC_TIE at the effective n (each extra break
    must earn its place)."""
    chosen = None
    for k in sorted(fits):
        if fits[k] is None:
            continue
        if chosen is None or earns_place(fits[chosen], fits[k]):
            chosen = k
    return chosen


def detect_phases(steps, values, *, n_resamples: int = 200, seed: int = 0, block: int | None = None,
                  level: float = 0.95) -> dict:
    """Fit 0 to MAX_BREAKS breakpoints forward (`fit_break_counts`), keep the fewest breaks that no
    more breaks beat by AIC_TIE (`select_breaks`), and report a plateau when that fit has a flat run between two rises, with
    circular-block bootstrap intervals for its start, end and level (residual blocks around the
    selected fit, refitted with as many breaks; block from their lag-1 autocorrelation unless given)."""
    x, y = np.asarray(steps, float), np.asarray(values, float)
    fits = fit_break_counts(x, y)
    aics = {k: (f.aic if f is not None else None) for k, f in fits.items()}
    out = {"model": "continuous piecewise-linear in ln(step)", "aic": {str(k): v for k, v in aics.items()},
           "fits": {str(k): (f.to_json() if f else None) for k, f in fits.items()}, "plateau": None,
           "verdict": "", "aic_tie": AIC_TIE, "selected_breaks": None}
    chosen = select_breaks(fits)
    out["final_flat"] = final_flat_of(fits[chosen], float(x.max())) if chosen else None
    if chosen is None or chosen < 2:
        why = ("too few points for a two-break fit (needs {})".format(3 * MIN_SEGMENT_POINTS) if fits[2] is None
               else f"no plateau: {chosen} break(s) describe the curve (more breaks gain less than {AIC_TIE:g} AIC)")
        out["selected_breaks"] = chosen
        out["verdict"] = why
        return out
    selected = fits[chosen]
    out["selected_breaks"] = chosen
    fewer = min((f for k, f in fits.items() if k < chosen and f is not None), key=lambda f: f.aic)
    gap = fewer.aic - selected.aic
    out["aic_gap"] = float(gap)
    out["aic_gap_effective"] = float(scaled_aic_gain(fewer, selected))
    plateau = plateau_of(selected)
    if plateau is None:
        out["verdict"] = f"no plateau: the {chosen}-break fit has no flat run of segments between two rises"
        return out
    block = block or stats.choose_block_length(selected.residuals)
    draws = (_bootstrap_plateau(x, y, selected, n_resamples, seed, block) if n_resamples > 0
             else np.full((0, 3), np.nan))
    q = [0.5 - level / 2, 0.5 + level / 2]
    for key, column in (("start_step", 0), ("end_step", 1), ("level", 2)):
        finite = draws[:, column][np.isfinite(draws[:, column])]
        plateau[f"{key}_ci"] = [float(v) for v in np.quantile(finite, q)] if len(finite) >= 2 else [None, None]
    plateau["bootstrap"] = {"resamples": n_resamples, "block": block, "scheme": "circular block, residuals",
                            "no_plateau_share": json_number(np.mean(~np.isfinite(draws[:, 0]))) if n_resamples else None}
    out["plateau"] = plateau
    out["verdict"] = (f"plateau from step {plateau['start_step']:,.0f} to {plateau['end_step']:,.0f} "
                      f"({chosen} breaks, AIC {gap:.1f} ahead of fewer, {out['aic_gap_effective']:.1f} at the "
                      "effective n)")
    return out


def final_flat_text(phase: dict) -> str:
    """One line on the flat end of the run, or "" when it does not end flat."""
    flat = phase.get("final_flat")
    if not flat:
        return ""
    return (f"the run ends flat from step {flat['start_step']:,.0f} (level {flat['level']:.4f}): "
            "not a plateau, no second rise follows it in the data")


def selected_fit_json(phase: dict) -> dict | None:
    """The segmented fit `detect_phases` selected, as JSON (None when it selected none)."""
    k = phase.get("selected_breaks")
    return None if k is None else phase.get("fits", {}).get(str(k))


def fit_from_json(fit_json: dict) -> SegmentedFit:
    """The `SegmentedFit` that `SegmentedFit.to_json` wrote (the analysis JSON), without its residuals."""
    return SegmentedFit(tuple(fit_json["breaks"]), tuple(fit_json["slopes_per_ln_step"]), float(fit_json["intercept"]),
                        float(fit_json["rss"]), float(fit_json["aic"]), int(fit_json["n"]), np.zeros(0))


def predict_from_json(fit_json: dict, steps) -> np.ndarray:
    """Values of a fit as `SegmentedFit.to_json` wrote it: `SegmentedFit.predict` of `fit_from_json`."""
    return fit_from_json(fit_json).predict(steps)


def fit_best_segmented(steps, values) -> SegmentedFit | None:
    """The fit with 0 to MAX_BREAKS breaks that `select_breaks` keeps (None with fewer than 3 points)."""
    fits = fit_break_counts(steps, values)
    chosen = select_breaks(fits)
    return None if chosen is None else fits[chosen]


def _bootstrap_plateau(x, y, fit: SegmentedFit, n_resamples: int, seed: int, block: int) -> np.ndarray:
    """(n_resamples, 3): plateau start, end and level per resample; NaN where a resample has none."""
    fitted = fit.predict(x)
    resid = fit.residuals - fit.residuals.mean()
    idx = circular_block_indices(len(x), block, n_resamples, np.random.default_rng(seed))
    draws = np.full((n_resamples, 3), np.nan)
    for i in range(n_resamples):
        refit = fit_segmented(x, fitted + resid[idx[i]], len(fit.breaks), grid_points=BOOTSTRAP_GRID_POINTS)
        p = plateau_of(refit)
        if p is not None:
            draws[i] = (p["start_step"], p["end_step"], p["level"])
    return draws
