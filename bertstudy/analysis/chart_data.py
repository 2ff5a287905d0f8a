"""What the curve charts draw, computed once, here: the analysis JSON's `chart_data` entry.

correlation_analysis.png and forecast.png plot the analysed metric (`metric`: held-out [MASK] accuracy
by default where the history has it, else training MLM accuracy, the original study's metric; an
analysis whose chart data names no metric carries training MLM accuracy whatever it analysed) against step with
the three curve families, the phase model and its plateau, and the predicted shortcut level for that
metric (`shortcut`, when the history predicts one); this module evaluates those fits on grids of steps,
the residuals at the points, the forecast check's fits, prediction bands and extrapolations, and names
the chosen curve. The charts read it and fit nothing, so a chart shows exactly the fits, plateau and
chosen curve of its analysis. `build` takes the fits an analysis already made; `for_series` makes them
(the plateau without bootstrap intervals) for visualize_results.py without --analysis.
Pure: arrays in, a JSON-ready dict out (numbers rounded to 6 significant digits, undefined = None).
"""

from __future__ import annotations

import numpy as np

from bertstudy.analysis import curves, phase_choice, phases, stats
from bertstudy.analysis.provenance import series_fingerprint
from bertstudy.analysis.history import History
from bertstudy.base.errors import BadInputError

CHART_DATA_FORMAT = "chinese-bert-correlation/chart-data-v1"
CHART_METRIC = "mlm_acc"  # what the curve charts plot when the chart data names no metric
GRID_POINTS = 400  # steps each fitted curve is evaluated at, over the curve points' range
FORECAST_GRID_POINTS = 200  # per part (fitted, forecast) of the forecast check
DIGITS = 6


def numbers(values) -> list:
    """JSON numbers of an array, to DIGITS significant digits; NaN/inf become None."""
    return [stats.json_number(float(f"{v:.{DIGITS}g}")) for v in np.asarray(values, float).ravel()]


def step_grid(low: float, high: float, n: int) -> np.ndarray:
    return np.linspace(low, high, n) if high > low else np.array([low], float)


def _family(fit: curves.CurveFit, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict:
    entry = {"ok": fit.ok, "message": fit.message, "r_squared": stats.json_number(fit.r_squared),
             "aic": stats.json_number(fit.aic)}
    if fit.ok:
        entry.update(on_grid=numbers(fit.predict(grid)), residuals=numbers(y - fit.predict(x)))
    return entry


def _phase_model(phase: dict, grid: np.ndarray) -> dict | None:
    fit = phases.selected_fit_json(phase)
    if fit is None or not len(grid):
        return None
    return {"selected_breaks": phase.get("selected_breaks"), "breaks": fit["breaks"], "aic": fit["aic"],
            "on_grid": numbers(phases.predict_from_json(fit, grid))}


def _forecast(check: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The single-split forecast check (curves.forecast_check) as drawn: each family's fit over the fitted
    part, its extrapolation and 95% prediction band over the rest, and the phase model's (0-5 breaks by
    AIC on the fitted part, its last segment extrapolated)."""
    n_train = check["n_train"]
    out = {"train_fraction": check["train_fraction"], "n_train": n_train, "split_step": check["split_step"],
           "families": {}, "phase_model": None}
    if not 0 < n_train < len(x):
        out["families"] = {name: {"ok": False, "message": e["fit"].message, "mae": None}
                           for name, e in check["curves"].items()}
        return out
    fit_grid = step_grid(x[0], x[n_train - 1], FORECAST_GRID_POINTS)
    test_grid = step_grid(x[n_train], x[-1], FORECAST_GRID_POINTS)
    out.update(fit_grid=numbers(fit_grid), test_grid=numbers(test_grid))
    for name, entry in check["curves"].items():
        fit = entry["fit"]
        row = {"ok": fit.ok, "message": fit.message, "mae": entry["mae"]}
        if fit.ok:
            low, high = fit.prediction_band(test_grid)
            row.update(fitted=numbers(fit.predict(fit_grid)), forecast=numbers(fit.predict(test_grid)),
                       band_low=numbers(low), band_high=numbers(high))
        out["families"][name] = row
    segmented = phases.fit_best_segmented(x[:n_train], y[:n_train])
    if segmented is not None:
        mae = float(np.mean(np.abs(segmented.predict(x[n_train:]) - y[n_train:])))
        out["phase_model"] = {"breaks": [float(b) for b in segmented.breaks], "mae": mae,
                              "fitted": numbers(segmented.predict(fit_grid)),
                              "forecast": numbers(segmented.predict(test_grid))}
    return out


def build(steps, values, fits: dict, phase: dict, chosen: str | None, check: dict, metric: str = CHART_METRIC,
          shortcut: dict | None = None) -> dict:
    """The chart data of one metric from an analysis' own results: `steps, values` all points (step 0
    included), `fits` the families and `phase` the phase model on the points with step > 0, `chosen` the
    chosen curve, `check` curves.forecast_check on those points, `shortcut` the predicted level for the
    metric (`shortcut_level.reference`) or None."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    positive = steps > 0
    x, y = steps[positive], values[positive]
    grid = step_grid(x.min(), x.max(), GRID_POINTS) if len(x) else np.zeros(0)
    assoc = stats.association(steps, values)
    return {"format": CHART_DATA_FORMAT, "metric": metric, "n_points": len(x), "shortcut": shortcut,
            "data_sha256": series_fingerprint(x, y),
            "pearson_r": assoc["pearson"]["r"], "spearman_rho": assoc["spearman"]["rho"],
            "chosen_curve": chosen, "best_family_by_aic": curves.best_curve(fits),
            "grid": numbers(grid), "families": {name: _family(fit, grid, x, y) for name, fit in fits.items()},
            "phase_model": _phase_model(phase, grid), "plateau": phase.get("plateau"),
            "final_flat": phase.get("final_flat"), "forecast": _forecast(check, x, y)}


def for_series(steps, values, train_fraction: float = 0.5, metric: str = CHART_METRIC,
               shortcut: dict | None = None) -> dict:
    """The chart data of a series no analysis fitted (the plateau without bootstrap intervals)."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    positive = steps > 0
    x, y = steps[positive], values[positive]
    fits = curves.fit_all_curves(x, y)
    phase = phases.detect_phases(x, y, n_resamples=0)
    chosen = phase_choice.compare_with_families(x, y, fits, phase)["choice"]["chosen"]
    return build(steps, values, fits, phase, chosen, curves.forecast_check(x, y, train_fraction), metric, shortcut)


def drawn_metric(data: dict) -> str:
    """The metric chart data draws (training MLM accuracy for chart data written before it said)."""
    metric = data.get("metric")
    return metric if isinstance(metric, str) else CHART_METRIC


def chart_data_of(analysis: dict, path, history: History) -> dict:
    """The analysis' chart data, checked to be of the history drawn (the points of its metric);
    BadInputError (exit 3, one line naming `path`) for an analysis written before it carried any, of a
    metric the history lacks, or of other numbers."""
    data = analysis.get("chart_data") if isinstance(analysis, dict) else None
    if not isinstance(data, dict) or data.get("format") != CHART_DATA_FORMAT:
        raise BadInputError(path, "has no chart data (written by an older analyze_100k.py): rerun analyze_100k.py "
                            "on the history to redraw its curve charts, or leave out --analysis")
    metric = drawn_metric(data)
    if metric not in history.available_metrics():
        raise BadInputError(path, f"its chart data draws '{metric}', which {history.path} does not have: rerun "
                            "analyze_100k.py on this history, or leave out --analysis")
    steps, values = history.metric(metric)
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if data.get("data_sha256") != series_fingerprint(steps[steps > 0], values[steps > 0]):
        raise BadInputError(path, f"its chart data is of another history's {metric}: rerun "
                            "analyze_100k.py on this history, or leave out --analysis")
    return data
