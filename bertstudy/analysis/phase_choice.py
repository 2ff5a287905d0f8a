"""Which curve the study reports: the phase model (phases.py) or the leading curve family (curves.py).

`phase_model_forecast` scores the phase model as a forecaster at the families' origins (refitted
on the points before each, its last segment extrapolated); `forecast_difference` says whether its
forecast is worse than the best family's beyond the uncertainty of five overlapping windows;
`choose_model` decides (AIC beyond a tie at the effective n, and a forecast that does not clearly
contradict it); `compare_with_families` runs both for the analysis and the charts. Pure.
"""

from __future__ import annotations

import math

import numpy as np

from bertstudy.analysis import dependence, phases, stats
from bertstudy.analysis.dependence import AIC_TIE


def phase_model_forecast(steps, values, origins=dependence.ROLLING_ORIGINS) -> dict:
    """The segmented model's rolling-origin forecast at the families' origins: on the points before each
    origin it fits 0 to MAX_BREAKS breaks, keeps them as `select_breaks` does, and its last segment (a line
    in ln(step)) is extrapolated over all later points; MAE as for the families. A phase change that has
    not begun by the origin is not foreseen."""
    rows = [{"fraction": r["fraction"], "split_step": r["split_step"], "mae": r["mae"],
             "breaks": [float(b) for b in r["model"].breaks] if r["model"] else None}
            for r in dependence.rolling_origin_forecast(steps, values, phases.fit_best_segmented, origins)]
    maes = [r["mae"] for r in rows if r["mae"] is not None]
    return {"origins": rows, "mean_mae": float(np.mean(maes)) if rows and len(maes) == len(rows) else None}


def compare_with_families(steps, values, family_fits: dict, phase: dict,
                          origins=dependence.ROLLING_ORIGINS) -> dict:
    """Everything `choose_model` weighs, and its choice: the families' effective-n AIC ranking, their and the
    phase model's rolling-origin forecasts, and whether the phase model or the leading family is chosen."""
    ranking = dependence.rank_curves(family_fits, steps, values)
    rolling = dependence.family_forecast(steps, values, origins)
    phase_forecast = phase_model_forecast(steps, values, origins)
    choice = choose_model(phase, family_fits, ranking, rolling, phase_forecast, steps, values)
    return {"ranking": ranking, "rolling": rolling, "phase_forecast": phase_forecast, "choice": choice}


def choose_model(phase: dict, family_fits: dict, ranking: dict, family_forecast: dict, phase_forecast: dict,
                 steps, values) -> dict:
    """Is the phase model (the selected segmented fit, a candidate only when it shows a plateau) chosen over the
    best family? Only when both hold:
    - AIC: its lead over the best family, scaled by n_eff/n (the smaller effective n of the two
      fits' residuals, as `dependence.rank_curves` scales gaps), exceeds AIC_TIE;
    - forecast: the rolling-origin check does not contradict it: over the origins, the phase model's
      MAE minus the best family's is not clearly positive (`forecast_difference`: a mean difference
      whose interval holds 0 is a tie, and a tie does not veto).
    Otherwise the leading family stays the chosen curve."""
    leader = ranking.get("leader")
    out = {"chosen": leader, "candidate": False, "rule": "phase model chosen only when its effective-n AIC lead "
           f"over the best family exceeds {AIC_TIE:g} and its rolling-origin mean MAE is no larger than the best "
           "family's"}
    two = phases.selected_fit_json(phase)
    if phase.get("plateau") is None or two is None or leader is None:
        out["verdict"] = "phase model not a candidate: " + (phase.get("verdict") or "no segmented fit")
        return out
    x, y = np.asarray(steps, float), np.asarray(values, float)
    family = family_fits[leader]
    n_eff = min(dependence.effective_n(y - phases.predict_from_json(two, x)) or len(x),
                dependence.effective_n(y - family.predict(x)) or len(x))
    gap = family.aic - two["aic"]
    scaled = gap * min(1.0, n_eff / len(x))
    best_family = family_forecast.get("best_by_mean_mae")
    family_mae = family_forecast["mean_mae"].get(best_family) if best_family else None
    phase_mae = phase_forecast.get("mean_mae")
    aic_wins = scaled > AIC_TIE
    difference = forecast_difference(phase_forecast, family_forecast, best_family)
    forecast_ok = difference["verdict"] in ("tie", "phase model better")
    out.update(candidate=True, aic_gap=float(gap), aic_gap_effective=float(scaled), effective_n=float(n_eff),
               aic_beats_families=bool(aic_wins), forecast_mean_mae=phase_mae, best_family_by_forecast=best_family,
               best_family_mean_mae=family_mae, forecast_difference=difference, forecast_contradicts=not forecast_ok)
    if aic_wins and forecast_ok:
        out["chosen"] = "phases"
        how = ("no larger than" if difference["verdict"] == "phase model better"
               else "tied with (the difference's interval holds 0)")
        out["verdict"] = (f"phase model chosen: AIC {gap:.1f} ahead of {leader} ({scaled:.1f} at effective n "
                          f"{n_eff:.0f}) and its rolling-origin MAE {phase_mae:.4f} {how} {family_mae:.4f} "
                          f"({best_family})")
    else:
        why = [] if aic_wins else [f"its AIC lead over {leader} is a tie at effective n ({scaled:.1f})"]
        if not forecast_ok:
            why.append("the rolling-origin forecast contradicts it beyond its uncertainty (mean MAE "
                       f"{'n/a' if phase_mae is None else format(phase_mae, '.4f')} against "
                       f"{'n/a' if family_mae is None else format(family_mae, '.4f')} for {best_family})")
        out["verdict"] = "phase model not chosen: " + "; ".join(why)
    return out


def forecast_difference(phase_forecast: dict, family_forecast: dict, family: str | None,
                        level: float = 0.95) -> dict:
    """Phase model's MAE minus `family`'s at each rolling origin, their mean and a t-interval over the
    origins. The origins' test windows overlap, so the interval is if anything too narrow: only a
    difference whose interval excludes 0 and whose sign every origin shares counts; else a tie."""
    phase_rows = {row["fraction"]: row["mae"] for row in phase_forecast.get("origins", [])}
    diffs = [phase_rows[row["fraction"]] - row["mae"][family] for row in family_forecast.get("origins", [])
             if family and row["fraction"] in phase_rows and phase_rows[row["fraction"]] is not None
             and row["mae"].get(family) is not None]
    out = {"family": family, "differences": [float(d) for d in diffs], "n_origins": len(diffs), "mean": None,
           "ci": [None, None], "level": level, "verdict": "not comparable"}
    if len(diffs) < 2:
        return out
    d = np.asarray(diffs, float)
    half = stats.t_quantile(level, len(d) - 1) * float(np.std(d, ddof=1)) / math.sqrt(len(d))
    mean = float(np.mean(d))
    out.update(mean=mean, ci=[mean - half, mean + half])
    if mean - half > 0 and np.all(d > 0):
        out["verdict"] = f"{family} better"
    elif mean + half < 0 and np.all(d < 0):
        out["verdict"] = "phase model better"
    else:
        out["verdict"] = "tie"
    return out
