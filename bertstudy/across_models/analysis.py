"""The across-model analysis of docs/ACROSS_MODELS_PLAN.md, from the runs' probe files (pure: records in,
a dict out).

A record is one run at one step: recipe, seed, step, held-out [MASK] accuracy and, per task, the last
layer's context gain. The bootstraps resample seeds within each recipe (the plan's unit of replication).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

PRIMARY_STEP = 1000
POOLED_STEPS = (500, 1000)
CONTRAST = ("quick", "quick-no-constant")
SEED_SPREAD_RECIPE = "quick"
RESAMPLES = 10_000
TASKS = ("ner", "segmentation", "sentiment")


def records_from_probes(probe_docs: list[dict]) -> list[dict]:
    """One record per run and probed step: accuracy, and per task the last layer's context gain and score."""
    out = []
    for doc in probe_docs:
        for point in doc["points"]:
            record = {"recipe": doc["recipe"], "seed": doc["seed"], "step": point["step"],
                      "accuracy": point["heldout_mask_acc"]}
            for task in TASKS:
                last = point["tasks"][task][-1]
                record[f"{task}_gain"] = last["context_gain"]
                record[f"{task}_score"] = last["score"]
            out.append(record)
    return out


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of [rows, n] arrays, NaN entries left out; NaN where a row is constant."""
    keep = np.isfinite(x) & np.isfinite(y)
    count = keep.sum(axis=1)
    x, y = np.where(keep, x, 0.0), np.where(keep, y, 0.0)
    mx, my = x.sum(1) / np.maximum(count, 1), y.sum(1) / np.maximum(count, 1)
    dx, dy = np.where(keep, x - mx[:, None], 0.0), np.where(keep, y - my[:, None], 0.0)
    sxx, syy = (dx * dx).sum(1), (dy * dy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (dx * dy).sum(1) / np.sqrt(sxx * syy)
    return np.where((sxx > 1e-24) & (syy > 1e-24), r, np.nan)


def row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of [rows, n] arrays (average ranks for ties)."""
    return _row_pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


def spearman(x, y) -> float:
    return float(row_spearman(np.asarray(x, float)[None], np.asarray(y, float)[None])[0])


def _groups(records: list[dict]) -> list[np.ndarray]:
    """Indices of the records of each recipe, in a fixed order."""
    recipes = sorted({r["recipe"] for r in records})
    return [np.array([i for i, r in enumerate(records) if r["recipe"] == recipe]) for recipe in recipes]


def within_recipe_draws(records: list[dict], resamples: int, seed: int) -> np.ndarray:
    """[resamples, len(records)] indices: every recipe's members drawn with replacement from that recipe."""
    rng = np.random.default_rng(seed)
    groups = _groups(records)
    return np.concatenate([g[rng.integers(0, len(g), size=(resamples, len(g)))] for g in groups], axis=1)


def _interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return [float(np.quantile(values, (1 - level) / 2)), float(np.quantile(values, (1 + level) / 2))]


def rank_correlation(records: list[dict], key: str, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Spearman rho between accuracy and `key` across the records, with the within-recipe bootstrap."""
    x = np.array([r["accuracy"] for r in records], dtype=float)
    y = np.array([r[key] for r in records], dtype=float)
    draws = within_recipe_draws(records, resamples, seed)
    boot = row_spearman(x[draws], y[draws])
    ci = _interval(boot)
    reading = ("not shown (the interval holds 0)" if ci is None or ci[0] <= 0 <= ci[1]
               else "positive" if ci[0] > 0 else "negative")
    return {"n": len(records), "rho": spearman(x, y), "ci": ci, "reading": reading,
            "undefined_resamples": int(np.sum(~np.isfinite(boot)))}


def _by_run(records: list[dict], key: str, steps) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The runs, and [runs, steps] accuracy and `key` (NaN where a run has no record at that step)."""
    runs = sorted({(r["recipe"], r["seed"]) for r in records if r["step"] in steps})
    acc = np.full((len(runs), len(steps)), np.nan)
    val = np.full((len(runs), len(steps)), np.nan)
    where = {run: i for i, run in enumerate(runs)}
    for r in records:
        if r["step"] in steps:
            acc[where[(r["recipe"], r["seed"])], steps.index(r["step"])] = r["accuracy"]
            val[where[(r["recipe"], r["seed"])], steps.index(r["step"])] = r[key]
    return [{"recipe": recipe, "seed": seed} for recipe, seed in runs], acc, val


def _centred_rows(values: np.ndarray) -> np.ndarray:
    """[draws, runs, steps] less each draw's mean at each step, flattened to [draws, runs x steps]."""
    with warnings.catch_warnings():  # a step no drawn run has is all NaN: its points drop out
        warnings.simplefilter("ignore", RuntimeWarning)
        centred = values - np.nanmean(values, axis=1, keepdims=True)
    return centred.reshape(len(values), -1)


def pooled_centred_r(records: list[dict], key: str, steps=POOLED_STEPS, resamples: int = 2000, seed: int = 1) -> dict:
    """Pearson r of accuracy and `key`, each centred at its step's mean, pooled over `steps`; the interval
    resamples runs (with all their steps) within recipes."""
    steps = list(steps)
    runs, acc, val = _by_run(records, key, steps)
    if not runs:
        return {"steps": steps, "n_runs": 0, "n_points": 0, "r": None, "ci": None}
    point = float(_row_pearson(_centred_rows(acc[None]), _centred_rows(val[None]))[0])
    draws = within_recipe_draws(runs, resamples, seed)
    boot = _row_pearson(_centred_rows(acc[draws]), _centred_rows(val[draws]))
    return {"steps": steps, "n_runs": len(runs), "n_points": int(np.isfinite(acc).sum()), "r": point,
            "ci": _interval(boot)}


def recipe_contrast(records: list[dict], key: str, a: str = CONTRAST[0], b: str = CONTRAST[1],
                    resamples: int = RESAMPLES, seed: int = 2) -> dict:
    """mean(a) - mean(b) of `key` over seeds, with an interval that resamples seeds within each recipe."""
    va = np.array([r[key] for r in records if r["recipe"] == a], dtype=float)
    vb = np.array([r[key] for r in records if r["recipe"] == b], dtype=float)
    if not len(va) or not len(vb):
        return {"recipes": [a, b], "difference": None, "ci": None}
    rng = np.random.default_rng(seed)
    boot = (va[rng.integers(0, len(va), (resamples, len(va)))].mean(1)
            - vb[rng.integers(0, len(vb), (resamples, len(vb)))].mean(1))
    return {"recipes": [a, b], "seeds": [len(va), len(vb)], "difference": float(va.mean() - vb.mean()),
            "ci": _interval(boot)}


def seed_spread(records: list[dict], probe_points: dict, recipe: str = SEED_SPREAD_RECIPE) -> dict:
    """Standard deviation over one recipe's seeds, beside the median width of each gain's own test interval."""
    rows = [r for r in records if r["recipe"] == recipe]
    out = {"recipe": recipe, "seeds": len(rows),
           "accuracy_sd": float(np.std([r["accuracy"] for r in rows], ddof=1)) if len(rows) > 1 else None}
    for task in TASKS:
        widths = [ci[1] - ci[0] for ci in probe_points.get(task, [])]
        out[task] = {"gain_sd": float(np.std([r[f"{task}_gain"] for r in rows], ddof=1)) if len(rows) > 1 else None,
                     "median_test_interval_width": float(np.median(widths)) if widths else None}
    return out


def analyze(probe_docs: list[dict], runs_planned: int | None = None) -> dict:
    """The plan's statistics; `complete` says whether every planned run (default: the plan's) is in at the
    primary step, since an analysis of fewer runs is an interim look, not the endpoint."""
    if runs_planned is None:
        from bertstudy.across_models.plan import planned_runs

        runs_planned = len(planned_runs())
    records = records_from_probes(probe_docs)
    final = [r for r in records if r["step"] == PRIMARY_STEP]
    widths = {task: [p["tasks"][task][-1]["context_gain_ci"] for d in probe_docs for p in d["points"]
                     if p["step"] == PRIMARY_STEP and d["recipe"] == SEED_SPREAD_RECIPE] for task in TASKS}
    secondary = {task: {"rank_correlation": rank_correlation(final, f"{task}_gain"),
                        "pooled_centred_r": pooled_centred_r(records, f"{task}_gain"),
                        "recipe_contrast_gain": recipe_contrast(final, f"{task}_gain")} for task in TASKS}
    return {"runs_planned": runs_planned, "runs_probed_at_primary_step": len(final),
            "complete": len(final) >= runs_planned,
            "primary": {"statistic": "Spearman rho, held-out [MASK] accuracy vs NER context gain (last layer)",
                        "step": PRIMARY_STEP, **secondary["ner"]["rank_correlation"]},
            "secondary": {"by_task": secondary,
                          "recipe_contrast_accuracy": recipe_contrast(final, "accuracy"),
                          "seed_spread": seed_spread(final, widths)},
            "records": records}
