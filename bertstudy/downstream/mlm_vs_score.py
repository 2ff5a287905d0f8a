"""Does held-out MLM accuracy predict downstream usefulness? Correlations across checkpoints.

Per task: Pearson r (Fisher-z interval) and Spearman rho (Fisher-z interval with the Bonett-Wright
standard error sqrt((1 + rho^2/2) / (n - 3))) between held-out MLM accuracy and the downstream
score, and between log10(step) and the score (step 0 left out: it has no logarithm). The points
are checkpoints of ONE run, so they are not independent samples: the intervals describe this
trajectory, not a population of runs (MultiBERTs' point); read them as a guide, with n in view.
`honest` (association.py) adds what separates MLM accuracy from the shared log(step) trend: the same
pairs with the pre-learning checkpoints collapsed, the partial r given ln(step), first differences, and
paired tests between adjacent checkpoints on the same test items.
"""

from __future__ import annotations

import math

from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import BadInputError
from bertstudy.analysis.stats import correlation_pair
from bertstudy.downstream.association import association

DOWNSTREAM_FORMAT = "chinese-bert-correlation/downstream-v1"


def load_downstream(path, history=None) -> dict:
    """probe_downstream.py's JSON; with `history` (an analysis History) it must be that run's pass
    (check_downstream_matches), as an --analysis must be its history's."""
    doc = read_json(path)
    if not isinstance(doc, dict) or (doc.get("meta") or {}).get("format") != DOWNSTREAM_FORMAT \
            or not isinstance(doc.get("tasks"), dict):
        raise BadInputError(path, f"not a {DOWNSTREAM_FORMAT} file (probe_downstream.py writes one)")
    for name, task in doc["tasks"].items():
        if not isinstance(task, dict) or not isinstance(task.get("points"), list):
            raise BadInputError(path, f"task {name!r} has no list of points")
    if history is not None:
        check_downstream_matches(doc, path, history)
    return doc


def run_identity(meta: dict) -> dict | None:
    """What names a training run across its resumes: its start time and vocabulary (None when unknown)."""
    if not isinstance(meta, dict) or meta.get("started_at") is None or meta.get("vocab_hash") is None:
        return None
    return {"started_at": meta["started_at"], "vocab_hash": meta["vocab_hash"]}


def _mismatch(doc: dict, history) -> str | None:
    """Why `doc` is not a downstream pass of `history`'s run, or None when nothing says so."""
    theirs, ours = (doc.get("meta") or {}).get("run"), run_identity(history.meta)
    if theirs and ours and theirs != ours:
        return "it records another run (another start time or vocabulary)"
    evals = dict(zip((int(s) for s in history.eval_steps), (float(v) for v in history.eval_mlm_acc)))
    last = max([int(s) for s in history.steps] + list(evals), default=0)
    for task in doc["tasks"].values():
        for point in task["points"]:
            step, acc = point.get("step"), point.get("heldout_mlm_acc")
            if isinstance(step, int) and step > last:
                return f"it scored step {step:,}, beyond the history's last step {last:,}"
            if isinstance(step, int) and step in evals and isinstance(acc, (int, float)) \
                    and abs(acc - evals[step]) > 1e-9:
                return (f"its held-out MLM accuracy at step {step:,} is {acc:.6g}, the history's "
                        f"{evals[step]:.6g}")
    return None


def check_downstream_matches(doc: dict, path, history) -> None:
    """BadInputError (exit 3) unless `doc` can be the downstream pass of `history`'s run: the run it
    records (written since this check exists) is the history's, no scored step lies beyond the
    history, and each point's held-out MLM accuracy equals the history's eval at that step."""
    why = _mismatch(doc, history)
    if why:
        raise BadInputError(path, f"is the downstream pass of another run ({why}), not of {history.path}; run "
                                  f"probe_downstream.py on that history's run folder, or leave out --downstream")


# Per checkpoint, what a summary across seeds pairs at equal step (analysis/seeds.py): the last layer's score
# and the run's held-out accuracies at that step.
SERIES_KEYS = ("step", "score", "heldout_mlm_acc", "heldout_mask_acc")


def _final_point(points: list[dict]) -> dict | None:
    """The last checkpoint's score, its best layer and their gains over the identity control."""
    if not points:
        return None
    last = max(points, key=lambda p: p["step"])
    best = last.get("best_layer") or {}
    return {"step": last["step"], "score": last["score"], "selectivity": last.get("selectivity"),
            "best_layer": best.get("layer"), "best_layer_score": best.get("score"),
            "best_layer_selectivity": best.get("selectivity")}


def task_correlations(task: dict, level: float = 0.95) -> dict:
    points = task["points"]
    with_acc = [p for p in points if p.get("heldout_mlm_acc") is not None]
    positive = [p for p in points if p["step"] > 0]
    best = max(points, key=lambda p: p["score"]) if points else None
    return {"metric": task.get("metric"), "checkpoints": len(points),
            "mlm_vs_score": correlation_pair([p["heldout_mlm_acc"] for p in with_acc], [p["score"] for p in with_acc],
                                             level),
            "log_step_vs_score": correlation_pair([math.log10(p["step"]) for p in positive],
                                                  [p["score"] for p in positive], level),
            "best": None if best is None else {"step": best["step"], "score": best["score"]},
            "final": _final_point(points),
            "series": {key: [p.get(key) for p in points] for key in SERIES_KEYS},
            "baselines": {name: b.get("score") for name, b in task.get("baselines", {}).items()},
            "honest": association(points, level=level)}


def chart_correlations(doc: dict) -> dict:
    """task_correlations of each task with points: the figures charts/downstream_chart.py draws."""
    return {name: task_correlations(task) for name, task in doc["tasks"].items() if task.get("points")}


def downstream_correlations(doc: dict, source: str = "", level: float = 0.95) -> dict:
    """The analysis dict's "downstream" entry: per task, both correlations and the baselines."""
    return {"source": source, "level": level, "mode": (doc["meta"].get("settings") or {}).get("mode"),
            "tasks": {name: task_correlations(task, level) for name, task in doc["tasks"].items()},
            "note": "checkpoints of one run are not independent samples; intervals describe this trajectory"}


def _fmt_number(value, spec=".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ci(ci) -> str:
    return f"[{_fmt_number(ci[0])}, {_fmt_number(ci[1])}]"


def _honest_lines(h: dict) -> list[str]:
    """The collapsed figures: does MLM accuracy say more than ln(step) does?"""
    steps = h["pre_learning_steps"]
    pre = (f"{h['collapsed'] + 1} pre-learning checkpoints (steps {steps[0]}-{steps[-1]}) as one"
           if h["collapsed"] else "no pre-learning checkpoints to collapse")
    pairs = [f"{label} vs score r {_fmt_number(h[key]['pearson']['r'])} {_ci(h[key]['pearson']['ci'])}, "
             f"rho {_fmt_number(h[key]['spearman']['rho'])} (n={h[key]['pearson']['n']})"
             for label, key in (("MLM acc", "mlm_vs_score"), ("ln step", "ln_step_vs_score"))]
    partial, diff = h["partial_mlm_given_ln_step"], h["first_differences"]
    return [f"    honest: {pre}, n={h['n']}", "      " + "; ".join(pairs),
            f"      partial r of score and MLM acc given ln step {_fmt_number(partial['r'])} {_ci(partial['ci'])} "
            f"(n={partial['n']}); first differences r {_fmt_number(diff['r'])} {_ci(diff['ci'])} (n={diff['n']})",
            *_adjacent_lines(h.get("adjacent")), *_best_layer_lines(h.get("best_layer_vs_last"))]


def _p(test: dict) -> str:
    """A p-value as printed; a bootstrap's 0 is below its resolution, 2 / resamples."""
    if test["p_value"] == 0 and test.get("n_resamples"):
        return f"< {2 / test['n_resamples']:.2g}"
    return f"{test['p_value']:.3g}"


def _best_layer_lines(result: dict | None) -> list[str]:
    """Where a shallower layer beat the last: at which steps, and whether the paired test says so."""
    if not result or not result["tested"]:
        return []
    steps = ", ".join(f"{t['step']:,} (layer {t['layer']}, p {_p(t)})" for t in result["pairs"])
    return [f"      a shallower layer best at {result['tested']} checkpoint(s), {result['differ']} of them at "
            f"p < {result['alpha']:g} against the last: {steps}"]


def _adjacent_lines(adjacent: dict | None) -> list[str]:
    """The paired tests between adjacent checkpoints, in one line (none: a file without per-item results)."""
    if not adjacent or not adjacent["tested"]:
        return ["      adjacent checkpoints: no paired tests (the points have no per-item results)"]
    tests = sorted({t["test"] for t in adjacent["pairs"]})
    skipped = f"; {adjacent['skipped']} pair(s) without per-item results" if adjacent["skipped"] else ""
    return [f"      adjacent checkpoints ({', '.join(tests)}, last layer): {adjacent['differ']} of "
            f"{adjacent['tested']} pairs differ at p < {adjacent['alpha']:g}{skipped}"]


def format_downstream(result: dict) -> str:
    lines = [f"Downstream ({result['mode']}, {result['source']}): does held-out MLM accuracy predict the score?"]
    for name, t in result["tasks"].items():
        base = ", ".join(f"{k} {_fmt_number(v, '.4f')}" for k, v in t["baselines"].items())
        best_score = _fmt_number(t['best'] and t['best']['score'], '.4f')
        lines.append(f"  {name} ({t['metric']}, {t['checkpoints']} checkpoints; best {best_score}"
                     f" at step {t['best'] and t['best']['step']}; baselines {base})")
        for label, key in (("MLM acc vs score ", "mlm_vs_score"), ("log10 step vs score", "log_step_vs_score")):
            pr, sp = t[key]["pearson"], t[key]["spearman"]
            lines.append(f"    {label}: Pearson {_fmt_number(pr['r'])} {_ci(pr['ci'])}, "
                         f"Spearman {_fmt_number(sp['rho'])} {_ci(sp['ci'])}, n={pr['n']}")
        lines += _honest_lines(t["honest"])
    lines.append(f"  ({result['note']})")
    return "\n".join(lines)
