"""The analysis of one training history: a pure function from `History` objects to the result dict
that analyze_100k.py writes as `analysis_100k_result.json`, and a readable text report of it.

The dict keeps the original study's keys (`total_steps, data_points, pearson_correlation,
r_squared, mlm_stats, loss_stats, comparison`) with their meaning (`mlm_stats` always describes the
training MLM accuracy, as the original's did) and adds `association, curves, best_curve, forecast,
bootstrap, targets, nsp_stats, metric, metric_stats, source`. Numbers that are undefined are None
(JSON null), never NaN.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

from . import stats
from .errors import BadInputError
from .history import History
from .provenance import series_fingerprint

METRIC_DESCRIPTIONS = {
    "mlm_acc": "training masked-LM accuracy (per logged batch; the original study's metric)",
    "eval_mlm_acc": "held-out masked-LM accuracy",
    "nsp_acc": "training next-sentence-prediction accuracy",
    "eval_nsp_acc": "held-out next-sentence-prediction accuracy",
}
FAR_BEYOND_FACTOR = 100  # a predicted step beyond 100x the run's last step is "far beyond" the data
MIN_POINTS = 3  # a correlation needs three points; fewer is bad input, not a result
NSP_CHANCE = 0.5  # NSP is balanced 50/50 IsNext/NotNext, so chance accuracy is one half


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
            "decrease_percent": _num(100 * (initial - final) / initial) if initial else None,
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
        p_value = _num(sps.ttest_1samp(window, NSP_CHANCE).pvalue)
    left = bool(p_value is not None and p_value < alpha and window.mean() > NSP_CHANCE)
    verdict = (f"NSP left chance: final-window mean {window.mean():.4f} > {NSP_CHANCE} (p={p_value:.2g})" if left
               else f"NSP stayed at chance: final-window mean {window.mean():.4f} vs {NSP_CHANCE}"
               + (f" (p={p_value:.2g})" if p_value is not None else ""))
    return {"mean": float(nsp.mean()), "final": float(nsp[-1]), "final_window_mean": float(window.mean()),
            "final_window_points": k, "chance": NSP_CHANCE, "p_value_vs_chance": p_value, "alpha": alpha,
            "left_chance": left, "verdict": verdict}


def _curve_note(fit: stats.CurveFit) -> str:
    if fit.name == "power_saturating" and fit.ok and fit.params["c"] <= stats.POWER_C_BOUNDS[0] * 1.01:
        return ("exponent c is at its lower bound: the data show no saturation, the power law reduces to "
                "log-linear and its ceiling a is not identified")
    return ""


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


def _run_bootstrap(steps, values, curve_x, curve_y, fits, best, n_resamples: int, seed: int, level: float):
    """Block-bootstrap intervals (association on all points, curves on `curve_x/curve_y`, the points
    with step > 0); returns (json dict, {curve: parameter draws})."""
    n = len(curve_x)
    if n_resamples <= 0:
        return {"resamples": 0, "message": "bootstrap not requested (--bootstrap 0)"}, {}
    if n < 4:
        return {"resamples": 0, "message": f"too few points for a bootstrap: {n} (needs at least 4)"}, {}
    ref = fits[best] if best else fits["linear"]
    residuals = curve_y - ref.predict(curve_x)
    block = stats.choose_block_length(residuals)
    out = {"resamples": n_resamples, "seed": seed, "level": level, "block_length": block,
           "block_rule": "n^(1/3), lengthened by the AR(1) plug-in factor of the residuals' lag-1 autocorrelation",
           "residual_lag1_autocorrelation": {name: _num(stats.lag1_autocorrelation(curve_y - f.predict(curve_x)))
                                             for name, f in fits.items() if f.ok},
           "association": stats.bootstrap_association(steps, values, n_resamples, seed, block, level),
           "curves": {}}
    draws = {}
    for name, fit in fits.items():
        if not fit.ok or n <= fit.k:
            continue
        samples = stats.bootstrap_curve_params(fit, curve_x, curve_y, n_resamples, seed + 1, block)
        draws[name] = samples
        out["curves"][name] = {p: stats.percentile_ci(samples[:, i], level)
                               for i, p in enumerate(stats.PARAM_NAMES[name])}
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
            step = float(stats.steps_to_target(name, fit.param_vector(), target)[0])
            entry = {"step": _num(step), "status": _target_status(step, last), "ci": [None, None],
                     "share_of_resamples_reaching": None}
            if name in draws:
                sample_steps = stats.steps_to_target(name, draws[name], target)
                entry["ci"] = stats.interval_with_unreached(sample_steps, level)
                entry["share_of_resamples_reaching"] = float(np.mean(np.isfinite(sample_steps)))
            row["curves"][name] = entry
        rows.append(row)
    return rows


def _forecast_json(check: dict) -> dict:
    out = {k: v for k, v in check.items() if k != "curves"}
    out["curves"] = {name: {"mae": e["mae"], "rmse": e["rmse"], "fit": e["fit"].to_json()}
                     for name, e in check["curves"].items()}
    return out


def _metric_arrays(history: History, metric: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = history.metric(metric)
    if len(steps) < MIN_POINTS:
        raise BadInputError(history.path, f"only {len(steps)} logged point(s) of '{metric}': "
                            f"at least {MIN_POINTS} are needed for a correlation")
    return steps.astype(float), values


def run_summary(history: History, metric: str = "mlm_acc", final_window: float = 0.1) -> dict:
    """The headline figures of one run (no bootstrap), used for --compare."""
    steps, values = _metric_arrays(history, metric)
    assoc = stats.association(steps, values)
    fits = stats.fit_all_curves(steps, values)
    loss = loss_summary(history, final_window)
    return {"path": history.path, "format": history.source_format, "total_steps": int(steps[-1]),
            "data_points": len(steps), "pearson_r": assoc["pearson"]["r"], "r_squared": assoc["r_squared"],
            **{k: v for k, v in series_summary(values, final_window).items() if k != "final_window_points"},
            "final_loss": loss["final"] if loss else None, "best_curve": stats.best_curve(fits)}


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
                diff[f"{key}_percent"] = _num(100 * (run[key] - base[key]) / abs(base[key])) if base[key] else None
        differences[f"{label} - {labels[0]}"] = diff
    return {"metric": metric, "baseline": labels[0], "runs": summaries, "differences": differences}


def analyze(history: History, metric: str = "mlm_acc", *, train_fraction: float = 0.5,
            targets: Sequence[float] = (), bootstrap: int = 500, seed: int = 0,
            compare: Sequence[tuple[str, History]] = (), require_r: float | None = None,
            level: float = 0.95, final_window: float = 0.1) -> dict:
    """Everything analyze_100k.py reports, as a JSON-ready dict. Pure: nothing is read or written."""
    steps, values = _metric_arrays(history, metric)
    assoc = stats.association(steps, values, level)
    # ln(step) and step^(-c) need step > 0; an evaluation of the untrained model at step 0 is left
    # out of every curve (the same points for all three, so their AICs stay comparable).
    positive = steps > 0
    curve_x, curve_y = steps[positive], values[positive]
    fits = stats.fit_all_curves(curve_x, curve_y)
    best = stats.best_curve(fits)
    curves = {}
    for name, fit in fits.items():
        entry = fit.to_json()
        entry["delta_aic"] = _num(fit.aic - fits[best].aic) if best and fit.ok else None
        entry["note"] = _curve_note(fit)
        curves[name] = entry
    boot, draws = _run_bootstrap(steps, values, curve_x, curve_y, fits, best, bootstrap, seed, level)
    r = assoc["pearson"]["r"]
    result = {
        "source": {"path": history.path, "format": history.source_format,
                   "preset": history.meta.get("preset"), "meta_total_steps": history.meta.get("total_steps"),
                   # the analysed numbers' hash: visualize_results.py checks an analysis belongs to its history
                   "data_sha256": series_fingerprint(steps, values)},
        "metric": {"name": metric, "description": METRIC_DESCRIPTIONS.get(metric, metric)},
        "total_steps": int(steps[-1]),
        "data_points": len(steps),
        "pearson_correlation": r,
        "r_squared": assoc["r_squared"],
        "mlm_stats": series_summary(history.mlm_acc, final_window),
        "metric_stats": series_summary(values, final_window),
        "loss_stats": loss_summary(history, final_window),
        "nsp_stats": nsp_summary(history, final_window),
        "association": assoc,
        "curves": curves,
        "best_curve": best,
        "curve_points": {"n": int(positive.sum()), "excluded_steps": [int(x) for x in steps[~positive]],
                         "why": "curves need step > 0" if not positive.all() else ""},
        "forecast": _forecast_json(stats.forecast_check(curve_x, curve_y, train_fraction)),
        "bootstrap": boot,
        "targets": _targets(curve_x, curve_y, fits, draws, targets, level),
        "comparison": compare_runs(compare, metric, final_window) if compare else None,
    }
    if require_r is not None:
        result["goal"] = {"require_r": require_r, "r": r}
        result["goal_achieved"] = bool(r is not None and r >= require_r)
    return result


def _fmt(value, spec: str = ".4f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _fmt_ci(ci, spec: str = ".4f") -> str:
    if ci[0] is None and ci[1] is None:
        return "n/a"
    return f"[{_fmt(ci[0], spec, '-inf')}, {_fmt(ci[1], spec, 'inf')}]"


def _curve_points_note(result: dict) -> str:
    """Say up front when the curves use fewer points than the correlation (e.g. step 0 left out)."""
    cp = result["curve_points"]
    if not cp["excluded_steps"]:
        return ""
    left_out = ", ".join(f"{s:,}" for s in cp["excluded_steps"])
    return f" (curves: {cp['n']}, step {left_out} left out)"


def _target_text(e: dict) -> str:
    """One curve's steps-to-target in words; a step beyond 100x the run gets no number and no
    interval (a curve extrapolated that far says nothing about the step, only that it is far)."""
    status = e["status"]
    if status in ("not_fitted", "fit_failed"):
        return f"{'not fitted' if status == 'not_fitted' else 'fit failed'}: {e.get('message', '')}".rstrip(": ")
    if status == "not_reached":
        return "never: the fitted curve levels off below the target"
    if status == "beyond_100x_run":
        return f"beyond {FAR_BEYOND_FACTOR}x the run"
    where = "within the run" if status == "within_run" else "extrapolated"
    return f"{e['step']:>14,.0f}  {where:<15} 95% CI {_fmt_ci(e['ci'], ',.0f')}"


def _stats_line(label: str, s: dict) -> str:
    return (f"  {label}  mean {s['mean']:.4f}  max {s['max']:.4f}  min {s['min']:.4f}  std {s['std']:.4f}  "
            f"final-window mean {s['final_window_mean']:.4f}")


def _summary_lines(result: dict) -> list[str]:
    """The analysed metric first; training MLM accuracy (the original's mlm_stats) only as a labelled
    extra when another metric was analysed."""
    metric = result["metric"]["name"]
    lines = [_stats_line(f"{metric} (analysed)", result["metric_stats"])]
    if metric != "mlm_acc":
        lines.append(_stats_line("extra, not analysed: training MLM accuracy (mlm_acc)", result["mlm_stats"]))
    loss, nsp = result["loss_stats"], result["nsp_stats"]
    if loss:
        lines.append(f"  training loss {loss['initial']:.4f} -> {loss['final']:.4f}  (decrease {loss['decrease']:.4f}, "
                     f"{_fmt(loss['decrease_percent'], '.1f')}%)")
    if nsp:
        lines.append(f"  training NSP accuracy  mean {nsp['mean']:.4f}; {nsp['verdict']}")
    return lines


def format_report(result: dict) -> str:
    """A readable multi-line report of an `analyze` result."""
    a, metric = result["association"], result["metric"]["name"]
    pearson = a["pearson"]
    lines = [f"Analysis of {result['source']['path']} ({result['source']['format']} format)",
             f"metric: {metric} - {result['metric']['description']}",
             f"points: {result['data_points']}{_curve_points_note(result)}, last step: {result['total_steps']:,}", "",
             "Association with training step",
             f"  Pearson r   {_fmt(pearson['r'])}  95% CI (Fisher z) {_fmt_ci(pearson['ci'])}  "
             f"p={_fmt(pearson['p_value'], '.2g')}",
             f"  R^2         {_fmt(result['r_squared'])}",
             f"  Spearman    {_fmt(a['spearman']['rho'])}   Kendall tau {_fmt(a['kendall']['tau'])}",
             f"  slope       {_fmt(a['slope_per_10k']['estimate'])} per 10K steps, "
             f"95% CI {_fmt_ci(a['slope_per_10k']['ci'])}"]
    boot = result["bootstrap"]
    if boot.get("resamples"):
        ba = boot["association"]
        lines += [f"  block bootstrap ({boot['resamples']} resamples, block {boot['block_length']}): "
                  f"r {_fmt_ci(ba['pearson_r_ci'])}, slope/10K {_fmt_ci(ba['slope_per_10k_ci'])}"]
    else:
        lines += [f"  bootstrap: {boot.get('message', 'not run')}"]
    lines += ["", "Learning curves (best by AIC marked *)"]
    if result["curve_points"]["excluded_steps"]:
        lines.append(f"  fitted on {result['curve_points']['n']} of the {result['data_points']} points; left out "
                     f"step(s) {result['curve_points']['excluded_steps']}: {result['curve_points']['why']}")
    forecast = result["forecast"]["curves"]
    for name, c in result["curves"].items():
        mark = "*" if name == result["best_curve"] else " "
        if not c["ok"]:
            lines.append(f" {mark}{name:<17} not fitted: {c['message']}")
            continue
        params = ", ".join(f"{k}={_fmt(v, '.4g')}" for k, v in c["params"].items())
        f = forecast[name]
        lines.append(f" {mark}{name:<17} {c['formula']:<16} R^2={_fmt(c['r_squared'])} AIC={_fmt(c['aic'], '.1f')} "
                     f"dAIC={_fmt(c['delta_aic'], '.1f')}  {params}")
        lines.append(f"  {'':<17} forecast (fit on first {result['forecast']['train_fraction']:.0%}): "
                     f"MAE={_fmt(f['mae'])} RMSE={_fmt(f['rmse'])}"
                     + (f"  lag-1 autocorr of residuals {_fmt(boot['residual_lag1_autocorrelation'].get(name), '.2f')}"
                        if boot.get("resamples") else ""))
        if c["note"]:
            lines.append(f"  {'':<17} note: {c['note']}")
    if result["forecast"].get("best_by_mae"):
        lines.append(f"  best forecaster of the held-out part: {result['forecast']['best_by_mae']}")
    for row in result["targets"]:
        lines += ["", f"Steps to reach {metric} = {row['target']} (first reached by its moving average: "
                  f"{'not yet' if row['observed_step'] is None else format(row['observed_step'], ',')})"]
        lines += [f"  {name:<17} {_target_text(e)}" for name, e in row["curves"].items()]
    lines += ["", "Summaries"] + _summary_lines(result)
    comparison = result.get("comparison")
    if comparison:
        lines += ["", f"Comparison ({comparison['metric']}, baseline {comparison['baseline']})"]
        for label, s in comparison["runs"].items():
            lines.append(f"  {label:<8} r={_fmt(s['pearson_r'])} mean={_fmt(s['mean'])} max={_fmt(s['max'])} "
                         f"final-window={_fmt(s['final_window_mean'])} steps={s['total_steps']:,} ({s['path']})")
        for label, d in comparison["differences"].items():
            lines.append(f"  {label}: r {_fmt(d.get('pearson_r'), '+.4f')} "
                         f"({_fmt(d.get('pearson_r_percent'), '+.1f')}%), mean {_fmt(d.get('mean'), '+.4f')}, "
                         f"final-window {_fmt(d.get('final_window_mean'), '+.4f')}")
    if "goal_achieved" in result:
        lines += ["", f"goal r >= {result['goal']['require_r']}: "
                  f"{'MET' if result['goal_achieved'] else 'NOT MET'} (r={_fmt(result['pearson_correlation'])})"]
    return "\n".join(lines)
