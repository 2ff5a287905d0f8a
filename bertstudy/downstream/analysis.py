"""Does held-out MLM accuracy predict downstream usefulness? Correlations across checkpoints.

Per task: Pearson r (Fisher-z interval) and Spearman rho (Fisher-z interval with the Bonett-Wright
standard error sqrt((1 + rho^2/2) / (n - 3))) between held-out MLM accuracy and the downstream
score, and between log10(step) and the score (step 0 left out: it has no logarithm). The points
are checkpoints of ONE run, so they are not independent samples: the intervals describe this
trajectory, not a population of runs (MultiBERTs' point); read them as a guide, with n in view.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import BadInputError
from bertstudy.analysis.stats import fisher_interval, json_number, pearson_with_ci

DOWNSTREAM_FORMAT = "chinese-bert-correlation/downstream-v1"


def load_downstream(path) -> dict:
    doc = read_json(path)
    if not isinstance(doc, dict) or (doc.get("meta") or {}).get("format") != DOWNSTREAM_FORMAT \
            or not isinstance(doc.get("tasks"), dict):
        raise BadInputError(path, f"not a {DOWNSTREAM_FORMAT} file (probe_downstream.py writes one)")
    for name, task in doc["tasks"].items():
        if not isinstance(task, dict) or not isinstance(task.get("points"), list):
            raise BadInputError(path, f"task {name!r} has no list of points")
    return doc


def spearman_with_ci(x, y, level: float = 0.95) -> dict:
    """Spearman rho, its p-value and a Fisher-z interval with the Bonett-Wright standard error (n >= 4)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p_value": None, "ci": [None, None], "n": n,
                "message": "undefined: fewer than 3 points or a constant series"}
    result = scipy_stats.spearmanr(x, y)
    rho = float(result.statistic)
    # Bonett-Wright standard error on Fisher's z scale, through the one interval helper Pearson's uses
    ci = fisher_interval(rho, math.sqrt((1 + rho * rho / 2) / (n - 3)), level) if n >= 4 else [None, None]
    return {"rho": rho, "p_value": json_number(result.pvalue), "ci": ci, "n": n, "message": ""}


def _pair(x, y, level: float) -> dict:
    return {"pearson": pearson_with_ci(np.asarray(x, float), np.asarray(y, float), level),
            "spearman": spearman_with_ci(x, y, level)}


def task_correlations(task: dict, level: float = 0.95) -> dict:
    points = task["points"]
    with_acc = [p for p in points if p.get("heldout_mlm_acc") is not None]
    positive = [p for p in points if p["step"] > 0]
    best = max(points, key=lambda p: p["score"]) if points else None
    return {"metric": task.get("metric"), "checkpoints": len(points),
            "mlm_vs_score": _pair([p["heldout_mlm_acc"] for p in with_acc], [p["score"] for p in with_acc], level),
            "log_step_vs_score": _pair([math.log10(p["step"]) for p in positive], [p["score"] for p in positive], level),
            "best": None if best is None else {"step": best["step"], "score": best["score"]},
            "baselines": {name: b.get("score") for name, b in task.get("baselines", {}).items()}}


def downstream_correlations(doc: dict, source: str = "", level: float = 0.95) -> dict:
    """The analysis dict's "downstream" entry: per task, both correlations and the baselines."""
    return {"source": source, "level": level, "mode": (doc["meta"].get("settings") or {}).get("mode"),
            "tasks": {name: task_correlations(task, level) for name, task in doc["tasks"].items()},
            "note": "checkpoints of one run are not independent samples; intervals describe this trajectory"}


def _f(value, spec=".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ci(ci) -> str:
    return f"[{_f(ci[0])}, {_f(ci[1])}]"


def format_downstream(result: dict) -> str:
    lines = [f"Downstream ({result['mode']}, {result['source']}): does held-out MLM accuracy predict the score?"]
    for name, t in result["tasks"].items():
        base = ", ".join(f"{k} {_f(v, '.4f')}" for k, v in t["baselines"].items())
        lines.append(f"  {name} ({t['metric']}, {t['checkpoints']} checkpoints; best {_f(t['best'] and t['best']['score'], '.4f')}"
                     f" at step {t['best'] and t['best']['step']}; baselines {base})")
        for label, key in (("MLM acc vs score ", "mlm_vs_score"), ("log10 step vs score", "log_step_vs_score")):
            pr, sp = t[key]["pearson"], t[key]["spearman"]
            lines.append(f"    {label}: Pearson {_f(pr['r'])} {_ci(pr['ci'])}, Spearman {_f(sp['rho'])} {_ci(sp['ci'])}, "
                         f"n={pr['n']}")
    lines.append(f"  ({result['note']})")
    return "\n".join(lines)
