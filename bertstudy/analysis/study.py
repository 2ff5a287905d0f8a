"""The analysis of one training history: a pure function from `History` objects to the result dict
that analyze_100k.py writes as `analysis_100k_result.json`, and a readable text report of it.

`study_result` computes the analysis' parts as a typed `study_result.StudyResult` (summaries,
association, curve fits, bootstrap intervals and steps to targets, the phase model and the curve
chosen, the shortcut level, the chart data); `study_result.study_json` turns it into the dict, and
`analyze` is the two in one. The dict keeps the original study's keys (`total_steps, data_points,
pearson_correlation, r_squared, mlm_stats, loss_stats, comparison`) with their meaning (`mlm_stats`
always describes the training MLM accuracy, as the original's did) and adds `association, curves,
best_curve, forecast, bootstrap, targets, nsp_stats, metric, metric_stats, source`,
`association_dependence, r_by_step_range, curve_ranking, forecast_rolling, phases, model_choice,
chosen_curve`, then `best_curve_is` and `chart_data` (what the curve charts draw); docs/DESIGN.md says
what each holds. Numbers that are undefined are None (JSON null), never NaN. The text report is `report.format_report`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

from bertstudy.analysis import chart_data, curves, dependence, phase_choice, phases, shortcut_level, stats
from bertstudy.base.errors import BadInputError
from bertstudy.analysis.history import History, predicted_shortcut
from bertstudy.analysis.provenance import series_fingerprint
from bertstudy.analysis.stats import json_number
from bertstudy.analysis.study_result import (AssociationFigures, BootstrapIntervals, CurveChoice, CurveFits, Goal,
                                             MetricChoice, SeriesSummaries, Source, StudyResult, study_json)

METRIC_DESCRIPTIONS = {
    "mlm_acc": "training masked-LM accuracy (per logged batch; the original study's metric)",
    "eval_mlm_acc": "held-out masked-LM accuracy",
    "nsp_acc": "training next-sentence-prediction accuracy",
    "eval_nsp_acc": "held-out next-sentence-prediction accuracy",
    "mask_acc": "training accuracy at [MASK] positions (per logged batch)",
    "eval_mask_acc": "held-out accuracy at [MASK] positions (prediction from context; the study's headline)",
    "random_acc": "training accuracy at randomly replaced positions",
    "eval_random_acc": "held-out accuracy at randomly replaced positions",
    "unchanged_acc": "training accuracy at unchanged positions (copying the visible character is right)",
    "eval_unchanged_acc": "held-out accuracy at unchanged positions (copying the visible character is right)",
}
DEFAULT_METRIC = "eval_mask_acc"  # the headline where the history has it
ORIGINAL_METRIC = "mlm_acc"  # else the original study's metric
FAR_BEYOND_FACTOR = 100  # a predicted step beyond 100x the run's last step is "far beyond" the data
MIN_POINTS = 3  # a correlation needs three points; fewer is bad input, not a result
NSP_CHANCE = 0.5  # NSP is balanced 50/50 IsNext/NotNext, so chance accuracy is one half
ROLLING_ORIGINS = dependence.ROLLING_ORIGINS  # forecast origins, as shares of the curve points
MAX_PHASE_RESAMPLES = 200  # each plateau resample refits the kept segmented model (~0.1-0.3 s on 500 points)


def _final_window(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def series_summary(values: np.ndarray, final_window: float = 0.1) -> dict:
    """mean/max/min/std (population std, as the original study computed it) and the final-window mean."""
    v = np.asarray(values, float)
    k = _final_window(len(v), final_window)
    return {"mean": float(v.mean()), "max": float(v.max()), "min": float(v.min()), "std": float(v.std()),
            "first": float(v[0]), "final": float(v[-1]), "final_window_mean": float(v[-k:].mean()),
            "final_window_points": k}


def loss_summary(history: History, final_window: float = 0.1) -> dict | None:
    if len(history.loss) == 0:
        return None
    loss = history.loss
    k = _final_window(len(loss), final_window)
    initial, final = float(loss[0]), float(loss[-1])
    return {"initial": initial, "final": final, "decrease": initial - final,
            "decrease_percent": json_number(100 * (initial - final) / initial) if initial else None,
            "final_window_mean": float(loss[-k:].mean()), "min": float(loss.min())}


def nsp_summary(history: History, final_window: float = 0.1, alpha: float = 0.01) -> dict | None:
    """NSP accuracy, and whether its final window differs from chance (one-sample t-test vs 0.5;
    per-log accuracies are batch averages, so a t-test needs no batch size)."""
    if len(history.nsp_acc) == 0:
        return None
    nsp = history.nsp_acc
    k = _final_window(len(nsp), final_window)
    window = nsp[-k:]
    p_value = None
    if k >= 2 and np.ptp(window) > 0:
        p_value = json_number(sps.ttest_1samp(window, NSP_CHANCE).pvalue)
    left = bool(p_value is not None and p_value < alpha and window.mean() > NSP_CHANCE)
    verdict = (f"NSP left chance: final-window mean {window.mean():.4f} > {NSP_CHANCE} (p={p_value:.2g})" if left
               else f"NSP stayed at chance: final-window mean {window.mean():.4f} vs {NSP_CHANCE}"
               + (f" (p={p_value:.2g})" if p_value is not None else ""))
    return {"mean": float(nsp.mean()), "final": float(nsp[-1]), "final_window_mean": float(window.mean()),
            "final_window_points": k, "chance": NSP_CHANCE, "p_value_vs_chance": p_value, "alpha": alpha,
            "left_chance": left, "verdict": verdict}


def _target_status(step: float, last_step: float) -> str:
    if not math.isfinite(step):
        return "not_reached"
    if step <= last_step:
        return "within_run"
    return "beyond_100x_run" if step > FAR_BEYOND_FACTOR * last_step else "extrapolated"


def _observed_step(steps: np.ndarray, values: np.ndarray, target: float) -> int | None:
    """First logged step where the smoothed metric (window n/50) reaches the target."""
    smooth = stats.moving_average(values, max(1, len(values) // 50))
    hit = np.nonzero(smooth >= target)[0]
    return int(steps[hit[0]]) if len(hit) else None


def _run_bootstrap(steps, values, curve_x, curve_y, fits, n_resamples: int, seed: int, level: float):
    """Circular block bootstrap intervals, each statistic with the block its own model's residuals call
    for: r and the slope (all points) from the straight line's, each curve's parameters (points with
    step > 0) from that curve's. Returns (json dict, {curve: parameter draws})."""
    n = len(curve_x)
    if n_resamples <= 0:
        return {"resamples": 0, "message": "bootstrap not requested (--bootstrap 0)"}, {}
    if n < 4:
        return {"resamples": 0, "message": f"too few points for a bootstrap: {n} (needs at least 4)"}, {}
    block = stats.association_block_length(steps, values)
    out = {"resamples": n_resamples, "seed": seed, "level": level, "scheme": "circular block",
           "block_length": block,  # r and the slope's block (the key the first version had for all)
           "block_lengths": {"association": block, "curves": {}},
           "block_rule": "per statistic, from the residuals of its own model (the line for r and the slope, "
                         "each curve for its parameters): n^(1/3), lengthened by the AR(1) plug-in factor of "
                         "their lag-1 autocorrelation",
           "residual_lag1_autocorrelation": {name: json_number(stats.lag1_autocorrelation(curve_y - f.predict(curve_x)))
                                             for name, f in fits.items() if f.ok},
           "association": stats.bootstrap_association(steps, values, n_resamples, seed, block, level),
           "curves": {}}
    draws = {}
    for name, fit in fits.items():
        if not fit.ok or n <= fit.k:
            continue
        own_block = stats.choose_block_length(curve_y - fit.predict(curve_x))
        out["block_lengths"]["curves"][name] = own_block
        samples = curves.bootstrap_curve_params(fit, curve_x, curve_y, n_resamples, seed + 1, own_block)
        draws[name] = samples
        out["curves"][name] = {p: stats.percentile_ci(samples[:, i], level)
                               for i, p in enumerate(curves.PARAM_NAMES[name])}
    return out, draws


def _targets(steps, values, fits, draws, targets: Sequence[float], level: float) -> list[dict]:
    last = float(steps[-1])
    rows = []
    for target in targets:
        row = {"target": float(target), "observed_step": _observed_step(steps, values, target), "curves": {}}
        for name, fit in fits.items():
            if not fit.ok:
                # "not_fitted": too few points to try; "fit_failed": tried and did not converge
                status = "not_fitted" if fit.message.startswith("too few points") else "fit_failed"
                row["curves"][name] = {"step": None, "status": status, "ci": [None, None], "message": fit.message}
                continue
            step = float(curves.steps_to_target(name, fit.param_vector(), target)[0])
            entry = {"step": json_number(step), "status": _target_status(step, last), "ci": [None, None],
                     "share_of_resamples_reaching": None}
            if name in draws:
                sample_steps = curves.steps_to_target(name, draws[name], target)
                entry["share_of_resamples_reaching"] = float(np.mean(np.isfinite(sample_steps)))
                if entry["status"] == "beyond_100x_run":  # an interval that far out is the curve's, not the data's
                    entry["ci_withheld"] = f"beyond {FAR_BEYOND_FACTOR}x the run: no interval"
                else:
                    entry["ci"] = curves.interval_with_unreached(sample_steps, level)
            row["curves"][name] = entry
        row["spread"] = _target_spread(row["curves"])
        rows.append(row)
    return rows


def _target_spread(by_family: dict) -> dict:
    """Steps-to-target across the families that reach it: each family's interval is conditional on
    that family being right, so the spread between families is the honest first uncertainty."""
    reaching = {name: e["step"] for name, e in by_family.items() if e["status"] in ("within_run", "extrapolated")}
    far = sorted(name for name, e in by_family.items() if e["status"] == "beyond_100x_run")
    never = sorted(name for name, e in by_family.items() if e["status"] == "not_reached")
    return {"families_reaching": sorted(reaching), "min_step": min(reaching.values()) if reaching else None,
            "max_step": max(reaching.values()) if reaching else None, "beyond_100x_run": far, "not_reached": never}


def _association_dependence(steps, values, assoc: dict, level: float) -> dict:
    """What the association's figures mean for autocorrelated points: the line's residual lag-1
    autocorrelation, the effective n, a Fisher interval at that n, and a Newey-West slope interval."""
    line = curves.fit_curve("linear", steps, values)
    resid = values - line.predict(steps) if line.ok else values - values.mean()
    n_eff = dependence.effective_n(resid)
    r, fisher = assoc["pearson"]["r"], [None, None]
    if r is not None and n_eff is not None and n_eff > 4:
        fisher = stats.fisher_interval(r, 1 / math.sqrt(n_eff - 3), level)
    return {"residual_lag1": json_number(stats.lag1_autocorrelation(resid)), "effective_n": json_number(n_eff),
            "effective_n_rule": "n (1 - rho) / (1 + rho), rho = lag-1 autocorrelation of the line's residuals",
            "pearson_ci_fisher_effective_n": fisher,
            "slope_per_10k_newey_west": dependence.newey_west_slope(steps, values, level=level),
            "plain_intervals_assume": "independent points (Fisher z interval, p-values, the slope's t-interval)"}


def _association_figures(steps, values, level: float) -> AssociationFigures:
    plain = stats.association(steps, values, level)
    return AssociationFigures(plain=plain, under_dependence=_association_dependence(steps, values, plain, level),
                              by_step_range=dependence.r_by_step_range(steps, values))


def _fit_curves(steps, values, train_fraction: float) -> CurveFits:
    """The families on the points with step > 0: ln(step) and step^(-c) need it, so an evaluation of the
    untrained model at step 0 is left out of every curve (the same points for all three, so their AICs
    stay comparable); and each family's forecast check."""
    positive = steps > 0
    x, y = steps[positive], values[positive]
    fits = curves.fit_all_curves(x, y)
    return CurveFits(steps=x, values=y, excluded_steps=tuple(int(s) for s in steps[~positive]), fits=fits,
                     best_by_raw_aic=curves.best_curve(fits), forecast_check=curves.forecast_check(x, y, train_fraction))


def _bootstrap_intervals(steps, values, fitted: CurveFits, targets: Sequence[float], n_resamples: int, seed: int,
                         level: float) -> BootstrapIntervals:
    summary, draws = _run_bootstrap(steps, values, fitted.steps, fitted.values, fitted.fits, n_resamples, seed, level)
    return BootstrapIntervals(summary=summary,
                              targets=_targets(fitted.steps, fitted.values, fitted.fits, draws, targets, level))


def _choose_curve(fitted: CurveFits, n_resamples: int, seed: int, level: float) -> CurveChoice:
    """The phase model (its plateau's intervals from at most MAX_PHASE_RESAMPLES resamples), the families'
    effective-n AIC ranking, the rolling-origin forecasts of the families and the phase model, and which
    curve is chosen."""
    x, y = fitted.steps, fitted.values
    phase = phases.detect_phases(x, y, n_resamples=min(n_resamples, MAX_PHASE_RESAMPLES), seed=seed + 2, level=level)
    compared = phase_choice.compare_with_families(x, y, fitted.fits, phase, ROLLING_ORIGINS)
    ranking, rolling = compared["ranking"], compared["rolling"]
    rolling["phases"] = compared["phase_forecast"]
    bound_hit = "power_saturating" in ranking.get("notes", {})
    # a power law on its exponent bound is log-linear: a forecast "win" of it is log-linear's
    rolling["best_read_as"] = ("log_linear" if bound_hit and rolling["best_by_mean_mae"] == "power_saturating"
                               else rolling["best_by_mean_mae"])
    return CurveChoice(phases=phase, ranking=ranking, rolling_forecast=rolling, decision=compared["choice"])


def metric_arrays(history: History, metric: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = history.metric(metric)
    if len(steps) < MIN_POINTS:
        raise BadInputError(history.path, f"only {len(steps)} logged point(s) of '{metric}': "
                            f"at least {MIN_POINTS} are needed for a correlation")
    return steps.astype(float), values


def choose_metric(history: History, metric: str | None = None) -> tuple[str, str]:
    """(metric, why it was chosen): the given one, else held-out [MASK] accuracy where the history has
    enough points of it, else training MLM accuracy (the original's metric, which every history
    has)."""
    if metric is not None:
        return metric, "given by --metric"
    n = len(history.eval_mask_acc)
    if n >= MIN_POINTS:
        return DEFAULT_METRIC, ("default: held-out [MASK] accuracy, the study's headline (the history has it; "
                                "the original's all-positions metric counts copied characters too)")
    lacks = f"only {n} point(s) of {DEFAULT_METRIC}" if n else f"no {DEFAULT_METRIC} (held-out [MASK] accuracy)"
    return ORIGINAL_METRIC, f"default: training MLM accuracy, the original study's metric (the history has {lacks})"


def run_summary(history: History, metric: str = "mlm_acc", final_window: float = 0.1) -> dict:
    """The headline figures of one run (no bootstrap), used for --compare."""
    steps, values = metric_arrays(history, metric)
    assoc = stats.association(steps, values)
    fits = curves.fit_all_curves(steps, values)
    loss = loss_summary(history, final_window)
    return {"path": history.path, "format": history.source_format, "total_steps": int(steps[-1]),
            "data_points": len(steps), "pearson_r": assoc["pearson"]["r"], "r_squared": assoc["r_squared"],
            **{k: v for k, v in series_summary(values, final_window).items() if k != "final_window_points"},
            "final_loss": loss["final"] if loss else None, "best_curve": curves.best_curve(fits)}


def compare_runs(runs: Sequence[tuple[str, History]], metric: str = "mlm_acc", final_window: float = 0.1) -> dict:
    """Per-run summaries and each later run's differences from the first (the baseline)."""
    summaries = {label: run_summary(h, metric, final_window) for label, h in runs}
    labels = list(summaries)
    base = summaries[labels[0]]
    differences = {}
    for label in labels[1:]:
        run = summaries[label]
        diff = {}
        for key in ("pearson_r", "r_squared", "mean", "max", "final_window_mean", "final_loss"):
            if base[key] is not None and run[key] is not None:
                diff[key] = run[key] - base[key]
                diff[f"{key}_percent"] = json_number(100 * (run[key] - base[key]) / abs(base[key])) if base[key] else None
        differences[f"{label} - {labels[0]}"] = diff
    return {"metric": metric, "baseline": labels[0], "runs": summaries, "differences": differences}


def study_result(history: History, metric: str | None = None, *, train_fraction: float = 0.5,
                 targets: Sequence[float] = (), bootstrap: int = 500, seed: int = 0,
                 compare: Sequence[tuple[str, History]] = (), require_r: float | None = None,
                 level: float = 0.95, final_window: float = 0.1) -> StudyResult:
    """Every part of the analysis of `history` (arguments as `analyze`'s). Pure."""
    metric, why = choose_metric(history, metric)
    steps, values = metric_arrays(history, metric)
    source = Source(path=history.path, format=history.source_format, preset=history.meta.get("preset"),
                    meta_total_steps=history.meta.get("total_steps"), data_sha256=series_fingerprint(steps, values))
    summaries = SeriesSummaries(training_mlm=series_summary(history.mlm_acc, final_window),
                                metric=series_summary(values, final_window),
                                loss=loss_summary(history, final_window), nsp=nsp_summary(history, final_window))
    association = _association_figures(steps, values, level)
    fitted = _fit_curves(steps, values, train_fraction)
    intervals = _bootstrap_intervals(steps, values, fitted, targets, bootstrap, seed, level)
    choice = _choose_curve(fitted, bootstrap, seed, level)
    shortcut = predicted_shortcut(history)
    # what correlation_analysis.png and forecast.png draw: the analysed metric, this analysis' own fits
    charted = chart_data.build(steps, values, fitted.fits, choice.phases, choice.chosen, fitted.forecast_check,
                               metric=metric, shortcut=shortcut_level.reference(shortcut, metric))
    r = association.pearson_r
    goal = None if require_r is None else Goal(require_r=require_r, r=r, achieved=bool(r is not None and r >= require_r))
    return StudyResult(
        source=source, metric=MetricChoice(name=metric, description=METRIC_DESCRIPTIONS.get(metric, metric), why=why),
        steps=steps, values=values, summaries=summaries, association=association, curve_fits=fitted,
        bootstrap=intervals, comparison=compare_runs(compare, metric, final_window) if compare else None,
        curve_choice=choice, shortcut=shortcut_level.shortcut_entry(shortcut, metric, choice.phases.get("plateau")),
        chart_data=charted, goal=goal)


def analyze(history: History, metric: str | None = None, *, train_fraction: float = 0.5,
            targets: Sequence[float] = (), bootstrap: int = 500, seed: int = 0,
            compare: Sequence[tuple[str, History]] = (), require_r: float | None = None,
            level: float = 0.95, final_window: float = 0.1) -> dict:
    """Everything analyze_100k.py reports, as a JSON-ready dict (`study_json` of `study_result`). Pure:
    nothing is read or written. `metric` None: `choose_metric`'s default."""
    return study_json(study_result(history, metric, train_fraction=train_fraction, targets=targets,
                                   bootstrap=bootstrap, seed=seed, compare=compare, require_r=require_r,
                                   level=level, final_window=final_window))
