"""Honest association between MLM accuracy and a downstream score across one run's checkpoints.

Plain correlations over checkpoints mostly measure that both series grow with log(step), and the
first checkpoints are several models that have not learned yet (held-out accuracy 0 at each) that
sit as one cluster in a corner and inflate n. So, per task, with the pre-learning checkpoints collapsed to one:
Pearson and Spearman of the score vs MLM accuracy and vs ln(step), the partial correlation of score
and MLM accuracy given ln(step), and the correlation of first differences (checkpoint to checkpoint).
Step 0 has no logarithm: everything with ln(step) leaves it out.

Paired tests between two checkpoints on the same test items: an exact McNemar test for accuracy and a
paired bootstrap over sentences for segmentation F1 (per-sentence counts keep the bootstrap cheap);
`paired_tests` runs them between adjacent checkpoints of a pass (`adjacent`).

Pure functions: numbers in, JSON-ready dicts out (undefined figures are None).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

from bertstudy.analysis.stats import correlation_pair, fisher_interval, json_number, pearson_with_ci
from bertstudy.downstream.metrics import spans_from_tags

# "Unchanged" held-out accuracy = equal to 4 decimals. It is a count of right tokens over a fixed
# held-out set (the study's split: 4,258 masked tokens, so one token moves it by 2.3e-4): any real
# change is a whole token, above this for sets up to 20,000 tokens, and float noise in the stored
# value (~1e-16) is far below it.
PRE_LEARNING_TOLERANCE = 5e-5


def _undefined(n: int, why: str, **extra) -> dict:
    return {"r": None, "p_value": None, "ci": [None, None], "n": n, **extra, "message": f"undefined: {why}"}


def collapse_pre_learning(points: Sequence[dict], tolerance: float = PRE_LEARNING_TOLERANCE,
                          acc_key: str = "heldout_mlm_acc") -> tuple[list[dict], int]:
    """(points, how many were dropped): sorted by step, the initial run of checkpoints whose held-out
    accuracy equals the first one's (within `tolerance`) becomes its last member, the last model
    before anything was learned; later points are kept even when they return to that accuracy."""
    ordered = sorted(points, key=lambda p: p["step"])
    if not ordered or ordered[0].get(acc_key) is None:
        return ordered, 0
    first, run = ordered[0][acc_key], 1
    while run < len(ordered) and ordered[run].get(acc_key) is not None \
            and abs(ordered[run][acc_key] - first) <= tolerance:
        run += 1
    return ordered[run - 1:], run - 1


def _residuals(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def _is_flat(residuals: np.ndarray, values: np.ndarray) -> bool:
    """True when the control explains `values` exactly (relative to their own spread)."""
    return float(np.linalg.norm(residuals)) <= 1e-12 * max(float(np.linalg.norm(values - values.mean())), 1e-300)


def partial_correlation(x, y, z, level: float = 0.95) -> dict:
    """Pearson r of x and y given z: the correlation of their residuals after each is regressed on z
    with an intercept. One controlled variable costs one degree of freedom: the p-value is the t test
    with n - 3 degrees of freedom (n - 2 - 1), the interval Fisher's with se 1/sqrt(n - 4) (n - 3 - 1;
    a partial r on n points is distributed as a plain r on n - 1). r needs n >= 4, the interval n >= 5."""
    x, y, z = (np.asarray(v, float) for v in (x, y, z))
    n, extra = len(x), {"controls": 1}
    if not (len(y) == len(z) == n):
        raise ValueError(f"x, y and z differ in length ({n}, {len(y)}, {len(z)})")
    if n < 4:
        return _undefined(n, "fewer than 4 points", **extra)
    if not all(np.isfinite(v).all() for v in (x, y, z)):
        return _undefined(n, "a value is NaN or infinite", **extra)
    if min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0:
        return _undefined(n, "a constant series", **extra)
    design = np.column_stack([np.ones(n), z])
    rx, ry = _residuals(x, design), _residuals(y, design)
    if _is_flat(rx, x) or _is_flat(ry, y):
        return _undefined(n, "a series is an exact straight line in the control", **extra)
    r = float(np.clip(np.dot(rx, ry) / math.sqrt(np.dot(rx, rx) * np.dot(ry, ry)), -1.0, 1.0))
    dof = n - 3
    t = r * math.sqrt(dof / (1 - r * r)) if abs(r) < 1 else math.copysign(math.inf, r)
    ci = fisher_interval(r, 1 / math.sqrt(n - 4), level) if n >= 5 else [None, None]
    return {"r": r, "p_value": json_number(2 * scipy_stats.t.sf(abs(t), dof)), "ci": ci, "n": n,
            "controls": 1, "message": ""}


def first_difference_correlation(x, y, level: float = 0.95) -> dict:
    """Pearson r (Fisher interval) of x[i+1] - x[i] against y[i+1] - y[i]: do the two move together from
    one checkpoint to the next, rather than only trend together? `n` counts the differences."""
    dx, dy = np.diff(np.asarray(x, float)), np.diff(np.asarray(y, float))
    return pearson_with_ci(dx, dy, level)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test of two checkpoints on the same items: only the discordant items
    count (b01: A wrong and B right; b10: A right and B wrong); under no difference b01 ~ Binomial(b01 + b10, 1/2)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired items differ in shape: {a.shape} and {b.shape}")
    b01, b10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    p = 1.0 if b01 + b10 == 0 else float(scipy_stats.binomtest(b01, b01 + b10, 0.5).pvalue)
    return {"b01": b01, "b10": b10, "n": int(a.size), "accuracy_a": json_number(a.mean()) if a.size else None,
            "accuracy_b": json_number(b.mean()) if b.size else None, "p_value": p}


def sentence_counts(gold_tags: Sequence[str], predicted: Sequence[str]) -> np.ndarray:
    """(n, 3) integers per sentence: words right (both boundaries), predicted words, gold words; their
    column sums are what `metrics.segmentation_f1` scores, so they are all a paired bootstrap needs."""
    rows = []
    for gold, pred in zip(gold_tags, predicted, strict=True):
        gold_spans, pred_spans = set(spans_from_tags(gold)), set(spans_from_tags(pred))
        rows.append((len(gold_spans & pred_spans), len(pred_spans), len(gold_spans)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _micro_f1(correct, predicted, gold):
    """SIGHAN micro F1 from summed counts: 2PR/(P+R) = 2 correct / (predicted + gold); 0 with no words."""
    total = np.asarray(predicted + gold, float)
    return np.divide(2.0 * correct, total, out=np.zeros_like(total), where=total > 0)


def paired_bootstrap_f1(counts_a, counts_b, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """F1(B) - F1(A) for two segmentations of the same gold sentences, with a paired bootstrap over
    sentences: each resample draws sentences with replacement and rescores both on the same draw.
    counts_*: (n, 3) per-sentence (right, predicted, gold) as `sentence_counts` makes them (gold equal).
    p: the share of resampled differences on the other side of 0 from the observed one (0 included),
    doubled, at most 1; 1 when the observed difference is 0; its resolution is 2 / n_resamples."""
    a, b = np.asarray(counts_a, np.int64), np.asarray(counts_b, np.int64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3 or not len(a):
        raise ValueError(f"need two equal (n, 3) count arrays, got {a.shape} and {b.shape}")
    if not np.array_equal(a[:, 2], b[:, 2]):
        raise ValueError("the gold word counts differ: the two predictions are not of the same sentences")
    f1_a, f1_b = float(_micro_f1(*a.sum(0))), float(_micro_f1(*b.sum(0)))
    diff = f1_b - f1_a
    # how often each resample draws each sentence; the same draw scores both (that is the pairing)
    times = np.random.default_rng(seed).multinomial(len(a), np.full(len(a), 1 / len(a)), size=n_resamples)
    sa, sb = times @ a, times @ b  # (n_resamples, 3) summed counts per resample
    draws = _micro_f1(sb[:, 0], sb[:, 1], sb[:, 2]) - _micro_f1(sa[:, 0], sa[:, 1], sa[:, 2])
    if diff == 0:
        p = 1.0
    else:
        p = min(1.0, 2 * float(np.mean(draws <= 0 if diff > 0 else draws >= 0)))
    lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return {"f1_a": f1_a, "f1_b": f1_b, "difference": diff,
            "ci": [float(lo), float(hi)], "p_value": p, "n_sentences": len(a), "n_resamples": n_resamples,
            "seed": seed}


def _adjacent_test(a: dict, b: dict, n_resamples: int, seed: int, level: float) -> dict | None:
    """One pair of checkpoints on their per-item fields (None when either lacks them: an older file)."""
    pair = {"step_a": a["step"], "step_b": b["step"], "score_a": a.get("score"), "score_b": b.get("score")}
    if a.get("item_correct") is not None and b.get("item_correct") is not None:
        return {**pair, "test": "mcnemar", **mcnemar(a["item_correct"], b["item_correct"])}
    if a.get("sentence_counts") is not None and b.get("sentence_counts") is not None:
        return {**pair, "test": "paired_bootstrap_f1",
                **paired_bootstrap_f1(a["sentence_counts"], b["sentence_counts"], n_resamples, seed, level)}
    return None


def paired_tests(points: Sequence[dict], n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                 alpha: float = 0.05) -> dict:
    """Each checkpoint against the next (by step) on the same test items, on the last layer's per-item
    fields: McNemar for accuracy (`item_correct`), the seeded paired bootstrap for F1 (`sentence_counts`).
    A pair where either point lacks them (a file from before they were written) is counted in `skipped`.
    `differ` counts the pairs with p < alpha, each test on its own: with 12 pairs about one in 20 such
    calls is expected by chance alone, so read it next to `pairs`, not as a discovery."""
    ordered = sorted(points, key=lambda p: p["step"])
    pairs = [_adjacent_test(a, b, n_resamples, seed, level) for a, b in zip(ordered, ordered[1:])]
    tested = [t for t in pairs if t is not None]
    return {"pairs": tested, "tested": len(tested), "skipped": len(pairs) - len(tested), "alpha": alpha,
            "differ": sum(1 for t in tested if t["p_value"] < alpha),
            "note": "adjacent checkpoints, last layer, same test items; p-values not corrected for the number of pairs"}


def best_layer_vs_last(points: Sequence[dict], n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                       alpha: float = 0.05) -> dict:
    """At each checkpoint whose best layer is not its last (the point's `best_layer` then carries its own
    per-item list), the last layer (A) against that layer (B) on the same items, as `paired_tests` does:
    is a shallower layer, one that sees less context, really better than the model's output?"""
    pairs = []
    for point in sorted(points, key=lambda p: p["step"]):
        best = point.get("best_layer") or {}
        if not any(key in best for key in ("item_correct", "sentence_counts")):
            continue
        test = _adjacent_test(point, {**best, "step": point["step"]}, n_resamples, seed, level)
        if test is not None:
            pairs.append({"step": point["step"], "layer": best.get("layer"), **test})
    return {"pairs": pairs, "tested": len(pairs), "alpha": alpha,
            "differ": sum(1 for t in pairs if t["p_value"] < alpha),
            "note": "only checkpoints whose best layer is not the last; A = last layer, B = best layer"}


def association(points: Sequence[dict], score_key: str = "score", acc_key: str = "heldout_mlm_acc",
                level: float = 0.95, tolerance: float = PRE_LEARNING_TOLERANCE) -> dict:
    """One task's honest figures over its checkpoints (those with both a score and an accuracy)."""
    usable = sorted((p for p in points if p.get(score_key) is not None and p.get(acc_key) is not None),
                    key=lambda p: p["step"])
    kept, collapsed = collapse_pre_learning(usable, tolerance, acc_key)
    positive = [p for p in kept if p["step"] > 0]  # ln(step) has no value at step 0
    acc, score = [p[acc_key] for p in kept], [p[score_key] for p in kept]
    ln_step = [math.log(p["step"]) for p in positive]
    acc_pos, score_pos = [p[acc_key] for p in positive], [p[score_key] for p in positive]
    return {"checkpoints": len(usable), "n": len(kept), "collapsed": collapsed, "tolerance": tolerance,
            "pre_learning_steps": [p["step"] for p in usable[:collapsed + 1]] if collapsed else [],
            "mlm_vs_score": correlation_pair(acc, score, level),
            "ln_step_vs_score": correlation_pair(ln_step, score_pos, level),
            "partial_mlm_given_ln_step": partial_correlation(score_pos, acc_pos, ln_step, level),
            "first_differences": first_difference_correlation(acc, score, level),
            "adjacent": paired_tests(points, level=level),
            "best_layer_vs_last": best_layer_vs_last(points, level=level),
            "note": "pre-learning checkpoints collapsed to the last; ln(step) leaves out step 0"}
