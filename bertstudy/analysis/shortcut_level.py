"""The no-context shortcut's predicted level beside an analysed metric: which of the levels
`meta.shortcut` predicts belongs to the metric (the top character's share for [MASK] accuracy, "top
character at [MASK], copy elsewhere" for the all-positions accuracy), and the measured plateau level
against it. Pure: dicts in, a JSON-ready dict (the analysis' `shortcut` key) or report lines out.
"""

from __future__ import annotations

from bertstudy.analysis.stats import json_number

# the predicted level each accuracy is set beside (meta.shortcut's keys)
REFERENCE_KEYS = {
    "mask_acc": "mask_level", "eval_mask_acc": "mask_level",
    "mlm_acc": "overall_level", "eval_mlm_acc": "overall_level",
    "random_acc": "random_level", "eval_random_acc": "random_level",
    "unchanged_acc": "unchanged_level", "eval_unchanged_acc": "unchanged_level",
}
REFERENCE_MEANING = {
    "mask_level": "the top character's share: answering it at every [MASK]",
    "overall_level": "the top character at [MASK], the visible character copied elsewhere",
    "random_level": "copying the visible (random) character: right only when the draw hit the original",
    "unchanged_level": "copying the visible (unchanged) character",
}
PREDICTED_KEYS = ("top_char", "top_char_share", "mask_level", "random_level", "unchanged_level", "overall_level",
                  "overall_level_top_at_random", "context_free_best", "unigram")


def reference(shortcut: dict | None, metric: str) -> dict | None:
    """The predicted level to set beside `metric` ({key, level, meaning}), or None: no prediction in the
    history, or a metric without one (NSP, losses)."""
    key = REFERENCE_KEYS.get(metric)
    if shortcut is None or key is None:
        return None
    return {"key": key, "level": float(shortcut[key]), "meaning": REFERENCE_MEANING[key]}


def plateau_against(ref: dict, plateau: dict | None) -> dict | None:
    """The measured plateau level with its interval against the predicted level: the difference
    (measured - predicted) and whether the interval holds the prediction (None without an interval)."""
    if ref is None or not plateau:
        return None
    ci = plateau.get("level_ci") or [None, None]
    has_ci = ci[0] is not None and ci[1] is not None
    return {"level": plateau["level"], "level_ci": ci, "predicted": ref["level"],
            "difference": json_number(plateau["level"] - ref["level"]),
            "inside_ci": bool(ci[0] <= ref["level"] <= ci[1]) if has_ci else None}


def shortcut_entry(shortcut: dict | None, metric: str, plateau: dict | None) -> dict | None:
    """The analysis' `shortcut` key: the predicted levels, the one for the analysed metric and the
    plateau against it; None when the history predicts none (the original's, older runs)."""
    if shortcut is None:
        return None
    ref = reference(shortcut, metric)
    return {"predicted": {k: shortcut[k] for k in PREDICTED_KEYS if k in shortcut},
            "metric": metric, "reference": ref, "plateau_vs_predicted": plateau_against(ref, plateau)}


def shortcut_lines(entry: dict | None) -> list[str]:
    """One or two report lines: the predicted level for the metric, and the plateau measured against it."""
    if not entry:
        return []
    ref = entry["reference"]
    predicted = entry["predicted"]
    if ref is None:
        return [f"  predicted shortcut: none for {entry['metric']} (top character {predicted.get('top_char')!r}, "
                f"[MASK] level {predicted.get('mask_level', float('nan')):.4f}, all positions "
                f"{predicted.get('overall_level', float('nan')):.4f})"]
    lines = [f"  predicted shortcut level for {entry['metric']}: {ref['level']:.4f} ({ref['key']}: {ref['meaning']}; "
             f"top character {predicted.get('top_char')!r})"]
    vs = entry["plateau_vs_predicted"]
    if vs is None:
        lines.append("  no plateau measured to set against it")
        return lines
    ci = vs["level_ci"]
    where = ("no interval (--bootstrap 0)" if vs["inside_ci"] is None
             else f"{'inside' if vs['inside_ci'] else 'outside'} its 95% CI [{ci[0]:.4f}, {ci[1]:.4f}]")
    lines.append(f"  measured plateau level {vs['level']:.4f} vs predicted {vs['predicted']:.4f}: difference "
                 f"{vs['difference']:+.4f}, prediction {where}")
    return lines
