"""Several pretraining seeds, one summary: the spread of every headline figure across runs that differ
only in --seed (issue 21 item 5; one trajectory is an anecdote, as MultiBERTs and Pythia showed).

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
held-out accuracy by step across the runs (the charts' band: `charts/seeds.py`), and `shortcut` the
levels their corpus predicts. Pure: the caller reads the files.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Sequence

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
        raw[f"downstream.{task}.mlm_vs_score_pearson_r"] = _get(entry, "mlm_vs_score", "pearson", "r")
        raw[f"downstream.{task}.mlm_vs_score_spearman_rho"] = _get(entry, "mlm_vs_score", "spearman", "rho")
    return {name: value for name, value in ((n, _number(v)) for n, v in raw.items()) if value is not None}


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
    for index, analysis in enumerate(analyses):
        try:
            run, figures = run_of(analysis), headline_figures(analysis)
        except ValueError as exc:
            raise SeedsInputError(index, str(exc)) from None
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
    return {"format": SUMMARY_FORMAT, "runs": list(per_run), "figures": out}


def format_seeds_summary(summary: dict) -> str:
    """A text table: one line per figure, mean, sd, min-max and n."""
    lines = [f"across {len(summary['runs'])} runs: {', '.join(summary['runs'])}"]
    width = max(len(name) for name in summary["figures"]) if summary["figures"] else 0
    for name, figure in summary["figures"].items():
        sd = "-" if figure["sd"] is None else f"{figure['sd']:.4g}"
        lines.append(f"  {name:<{width}}  mean {figure['mean']:.4g}  sd {sd}  "
                     f"[{figure['min']:.4g}, {figure['max']:.4g}]  n {figure['n']}")
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
