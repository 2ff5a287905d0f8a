"""A synthetic history of our format with accuracy by position kind and a predicted shortcut
(`meta.shortcut`): held-out [MASK] accuracy rises, stays at a plateau of PLATEAU, rises again."""

from __future__ import annotations

import json

import numpy as np

from bertstudy.analysis.history import History, load_history
from bertstudy.base.run_files import HISTORY_FORMAT

PLATEAU = 0.05  # the [MASK] accuracy's plateau level


def shortcut_meta(mask_level: float) -> dict:
    overall = 0.8 * mask_level + 0.1 / 900 + 0.1
    return {"top_char": "，", "top_char_share": mask_level, "mask_level": mask_level, "random_level": 1 / 900,
            "unchanged_level": 1.0, "overall_level": overall, "overall_level_top_at_random": 0.9 * mask_level + 0.1,
            "context_free_best": overall, "unigram": {"argmax": mask_level, "sampled": 0.01}}


def kinds_history_dict(mask_level: float | None = PLATEAU, n: int = 300, eval_every: int = 1, kinds: bool = True) -> dict:
    steps = np.linspace(20, 6_000, n).round().astype(int)
    u = np.log(steps)
    mask = PLATEAU - 0.012 * np.maximum(np.log(500) - u, 0) + 0.08 * np.maximum(u - np.log(2_500), 0)
    mask = mask + np.random.default_rng(0).normal(0, 0.002, n)
    unchanged = np.clip(0.1 + 0.3 * (u - u[0]), 0, 0.95)
    overall = 0.8 * mask + 0.1 * unchanged + 0.1 * 0.01
    obj = {"steps": steps.tolist(), "mlm_acc": (overall + 0.005).tolist(), "loss": (8 - u).tolist(),
           "meta": {"format": HISTORY_FORMAT, "preset": "synthetic", "total_steps": 6_000}}
    picked = slice(None, None, eval_every)
    obj["eval_steps"] = steps[picked].tolist()
    obj["eval_mlm_acc"] = overall[picked].tolist()
    if kinds:
        obj.update(mask_acc=(mask + 0.003).tolist(), random_acc=[0.01] * n, unchanged_acc=unchanged.tolist(),
                   eval_mask_acc=mask[picked].tolist(), eval_random_acc=[0.01] * len(steps[picked]),
                   eval_unchanged_acc=unchanged[picked].tolist())
    if mask_level is not None:
        obj["meta"]["shortcut"] = shortcut_meta(mask_level)
    return obj


def kinds_history(tmp_path, name: str = "training_history_100k.json", **kwargs) -> History:
    path = tmp_path / name
    path.write_text(json.dumps(kinds_history_dict(**kwargs), ensure_ascii=False), encoding="utf-8")
    return load_history(path)
