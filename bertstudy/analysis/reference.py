"""A finished run's analysis as the yardstick of a live run (check_progress.py --reference): the original
study sells its curve as "a training-health baseline: raise an alert when a run leaves the curve".

The reference is an analysis JSON (analyze_100k.py's output) of held-out [MASK] accuracy, or a folder
holding one (a run folder, or results/). Nothing is refitted here: the curve is the analysis' chosen
curve as its `chart_data` draws it (the phase model or a family, on its 400-step grid), and the band
around it is the wider, at each step, of
- the chosen fit's 95% residual interval (1.96 x sqrt(rss / (n - k)), the fit's own rss and parameter
  count, as the analysis wrote them), and
- the forecast check's 95% prediction band (chart_data `forecast`, the family that forecast best), over
  the later part of the steps where the analysis has one: how far points fell from what the earlier
  points predicted.
A live run is judged only at evals inside the reference's step range (step > 0, up to its last point).
A run of another preset, or on another corpus where both runs record theirs, is refused: its curve
says nothing about this run.
Pure apart from reading the reference: `load_reference` returns a dict, `judge` takes numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bertstudy.analysis import curves, phases
from bertstudy.analysis.chart_data import CHART_DATA_FORMAT, chart_data_of
from bertstudy.analysis.history import load_history
from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import ANALYSIS_NAME, HISTORY_NAME

METRIC = "eval_mask_acc"  # the study's headline: held-out accuracy at [MASK] positions
Z95 = 1.959964  # two-sided 95% normal quantile, as the analysis' bands


def _stored_fit(analysis: dict, chosen) -> tuple[str, dict] | None:
    """(name, fit JSON) of the chosen curve as the analysis stored it: the phase model's selected
    segmented fit, or a family's parameters; None when the analysis has none."""
    if chosen == "phases":
        found = analysis.get("phases") or {}
        fit = (found.get("fits") or {}).get(str(found.get("selected_breaks")))
        return ("phases", fit) if isinstance(fit, dict) and "breaks" in fit else None
    fit = (analysis.get("curves") or {}).get(chosen) if isinstance(chosen, str) else None
    if isinstance(fit, dict) and fit.get("ok") and isinstance(fit.get("params"), dict):
        return chosen, {**fit, "k": len(fit["params"])}
    return None


def _fit_values(name: str, fit: dict, steps) -> np.ndarray:
    """The stored fit at these steps (evaluated, not refitted)."""
    steps = np.asarray(steps, float)
    if name == "phases":
        return phases.predict_from_json(fit, steps)
    return curves.curve_value(name, np.array([fit["params"][p] for p in curves.PARAM_NAMES[name]], float), steps)


def _interval_half_width(fit: dict) -> float:
    """1.96 x the fit's residual standard deviation, from its stored rss, points and parameters."""
    try:
        rss, n, k = float(fit["rss"]), int(fit["n"]), int(fit["k"])
    except (TypeError, KeyError, ValueError):
        return math.nan
    return Z95 * math.sqrt(rss / (n - k)) if n > k and rss >= 0 else math.nan


def _forecast_band(data: dict, chosen: str) -> tuple[str | None, np.ndarray, np.ndarray]:
    """(family, test-grid steps, half-widths) of the forecast check's 95% prediction band: the chosen
    family's, or when the phase model is chosen the family with the smallest forecast error."""
    forecast = data.get("forecast") or {}
    families = {name: row for name, row in (forecast.get("families") or {}).items()
                if isinstance(row, dict) and row.get("ok") and row.get("band_low") and row.get("mae") is not None}
    name = chosen if chosen in families else min(families, key=lambda n: families[n]["mae"], default=None)
    if name is None or not forecast.get("test_grid"):
        return None, np.zeros(0), np.zeros(0)
    row = families[name]
    low, high = (np.asarray([math.nan if v is None else v for v in row[key]], float) for key in ("band_low", "band_high"))
    return name, np.asarray(forecast["test_grid"], float), (high - low) / 2


def _find_analysis(path: Path) -> Path:
    if path.is_dir():
        if not (path / ANALYSIS_NAME).is_file():
            raise BadInputError(path, f"has no {ANALYSIS_NAME}: give an analysis JSON (analyze_100k.py's --out) or "
                                "a folder holding one")
        return path / ANALYSIS_NAME
    if not path.exists():
        raise BadInputError(path, "no such file (give a finished run's analysis JSON, e.g. "
                            f"results/{ANALYSIS_NAME}, or the folder holding it)")
    return path


def _reference_history(analysis: dict, path: Path):
    """The reference run's history (for its corpus): beside the analysis, else its recorded path; None
    when neither exists or holds the numbers the analysis fitted."""
    source = analysis.get("source") if isinstance(analysis.get("source"), dict) else {}
    candidates = [path.parent / HISTORY_NAME] + ([Path(source["path"])] if isinstance(source.get("path"), str) else [])
    for candidate in candidates:
        if candidate.is_file():
            try:
                history = load_history(candidate)
                chart_data_of(analysis, path, history)
                return history
            except BadInputError:
                continue
    return None


def load_reference(path) -> dict:
    """The reference's curve and band on the analysis' grid, and what it is a reference for (preset,
    corpus); BadInputError (one line naming the file) for anything that cannot serve as one."""
    path = _find_analysis(Path(path))
    analysis = read_json(path)
    data = analysis.get("chart_data") if isinstance(analysis, dict) else None
    if not isinstance(data, dict) or data.get("format") != CHART_DATA_FORMAT:
        raise BadInputError(path, "is not an analysis with chart data (analyze_100k.py's output): rerun "
                            "analyze_100k.py on the reference run's history")
    if data.get("metric") != METRIC:
        raise BadInputError(path, f"its curve is of {data.get('metric') or 'mlm_acc'}, not held-out [MASK] accuracy "
                            f"({METRIC}): rerun analyze_100k.py on the reference's history without --metric")
    grid = np.asarray(data.get("grid") or [], float)
    stored = _stored_fit(analysis, data.get("chosen_curve")) or _stored_fit(analysis, data.get("best_family_by_aic"))
    if stored is None or len(grid) < 2:
        raise BadInputError(path, "has no fitted curve to compare with (too few points in the run?)")
    name, fit = stored
    interval = _interval_half_width(fit)
    family, test_grid, forecast_half = _forecast_band(data, name)
    forecast_on_grid = np.interp(grid, test_grid, forecast_half, left=0.0, right=0.0) if len(test_grid) else 0 * grid
    half = np.fmax(np.nan_to_num(forecast_on_grid, nan=0.0), 0.0 if math.isnan(interval) else interval)
    history = _reference_history(analysis, path)
    meta = history.meta if history is not None else {}
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    source = analysis.get("source") if isinstance(analysis.get("source"), dict) else {}
    return {"path": str(path), "preset": source.get("preset") or meta.get("preset"),
            "corpus_sha256": corpus.get("sha256"), "vocab_hash": meta.get("vocab_hash"),
            "curve": name, "fit": fit, "forecast_family": family,
            "interval_half_width": None if math.isnan(interval) else interval, "grid": grid, "half_width": half}


def check_same_kind(reference: dict, preset, corpus_sha256=None, vocab_hash=None) -> None:
    """Refuse (BadInputError naming the reference) a reference of another preset or corpus than the run's."""
    where = reference["path"]
    if reference["preset"] and preset and reference["preset"] != preset:
        raise BadInputError(where, f"is a {reference['preset']} run's analysis and this run is {preset}: give a "
                            f"reference of the {preset} preset (its curve says nothing about another recipe)")
    for key, what in (("corpus_sha256", "corpus"), ("vocab_hash", "vocabulary")):
        given = corpus_sha256 if key == "corpus_sha256" else vocab_hash
        if reference[key] and given and reference[key] != given:
            raise BadInputError(where, f"was trained on another {what} than this run ({reference[key][:12]} vs "
                                f"{given[:12]}): give a reference run on the same corpus")


def judge(reference: dict, steps, values, alert_evals: int) -> dict:
    """Each eval of the live run inside the reference's range against the band; `alert` when `alert_evals`
    of them in a row fall below it (the first such run of evals), else None."""
    grid = reference["grid"]
    rows, streak, alert = [], 0, None
    for step, value in zip(steps, values):
        if value is None or not step > 0 or not grid[0] <= step <= grid[-1]:
            continue
        expected = float(_fit_values(reference["curve"], reference["fit"], [step])[0])
        half = float(np.interp(step, grid, reference["half_width"]))
        low, high = expected - half, expected + half
        below = value < low
        streak = streak + 1 if below else 0
        rows.append({"step": int(step), "value": float(value), "expected": expected, "low": low, "high": high,
                     "below": below})
        if alert is None and streak >= alert_evals:
            first = rows[-alert_evals]
            alert = {"kind": "below_band", "step": int(step), "since_step": first["step"], "evals": alert_evals,
                     "message": f"held-out [MASK] accuracy below the reference band for {alert_evals} evals in a row "
                                f"(steps {first['step']:,}-{int(step):,}; at step {int(step):,}: {value:.4f}, band "
                                f"{low:.4f}-{high:.4f} around {expected:.4f}, {reference['path']})"}
    return {"path": reference["path"], "curve": reference["curve"], "judged_evals": len(rows),
            "latest": rows[-1] if rows else None, "below_streak": streak, "alert": alert,
            "range": [float(grid[0]), float(grid[-1])]}


def describe(judged: dict) -> str:
    """One line: the latest judged eval against the band."""
    latest = judged["latest"]
    if latest is None:
        low, high = judged["range"]
        return f"no held-out [MASK] eval inside the reference's steps {low:,.0f}-{high:,.0f} yet ({judged['path']})"
    where = "BELOW the band" if latest["below"] else ("above the band" if latest["value"] > latest["high"] else "inside the band")
    return (f"held-out [MASK] {latest['value']:.4f} at step {latest['step']:,}: {where} {latest['low']:.4f}-"
            f"{latest['high']:.4f} around {latest['expected']:.4f} ({judged['curve']}, {judged['path']})")


def run_identity(run_dir: Path) -> tuple[str | None, str | None]:
    """(corpus sha256, vocabulary hash) from the run's history meta; None where it has none yet."""
    try:
        meta = read_json(run_dir / HISTORY_NAME).get("meta") or {}
    except (BadInputError, AttributeError):
        return None, None
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    return corpus.get("sha256"), meta.get("vocab_hash")


def non_finite_alert(skips: list[tuple[int, int, int]], in_a_row: int) -> dict | None:
    """Skipped updates (a non-finite loss or gradient) in `in_a_row` train records running, or in at least
    half the steps one record covers; an fp16 run's occasional GradScaler skip is neither."""
    streak = 0
    for step, count, covered in skips:
        streak = streak + 1 if count else 0
        if streak >= in_a_row or (count and 2 * count >= covered):
            return {"kind": "non_finite", "step": step,
                    "message": f"non-finite loss: {count:,} update(s) skipped in the log interval ending at step "
                               f"{step:,}" + (f", the {streak}th interval in a row with skips" if streak > 1 else "")}
    return None
