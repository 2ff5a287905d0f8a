"""downstream.png: each task's score against training step and against held-out MLM accuracy.

Data in (probe_downstream.py's document and, per task, the figures downstream/mlm_vs_score.py's
task_correlations computes from it), Figure out, as plots.py's charts: one row per task; left, the score
over steps on a symmetric-log axis (step 0, the untrained model, stays on it); right, the score against
held-out MLM accuracy with those Pearson/Spearman figures and the partial r given ln(step) (association.py: what MLM accuracy says beyond
the shared log-step trend). Baselines are horizontal lines in both panels. When the points carry a probe per
layer, a third panel per task shows the score by layer and step (the "probing across time"
picture), each checkpoint's best layer marked; a file without them draws the two panels alone.
"""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from bertstudy.charts.fonts import TextStyle

DOWNSTREAM_CHART = "downstream.png"
TASK_LABELS = {"cws": "ds_cws", "sentiment": "ds_sentiment", "ner": "ds_ner"}
# the identity control is the line the model must clear (selectivity); the window regression a supervised peer
BASELINE_STYLES = {"jieba": ("tab:red", "--"), "char_ngram_logreg": ("tab:red", "--"),
                   "majority": ("0.5", ":"), "step0": ("tab:gray", "-."), "identity_control": ("tab:green", "-"),
                   "window_logreg": ("tab:purple", "--")}
MODEL_COLOR = "tab:blue"
LABEL_NEAR = (0.08, 0.06)  # step labels of points closer than these shares of the axes' x, y spans are merged


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _baselines(ax, task: dict, style: TextStyle) -> None:
    for name, baseline in task.get("baselines", {}).items():
        if baseline.get("score") is None:
            continue
        color, line = BASELINE_STYLES.get(name, ("0.3", "--"))
        key = f"ds_{name}"
        label = style.text(key) if key in style.labels else name
        ax.axhline(baseline["score"], color=color, linestyle=line, linewidth=1.3, label=f"{label} {baseline['score']:.3f}")


def step_groups(points: list[dict], x_span: float, y_span: float, near=LABEL_NEAR) -> list[list[dict]]:
    """Points in step order, grouped where each lies within `near` (x, y shares of the axes' spans) of
    its group's labelled first point: one label per group, so labels never sit on each other."""
    groups: list[list[dict]] = []
    for p in sorted(points, key=lambda p: p["step"]):
        for group in groups:
            first = group[0]
            if (abs(p["heldout_mlm_acc"] - first["heldout_mlm_acc"]) <= near[0] * x_span
                    and abs(p["score"] - first["score"]) <= near[1] * y_span):
                group.append(p)
                break
        else:
            groups.append([p])
    return groups


def _step_labels(ax, points: list[dict]) -> None:
    """Each point's step, the hidden third axis; close points share one label ("0-10")."""
    if not points:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for group in step_groups(points, abs(x1 - x0) or 1.0, abs(y1 - y0) or 1.0):
        first, last = group[0], group[-1]
        text = f"{first['step']:g}" if len(group) == 1 else f"{first['step']:g}-{last['step']:g}"
        ax.annotate(text, (first["heldout_mlm_acc"], first["score"]), textcoords="offset points", xytext=(4, 3),
                    fontsize=8, color="0.3")


def layer_grid(points: list[dict]) -> tuple[list[int], np.ndarray]:
    """(steps, scores [layers, checkpoints]) of the points that have `layers`, by step; a layer a point
    lacks (a model with fewer layers) is NaN, drawn blank."""
    layered = sorted((p for p in points if p.get("layers")), key=lambda p: p["step"])
    depth = max((len(p["layers"]) for p in layered), default=0)
    grid = np.full((depth, len(layered)), np.nan)
    for column, point in enumerate(layered):
        for entry in point["layers"]:
            grid[entry["layer"], column] = entry["score"]
    return [p["step"] for p in layered], grid


def _layer_panel(fig: Figure, ax, points: list[dict], style: TextStyle, task_label: str) -> None:
    """Score by layer (rows, 0 = embedding output) and checkpoint (columns, labelled by step)."""
    steps, grid = layer_grid(points)
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis",
                      interpolation="nearest")
    # the deeper layer on a tie, as the points' best_layer (probe.by_layer)
    best = [len(column) - 1 - int(np.nanargmax(column[::-1])) if np.isfinite(column).any() else None
            for column in grid.T]
    ax.plot([c for c, b in enumerate(best) if b is not None], [b for b in best if b is not None], "*",
            color="tab:red", markersize=10, label=style.text("ds_best_layer"))  # red: seen on all of viridis
    ax.set_xticks(range(len(steps)), [f"{s:g}" for s in steps], rotation=60, fontsize=7.5)
    ax.set_yticks(range(grid.shape[0]))
    ax.set_xlabel(style.text("ds_checkpoint"))
    ax.set_ylabel(style.text("ds_layer"))
    ax.set_title(style.text("ds_layers_title", sep="\n"), fontsize=10)
    fig.colorbar(image, ax=ax, label=task_label, shrink=0.9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=8.5, frameon=False)


def downstream_chart(doc: dict, correlations: dict, style: TextStyle, width: float = 13.0) -> Figure:
    """`correlations`: task name -> downstream.mlm_vs_score.task_correlations of that task."""
    with rc_context(style.rc_params()):  # text keeps the font it is made with
        tasks = [name for name in doc["tasks"] if doc["tasks"][name].get("points") is not None]
        layered = any(p.get("layers") for name in tasks for p in doc["tasks"][name]["points"])
        columns = 3 if layered else 2
        fig = Figure(figsize=(width * columns / 2, 4.2 * max(1, len(tasks)) + 0.8), layout="constrained")
        axes = fig.subplots(max(1, len(tasks)), columns, squeeze=False)
        mode = (doc.get("meta", {}).get("settings") or {}).get("mode", "probe")
        for row, name in enumerate(tasks):
            task = doc["tasks"][name]
            points = task["points"]
            task_label = style.text(TASK_LABELS[name], sep="\n") if name in TASK_LABELS else name
            by_step, by_mlm = axes[row][:2]
            if layered:
                _draw_layers(fig, axes[row][2], points, style, task_label)
            if not points:
                for ax in (by_step, by_mlm):
                    ax.text(0.5, 0.5, style.text("ds_no_points"), transform=ax.transAxes, ha="center", va="center")
                continue
            steps = [p["step"] for p in points]
            scores = [p["score"] for p in points]
            by_step.plot(steps, scores, "o-", color=MODEL_COLOR, label=style.text("ds_model"))
            by_step.set_xscale("symlog", linthresh=1)
            by_step.set_xlim(left=0)
            by_step.set_xlabel(style.text("ds_step"))
            by_step.set_ylabel(task_label)
            with_acc = [p for p in points if p.get("heldout_mlm_acc") is not None]
            by_mlm.plot([p["heldout_mlm_acc"] for p in with_acc], [p["score"] for p in with_acc], "o",
                        color=MODEL_COLOR, label=style.text("ds_model"))
            figures = correlations[name]
            corr, partial = figures["mlm_vs_score"], figures["honest"]["partial_mlm_given_ln_step"]
            by_mlm.set_title(style.text("ds_corr", r=_fmt(corr["pearson"]["r"]), rho=_fmt(corr["spearman"]["rho"]),
                                        n=corr["pearson"]["n"], sep="\n") + "\n"
                             + style.text("ds_partial", r=_fmt(partial["r"]), n=partial["n"], sep="\n"), fontsize=10)
            by_mlm.set_xlabel(style.text("ds_mlm"))
            by_mlm.set_ylabel(task_label)
            for ax in (by_step, by_mlm):
                _baselines(ax, task, style)
                ax.grid(True, alpha=0.3)
                # under the panel, not in it: inside, "best" still covered a baseline line (majority 0.526)
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8.5, frameon=False)
            _step_labels(by_mlm, with_acc)  # after the baselines: the axes' final limits set the spacing
        fig.suptitle(style.text("ds_title", mode=style.labels.get(f"ds_{mode}", (mode, mode))), fontsize=14)
        return fig


def _draw_layers(fig: Figure, ax, points: list[dict], style: TextStyle, task_label: str) -> None:
    """The layer panel, or a note where this task's points have no per-layer scores (fine-tuning, an older
    pass)."""
    if any(p.get("layers") for p in points):
        _layer_panel(fig, ax, points, style, task_label)
    else:
        ax.text(0.5, 0.5, style.text("ds_no_layers"), transform=ax.transAxes, ha="center", va="center")
        ax.set_axis_off()
