"""What `study.analyze` computes, as typed parts (`StudyResult`), and the one function that turns it
into the JSON dict analyze_100k.py writes (`study_json`).

The parts hold the computations' own outputs (dicts where a helper module returns JSON-ready dicts,
`CurveFit` objects and arrays where they are not JSON yet); `study_json` is the only place the
analysis JSON's keys are named. The keys the original study's file had are produced by
`_original_study_keys` alone; `KEY_ORDER` fixes the order of every key in the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertstudy.analysis import curves
from bertstudy.analysis.stats import json_number

BEST_CURVE_IS = ("the family (linear, log_linear, power_saturating) with the smallest raw AIC, the first "
                 "version's key; the curve the study reports is chosen_curve (a family or the phase model)")
# The original study's keys, in the JSON with the meaning they had there (`mlm_stats` always describes
# the training MLM accuracy, whatever metric is analysed): `_original_study_keys` makes exactly these.
ORIGINAL_STUDY_KEYS = ("total_steps", "data_points", "pearson_correlation", "r_squared", "mlm_stats", "loss_stats",
                       "comparison")
# Every key of the analysis JSON, in the order the file has them (the original's keys among the added
# ones, as the first version wrote them); `shortcut`, `goal` and `goal_achieved` only where they apply.
# analyze_100k.py adds `downstream` after these.
KEY_ORDER = ("source", "metric", "total_steps", "data_points", "pearson_correlation", "r_squared", "mlm_stats",
             "metric_stats", "loss_stats", "nsp_stats", "association", "curves", "best_curve", "best_curve_is",
             "curve_points", "forecast", "bootstrap", "targets", "comparison", "association_dependence",
             "r_by_step_range", "curve_ranking", "forecast_rolling", "phases", "model_choice", "chosen_curve",
             "shortcut", "chart_data", "goal", "goal_achieved")


@dataclass(frozen=True)
class Source:
    """Which history was analysed; `data_sha256` is the analysed numbers' hash (visualize_results.py checks
    that an analysis belongs to its history)."""
    path: str
    format: str
    preset: str | None
    meta_total_steps: int | None
    data_sha256: str


@dataclass(frozen=True)
class MetricChoice:
    """The metric analysed against step, what it is, and why it was chosen."""
    name: str
    description: str
    why: str


@dataclass(frozen=True)
class SeriesSummaries:
    """Plain summaries of the history's series (`study.series_summary`, `loss_summary`, `nsp_summary`)."""
    training_mlm: dict  # training MLM accuracy over all positions, whatever metric is analysed
    metric: dict  # the analysed metric
    loss: dict | None  # None: the history has no loss
    nsp: dict | None  # NSP accuracy against chance; None: the history has no NSP accuracy


@dataclass(frozen=True)
class AssociationFigures:
    """How the metric tracks step, on all points."""
    plain: dict  # stats.association: Pearson, Spearman, Kendall, slope, intervals assuming independent points
    under_dependence: dict  # residual lag-1 autocorrelation, effective n, Fisher interval at it, Newey-West slope
    by_step_range: dict  # dependence.r_by_step_range

    @property
    def pearson_r(self) -> float | None:
        return self.plain["pearson"]["r"]


@dataclass(frozen=True)
class CurveFits:
    """The three curve families fitted on the points with step > 0 (ln(step) and step^(-c) need it), and
    the forecast check of each fitted on the first part of those points."""
    steps: np.ndarray  # the curve points' steps (step > 0)
    values: np.ndarray
    excluded_steps: tuple[int, ...]  # steps left out of every curve (an evaluation at step 0)
    fits: dict  # family name -> curves.CurveFit
    best_by_raw_aic: str | None  # curves.best_curve: the first version's `best_curve`
    forecast_check: dict  # curves.forecast_check (its entries hold CurveFit objects)


@dataclass(frozen=True)
class BootstrapIntervals:
    """Circular block bootstrap intervals (r, the slope, each family's parameters) and the steps each
    family needs to reach each target accuracy, with their intervals from the same draws."""
    summary: dict  # JSON-ready: resamples, block lengths, intervals (or why there are none)
    targets: list  # one dict per target accuracy


@dataclass(frozen=True)
class CurveChoice:
    """The phase model, the autocorrelation-aware comparison of it with the families, and the curve the
    study reports."""
    phases: dict  # phases.detect_phases: segmented fit, plateau with intervals, a flat end
    ranking: dict  # dependence.rank_curves: the families' AIC ranking at the effective n
    rolling_forecast: dict  # rolling-origin forecasts of the families and (`phases`) the phase model
    decision: dict  # phase_choice.choose_model: the chosen curve and why

    @property
    def chosen(self) -> str | None:
        return self.decision["chosen"]


@dataclass(frozen=True)
class Goal:
    """--require-r: the threshold, r, and whether r reached it."""
    require_r: float
    r: float | None
    achieved: bool


@dataclass(frozen=True)
class StudyResult:
    """Everything `study.analyze` computes for one history and metric."""
    source: Source
    metric: MetricChoice
    steps: np.ndarray  # every logged point of the metric (step 0 included)
    values: np.ndarray
    summaries: SeriesSummaries
    association: AssociationFigures
    curve_fits: CurveFits
    bootstrap: BootstrapIntervals
    comparison: dict | None  # study.compare_runs with --compare, else None
    curve_choice: CurveChoice
    shortcut: dict | None  # shortcut_level.shortcut_entry; None: the history predicts no shortcut level
    chart_data: dict  # chart_data.build: what the curve charts draw
    goal: Goal | None  # None without --require-r


def _curve_note(fit: curves.CurveFit) -> str:
    if fit.name == "power_saturating" and fit.ok and fit.params["c"] <= curves.POWER_C_BOUNDS[0] * 1.01:
        return ("exponent c is at its lower bound: the data show no saturation, the power law reduces to "
                "log-linear and its ceiling a is not identified")
    return ""


def _curves_json(fitted: CurveFits) -> dict:
    """Each family's fit, its AIC difference from the best by raw AIC, and a note where its figures mislead."""
    fits, best = fitted.fits, fitted.best_by_raw_aic
    entries = {}
    for name, fit in fits.items():
        entry = fit.to_json()
        entry["delta_aic"] = json_number(fit.aic - fits[best].aic) if best and fit.ok else None
        entry["note"] = _curve_note(fit)
        entries[name] = entry
    return entries


def _forecast_json(check: dict) -> dict:
    out = {k: v for k, v in check.items() if k != "curves"}
    out["curves"] = {name: {"mae": e["mae"], "rmse": e["rmse"], "fit": e["fit"].to_json()}
                     for name, e in check["curves"].items()}
    return out


def _ranking_json(ranking: dict) -> dict:
    return {k: ([{**row, "residual_lag1": json_number(row["residual_lag1"])} for row in v] if k == "order" else v)
            for k, v in ranking.items()}


def _original_study_keys(result: StudyResult) -> dict:
    """THE ORIGINAL STUDY'S KEYS (`ORIGINAL_STUDY_KEYS`), with the meaning they had in its file:
    `mlm_stats` describes training MLM accuracy even when another metric is analysed (that one's
    summary is `metric_stats`), `comparison` is None without --compare."""
    return {"total_steps": int(result.steps[-1]), "data_points": len(result.steps),
            "pearson_correlation": result.association.pearson_r, "r_squared": result.association.plain["r_squared"],
            "mlm_stats": result.summaries.training_mlm, "loss_stats": result.summaries.loss,
            "comparison": result.comparison}


def _added_keys(result: StudyResult) -> dict:
    """Every key this study adds to the original's (docs/DESIGN.md says what each holds)."""
    source, metric, fitted, choice = result.source, result.metric, result.curve_fits, result.curve_choice
    out = {"source": {"path": source.path, "format": source.format, "preset": source.preset,
                      "meta_total_steps": source.meta_total_steps, "data_sha256": source.data_sha256},
           "metric": {"name": metric.name, "description": metric.description, "why": metric.why},
           "metric_stats": result.summaries.metric, "nsp_stats": result.summaries.nsp,
           "association": result.association.plain,
           "curves": _curves_json(fitted), "best_curve": fitted.best_by_raw_aic, "best_curve_is": BEST_CURVE_IS,
           "curve_points": {"n": len(fitted.steps), "excluded_steps": list(fitted.excluded_steps),
                            "why": "curves need step > 0" if fitted.excluded_steps else ""},
           "forecast": _forecast_json(fitted.forecast_check),
           "bootstrap": result.bootstrap.summary, "targets": result.bootstrap.targets,
           "association_dependence": result.association.under_dependence,
           "r_by_step_range": result.association.by_step_range,
           "curve_ranking": _ranking_json(choice.ranking), "forecast_rolling": choice.rolling_forecast,
           "phases": choice.phases, "model_choice": choice.decision, "chosen_curve": choice.chosen,
           "chart_data": result.chart_data}
    if result.shortcut is not None:
        out["shortcut"] = result.shortcut
    if result.goal is not None:
        out["goal"] = {"require_r": result.goal.require_r, "r": result.goal.r}
        out["goal_achieved"] = result.goal.achieved
    return out


def study_json(result: StudyResult) -> dict:
    """The analysis JSON of `result`: the original study's keys and the added ones, in `KEY_ORDER`."""
    keys = {**_original_study_keys(result), **_added_keys(result)}
    unordered = set(keys) - set(KEY_ORDER)
    assert not unordered, f"keys missing from KEY_ORDER: {sorted(unordered)}"
    return {key: keys[key] for key in KEY_ORDER if key in keys}
