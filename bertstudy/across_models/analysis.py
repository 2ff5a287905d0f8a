"""The across-model analysis of docs/ACROSS_MODELS_PLAN.md, from the runs' probe files (pure: records in,
a dict out).

A record is one run at one step: recipe, seed, step, held-out [MASK] accuracy and, per task, the last
layer's context gain. The bootstraps resample seeds within each recipe (the plan's unit of replication).
"""

from __future__ import annotations

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


def spearman(x, y) -> float:
    rho = stats.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


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
    boot = np.array([spearman(x[d], y[d]) for d in draws])
    ci = _interval(boot)
    reading = ("not shown (the interval holds 0)" if ci is None or ci[0] <= 0 <= ci[1]
               else "positive" if ci[0] > 0 else "negative")
    return {"n": len(records), "rho": spearman(x, y), "ci": ci, "reading": reading,
            "undefined_resamples": int(np.sum(~np.isfinite(boot)))}


def _centred_r(records: list[dict], rows: np.ndarray, key: str) -> float:
    x, y = [], []
    for step in sorted({records[i]["step"] for i in rows}):
        at = [i for i in rows if records[i]["step"] == step]
        xs = np.array([records[i]["accuracy"] for i in at], dtype=float)
        ys = np.array([records[i][key] for i in at], dtype=float)
        x += list(xs - xs.mean())
        y += list(ys - ys.mean())
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def pooled_centred_r(records: list[dict], key: str, steps=POOLED_STEPS, resamples: int = 2000, seed: int = 1) -> dict:
    """Pearson r of accuracy and `key`, each centred at its step's mean, pooled over `steps`; the interval
    resamples runs (with all their steps) within recipes."""
    chosen = [r for r in records if r["step"] in steps]
    runs = sorted({(r["recipe"], r["seed"]) for r in chosen})
    run_records = [{"recipe": recipe, "seed": seed_} for recipe, seed_ in runs]
    rows_of = {run: np.array([i for i, r in enumerate(chosen) if (r["recipe"], r["seed"]) == run]) for run in runs}
    point = _centred_r(chosen, np.arange(len(chosen)), key)
    boot = []
    for draw in within_recipe_draws(run_records, resamples, seed):
        rows = np.concatenate([rows_of[runs[i]] for i in draw])
        boot.append(_centred_r(chosen, rows, key))
    return {"steps": list(steps), "n_runs": len(runs), "n_points": len(chosen), "r": point,
            "ci": _interval(np.array(boot))}


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


def analyze(probe_docs: list[dict]) -> dict:
    records = records_from_probes(probe_docs)
    final = [r for r in records if r["step"] == PRIMARY_STEP]
    widths = {task: [p["tasks"][task][-1]["context_gain_ci"] for d in probe_docs for p in d["points"]
                     if p["step"] == PRIMARY_STEP and d["recipe"] == SEED_SPREAD_RECIPE] for task in TASKS}
    secondary = {task: {"rank_correlation": rank_correlation(final, f"{task}_gain"),
                        "pooled_centred_r": pooled_centred_r(records, f"{task}_gain"),
                        "recipe_contrast_gain": recipe_contrast(final, f"{task}_gain")} for task in TASKS}
    return {"primary": {"statistic": "Spearman rho, held-out [MASK] accuracy vs NER context gain (last layer)",
                        "step": PRIMARY_STEP, **secondary["ner"]["rank_correlation"]},
            "secondary": {"by_task": secondary,
                          "recipe_contrast_accuracy": recipe_contrast(final, "accuracy"),
                          "seed_spread": seed_spread(final, widths)},
            "records": records}
