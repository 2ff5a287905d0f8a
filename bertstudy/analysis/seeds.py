"""Several pretraining seeds, one summary: the spread of every headline figure across runs that differ
only in --seed (one trajectory is an anecdote, as MultiBERTs and Pythia showed).

Input: analyze_100k.py results (study.analyze's dicts), any number per run and one per metric, e.g.
each seed's held-out MLM and held-out [MASK] analyses. A run is named by the folder of the history it
analysed (`source.path`). Figures, each named `<metric>.<figure>` (or `downstream.<task>.<figure>`):

- `<metric>.final`, `<metric>.final_window_mean`: the analysed metric's last value and the mean of its
  final window (with --metric eval_mlm_acc: the final held-out MLM accuracy; eval_mask_acc: [MASK]);
- `<metric>.pearson_r`, `<metric>.spearman_rho`: step against the metric;
- `<metric>.plateau_start`, `.plateau_end`, `.plateau_level`: when the phase analysis found a plateau;
- `downstream.<task>.best_score`, `.best_step`, `.mlm_vs_score_pearson_r`, `.mlm_vs_score_spearman_rho`.

Per figure: the value of each run that has it, n, mean, min, max and the sample standard deviation
(n - 1; null for one run). With the runs' histories (`seed_bands`), the summary's `bands` hold each
held-out accuracy by step across the runs (the charts' band: `charts/seed_chart.py`), and `shortcut` the
levels their corpus predicts. Pure: the caller reads the files.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

from bertstudy.analysis.stats import fisher_interval, json_number

SUMMARY_FORMAT = "chinese-bert-correlation/seeds-summary-v1"
# drawn as a band: held-out, so every seed is scored on the same instances (split_seed is shared)
BAND_METRICS = ("eval_mask_acc", "eval_mlm_acc")


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def run_of(analysis: dict) -> str:
    """The run an analysis belongs to: the folder of its history. ValueError when it names none."""
    path = _get(analysis, "source", "path")
    if not isinstance(path, str) or not path:
        raise ValueError("not an analyze_100k.py result: no source.path")
    return str(PurePath(path).parent)


def headline_figures(analysis: dict) -> dict[str, float]:
    """The figures one analysis gives (module docstring); absent or non-finite ones are left out."""
    metric = _get(analysis, "metric", "name")
    if not isinstance(metric, str) or not isinstance(analysis.get("metric_stats"), dict):
        raise ValueError("not an analyze_100k.py result: no metric.name and metric_stats")
    plateau = _get(analysis, "phases", "plateau") or {}
    raw = {
        f"{metric}.final": _get(analysis, "metric_stats", "final"),
        f"{metric}.final_window_mean": _get(analysis, "metric_stats", "final_window_mean"),
        f"{metric}.pearson_r": analysis.get("pearson_correlation"),
        f"{metric}.spearman_rho": _get(analysis, "association", "spearman", "rho"),
        f"{metric}.plateau_start": plateau.get("start_step"),
        f"{metric}.plateau_end": plateau.get("end_step"),
        f"{metric}.plateau_level": plateau.get("level"),
    }
    for task, entry in (_get(analysis, "downstream", "tasks") or {}).items():
        raw[f"downstream.{task}.best_score"] = _get(entry, "best", "score")
        raw[f"downstream.{task}.best_step"] = _get(entry, "best", "step")
        for key in ("score", "selectivity", "best_layer", "best_layer_score", "best_layer_selectivity"):
            raw[f"downstream.{task}.final_{key}"] = _get(entry, "final", key)
        raw[f"downstream.{task}.identity_control"] = _get(entry, "baselines", "identity_control")
        raw[f"downstream.{task}.partial_r_mlm_given_ln_step"] = _get(entry, "honest", "partial_mlm_given_ln_step", "r")
        raw[f"downstream.{task}.first_differences_r"] = _get(entry, "honest", "first_differences", "r")
        raw[f"downstream.{task}.mlm_vs_score_pearson_r"] = _get(entry, "mlm_vs_score", "pearson", "r")
        raw[f"downstream.{task}.mlm_vs_score_spearman_rho"] = _get(entry, "mlm_vs_score", "spearman", "rho")
    return {name: value for name, value in ((n, _number(v)) for n, v in raw.items()) if value is not None}


def within_step_correlation(series: dict[str, tuple[Sequence, Sequence, Sequence]], level: float = 0.95,
                            tolerance: float = 5e-5) -> dict:
    """Across seeds at equal step ({run: (steps, accuracy, score)}): at each step every run has, each run's
    accuracy and score minus their mean over the runs; Pearson r of the centred pairs pooled over the
    steps. It asks whether the seed that is ahead in held-out accuracy also scores higher, with the step
    (and all it brings: log(step), the schedule) held fixed. Steps where the runs' accuracies agree within
    `tolerance` (before learning) are left out: nothing there to compare. This is the partial correlation
    given one indicator per step, so the t test has N - k - 1 degrees of freedom and Fisher's interval
    se 1/sqrt(N - k - 2) (N pairs, k steps)."""
    cleaned = {run: {int(step): (acc, score) for step, acc, score in zip(*columns)
                     if _number(acc) is not None and _number(score) is not None} for run, columns in series.items()}
    common = sorted(set.intersection(*(set(points) for points in cleaned.values()))) if len(cleaned) > 1 else []
    kept = [step for step in common if np.ptp([cleaned[run][step][0] for run in cleaned]) > tolerance]
    pairs = [[cleaned[run][step] for run in cleaned] for step in kept]
    centred = [np.asarray(group, float) - np.asarray(group, float).mean(0) for group in pairs]
    out = {"runs": len(cleaned), "steps": kept, "n": len(kept) * len(cleaned), "r": None, "p_value": None,
           "ci": [None, None], "message": ""}
    if not centred:
        return {**out, "message": "undefined: no step where the runs' accuracies differ"}
    cx, cy = np.concatenate([c[:, 0] for c in centred]), np.concatenate([c[:, 1] for c in centred])
    dof = out["n"] - len(kept) - 1
    if dof < 1 or not cx.any() or not cy.any():
        return {**out, "message": "undefined: too few pairs, or no differences between the runs"}
    r = float(np.clip(cx @ cy / math.sqrt((cx @ cx) * (cy @ cy)), -1.0, 1.0))
    t = r * math.sqrt(dof / (1 - r * r)) if abs(r) < 1 else math.copysign(math.inf, r)
    ci = fisher_interval(r, 1 / math.sqrt(dof - 1), level) if dof >= 2 else [None, None]
    return {**out, "r": r, "p_value": json_number(2 * scipy_stats.t.sf(abs(t), dof)), "ci": ci}


def across_seeds(analyses_by_run: dict[str, dict], level: float = 0.95) -> dict:
    """Per downstream task and held-out accuracy (the analyses' `series`), `within_step_correlation`."""
    series = {}
    for run, analysis in analyses_by_run.items():
        for task, entry in (_get(analysis, "downstream", "tasks") or {}).items():
            columns = entry.get("series") if isinstance(entry, dict) else None
            if isinstance(columns, dict) and isinstance(columns.get("step"), list):
                series.setdefault(task, {})[run] = columns
    out = {}
    for task, runs in series.items():
        if len(runs) < 2:
            continue
        out[task] = {acc: within_step_correlation(
            {run: (c["step"], c.get(acc) or [None] * len(c["step"]), c.get("score") or []) for run, c in runs.items()},
            level) for acc in ("heldout_mask_acc", "heldout_mlm_acc")}
    return out


def spread(values: Sequence[float]) -> dict:
    """n, mean, min, max and the sample standard deviation (None under two values)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "min": min(values), "max": max(values), "sd": sd}


class SeedsInputError(ValueError):
    """An input that cannot be summarized; `index` is its position in the list."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


def summarize_seeds(analyses: Sequence[dict]) -> dict:
    """The cross-run summary of several analyses (module docstring). SeedsInputError (with the input's
    position) for an input that is not an analysis, or for two analyses of one run that disagree on a
    figure (the same metric analysed twice with other settings); ValueError for fewer than two runs."""
    per_run: dict[str, dict[str, float]] = {}
    with_downstream: dict[str, dict] = {}
    for index, analysis in enumerate(analyses):
        try:
            run, figures = run_of(analysis), headline_figures(analysis)
        except ValueError as exc:
            raise SeedsInputError(index, str(exc)) from None
        if _get(analysis, "downstream", "tasks"):
            with_downstream.setdefault(run, analysis)
        known = per_run.setdefault(run, {})
        clash = sorted(name for name, value in figures.items() if name in known and known[name] != value)
        if clash:
            raise SeedsInputError(index, f"run {run} already has other values of {', '.join(clash)}")
        known.update(figures)
    if len(per_run) < 2:
        raise ValueError(f"the analyses are of {len(per_run)} run(s) ({', '.join(per_run) or 'none'}); "
                         "a summary across seeds needs at least two")
    names = sorted({name for figures in per_run.values() for name in figures})
    out = {}
    for name in names:
        values = {run: figures[name] for run, figures in per_run.items() if name in figures}
        out[name] = {"values": values, **spread(list(values.values()))}
    return {"format": SUMMARY_FORMAT, "runs": list(per_run), "figures": out,
            "downstream_across_seeds": across_seeds(with_downstream)}


def format_seeds_summary(summary: dict) -> str:
    """A text table: one line per figure, mean, sd, min-max and n."""
    lines = [f"across {len(summary['runs'])} runs: {', '.join(summary['runs'])}"]
    width = max(len(name) for name in summary["figures"]) if summary["figures"] else 0
    for name, figure in summary["figures"].items():
        sd = "-" if figure["sd"] is None else f"{figure['sd']:.4g}"
        lines.append(f"  {name:<{width}}  mean {figure['mean']:.4g}  sd {sd}  "
                     f"[{figure['min']:.4g}, {figure['max']:.4g}]  n {figure['n']}")
    for task, by_acc in (summary.get("downstream_across_seeds") or {}).items():
        for acc, result in by_acc.items():
            figure = "n/a" if result["r"] is None else (
                f"r {result['r']:.3f} [{result['ci'][0]:.3f}, {result['ci'][1]:.3f}]" if result["ci"][0] is not None
                else f"r {result['r']:.3f}")
            lines.append(f"  at equal step, {task} score vs {acc} across the seeds: {figure} "
                         f"(n {result['n']} over {len(result['steps'])} steps) {result['message']}".rstrip())
    return "\n".join(lines)


def seed_band(series: dict[str, tuple[Sequence[float], Sequence[float]]]) -> dict | None:
    """One metric across runs ({run: (steps, values)}), at the steps every run has: per step the mean,
    min, max and sample sd (None for one run), and each run's values; None when the runs share no step
    (a run stopped before its first evaluation)."""
    by_step = {run: {float(step): float(value) for step, value in zip(steps, values)} for run, (steps, values) in series.items()}
    common = sorted(set.intersection(*(set(points) for points in by_step.values()))) if by_step else []
    if not common:
        return None
    runs = {run: [points[step] for step in common] for run, points in by_step.items()}
    spreads = [spread(column) for column in zip(*runs.values())]
    band = {"steps": [int(step) if step.is_integer() else step for step in common]}
    band.update({key: [entry[key] for entry in spreads] for key in ("mean", "min", "max", "sd")})
    band["runs"] = runs
    return band


def seed_bands(series_by_metric: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]]) -> dict:
    """`seed_band` for each metric that every run has ({metric: {run: (steps, values)}}); metrics
    without a shared step are left out."""
    bands = {metric: seed_band(series) for metric, series in series_by_metric.items()}
    return {metric: band for metric, band in bands.items() if band is not None}
