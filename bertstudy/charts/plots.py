"""The five charts of the study: data in (History objects, analysis dicts), matplotlib Figure out.
The fitted-curve charts (correlation, forecast, phase model) are in `charts/curve_charts.py` and draw the
analysis' chart data; what all charts share is in `charts/style.py`; both are re-exported here.

No file I/O and no pyplot here: figures are built with `matplotlib.figure.Figure` directly (no
global figure registry, nothing to close) under the TextStyle's font settings; `render_png` turns
one into PNG bytes under the same settings, and the script writes them atomically. Nothing is
fitted here: fits come from the analysis' chart data. Where data is missing
(no held-out points, no loss, too few points to fit) the panel shows a note instead of a curve.
"""


from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from bertstudy.analysis import stats
from bertstudy.charts.fonts import LABELS, TextStyle
from bertstudy.analysis.history import History, predicted_shortcut
from bertstudy.analysis.shortcut_level import reference
from bertstudy.charts.style import (  # noqa: F401  (re-exported: the charts' shared pieces)
    CURVE_COLORS, CURVE_STYLES, EVAL_COLOR, NOTE_COLOR, TRAIN_COLOR, ChartConfig, draw_shortcut, marker_area,
    metric_label, place_legends_clear_of_data, new_figure, draw_note, render_png, smoothing_window, steps_axis, set_chart_title)
from bertstudy.charts.curve_charts import correlation_analysis, forecast, forecast_ylim  # noqa: F401

SUMMARY_CHART = "run_summary.png"  # one run's summary (the original named it comparison_50k_100k.png)
COMPARISON_CHART = "comparison_50k_100k.png"  # the same chart with --compare: it compares runs
CHART_FILES = ("training_curves.png", "correlation_analysis.png", SUMMARY_CHART, "loss_analysis.png", "forecast.png")


def summary_chart_figures(history: History) -> dict:
    """Mean, max and final training MLM accuracy over all positions (the original's figures), the final
    training loss (None where absent), and the final and best held-out [MASK] accuracy where the history
    has it (the study's headline)."""
    acc = history.mlm_acc
    summary = {"mean_mlm": float(acc.mean()), "max_mlm": float(acc.max()), "final_mlm": float(acc[-1]),
               "final_loss": float(history.loss[-1]) if len(history.loss) else None}
    if len(history.eval_mask_acc):
        summary.update(final_eval_mask=float(history.eval_mask_acc[-1]), best_eval_mask=float(history.eval_mask_acc.max()))
    return summary


def _summary_curves(ax, runs, colors, headline: bool, style: TextStyle, config: ChartConfig) -> None:
    """Held-out [MASK] accuracy at each eval when every run has it (`headline`), else training MLM
    accuracy over all positions (raw and smoothed); the title names which."""
    for (label, history), color in zip(runs, colors):
        if headline:
            ax.plot(history.eval_steps, history.eval_mask_acc, "o-", color=color, ms=3, lw=1.5,
                    label=f"{label} ({style.text('eval_points', n=len(history.eval_steps))})")
            continue
        window = smoothing_window(len(history.steps), config)
        ax.plot(history.steps, history.mlm_acc, color=color, lw=0.7, alpha=0.35)
        ax.plot(history.steps, stats.moving_average(history.mlm_acc, window), color=color, lw=1.8,
                label=f"{label} ({style.text('points', n=len(history.steps))})")
    name = metric_label(style, "eval_mask_acc") if headline else style.text("train_mlm_all")
    ax.set_ylabel(name)
    ax.set_title(name)
    steps_axis(ax, style)
    ax.legend(fontsize=9, borderaxespad=0)  # placed once the figure is laid out


def run_label(history: History) -> str:
    """A short name for a run in the comparison chart: its planned (or last logged) step count."""
    total = history.meta.get("total_steps") if isinstance(history.meta, dict) else None
    steps = int(total) if isinstance(total, (int, float)) and total > 0 else int(history.steps[-1])
    return f"{steps / 1000:g}K" if steps >= 1000 else str(steps)


KIND_KEYS = ("mask_acc", "random_acc", "unchanged_acc", "mlm_acc")  # the position-kind panel's lines
KIND_COLORS = {"mask_acc": "tab:red", "random_acc": "tab:olive", "unchanged_acc": "tab:cyan", "mlm_acc": "tab:blue"}


def kind_series(history: History) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The position kinds' accuracies to draw together: ("held_out", held-out ones) where the history has
    held-out [MASK] accuracy, else ("train", the training ones); (source, []) when it has no kinds."""
    if len(history.eval_mask_acc):
        rows = [(key, history.eval_steps, history.metric("eval_" + key)[1]) for key in KIND_KEYS
                if len(getattr(history, "eval_" + key))]
        return "held_out", rows
    if len(history.series.get("mask_acc", ())):
        rows = [(key, *history.metric(key)) for key in KIND_KEYS if key == "mlm_acc" or len(history.series.get(key, ()))]
        return "train", rows
    return "train", []


def _kinds_panel(ax, history: History, style: TextStyle, shortcut: dict | None) -> None:
    source, rows = kind_series(history)
    for key, steps, values in rows:
        ax.plot(steps, values, "o-" if source == "held_out" else "-", ms=3, lw=1.2, color=KIND_COLORS[key],
                label=style.text("kind_label", kind=LABELS["kind_" + key], source=LABELS[source]))
    draw_shortcut(ax, reference(shortcut, "mask_acc"), style, color=KIND_COLORS["mask_acc"])
    draw_shortcut(ax, reference(shortcut, "mlm_acc"), style)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(style.text("accuracy"))
    ax.set_title(style.text("kinds_title"))
    ax.legend(fontsize=7.5, borderaxespad=0)  # placed once the figure is laid out


def _mlm_panel(ax, history: History, style: TextStyle, shortcut: dict | None) -> None:
    ax.plot(history.steps, history.mlm_acc, color=TRAIN_COLOR, lw=1, label=style.text("train"))
    if len(history.eval_mlm_acc):
        ax.plot(history.eval_steps, history.eval_mlm_acc, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                label=style.text("held_out"))
    else:
        draw_note(ax, style.text("no_held_out"), y=0.12)
    draw_shortcut(ax, reference(shortcut, "mlm_acc"), style)  # the all-positions level beside the all-positions metric
    ax.set_ylabel(style.text("mlm_acc"))
    ax.set_title(style.text("mlm_all_positions", sep="\n"))  # all positions: copied characters count too
    ax.legend(fontsize=7.5, borderaxespad=0)  # placed once the figure is laid out


def _nsp_panel(ax, history: History, style: TextStyle, config: ChartConfig) -> None:
    if len(history.nsp_acc):
        # Per-batch NSP accuracy is coarse and noisy (multiples of 1/batch): the raw line is faint
        # and a moving average shows whether it leaves the chance line at all.
        window = smoothing_window(len(history.nsp_acc), config)
        if window > 1:
            ax.plot(history.steps, history.nsp_acc, color=TRAIN_COLOR, lw=0.7, alpha=0.4)
            ax.plot(history.steps, stats.moving_average(history.nsp_acc, window), color=TRAIN_COLOR,
                    lw=1.8, label=style.text("train_smoothed", window=window))
        else:  # too few points to smooth
            ax.plot(history.steps, history.nsp_acc, color=TRAIN_COLOR, lw=1.2, label=style.text("train"))
        if len(history.eval_nsp_acc):
            ax.plot(history.eval_steps, history.eval_nsp_acc, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                    label=style.text("held_out"))
        ax.axhline(0.5, color="0.3", ls="--", lw=1, label=style.text("chance"))
        # Accuracy never exceeds 1: the band above it holds the legend, so it never covers data.
        ax.set_ylim(0, 1.38)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.legend(loc="upper center", fontsize=8.5, labelspacing=0.3, borderaxespad=0.3)
    else:
        draw_note(ax, style.text("no_data"))
    ax.set_ylabel(style.text("nsp_acc"))
    ax.set_title(style.text("nsp_acc"))


def _loss_panel(ax, history: History, style: TextStyle) -> None:
    plotted = False
    for key, values, color in (("loss", history.loss, "tab:red"),
                               ("mlm_loss", history.series.get("mlm_loss", ()), "tab:orange"),
                               ("nsp_loss", history.series.get("nsp_loss", ()), "tab:brown")):
        if len(values):
            ax.plot(history.steps, values, color=color, lw=1, label=style.text(key))
            plotted = True
    if len(history.eval_mlm_loss):
        ax.plot(history.eval_steps, history.eval_mlm_loss, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                label=style.text("eval_loss"))
        plotted = True
    if plotted:
        ax.legend(fontsize=8, borderaxespad=0)  # placed once the figure is laid out
    else:
        draw_note(ax, style.text("no_data"))
    ax.set_ylabel(style.text("loss"))
    ax.set_title(style.text("loss"))


def _lr_panel(ax, history: History, style: TextStyle) -> None:
    if len(history.lr) > 0 and bool(np.any(history.lr > 0)):
        positive = history.lr > 0  # a log axis cannot show the zero of a warm-up start
        ax.plot(history.steps[positive], history.lr[positive], color="tab:green", lw=1.2)
        ax.set_yscale("log")
    else:
        draw_note(ax, style.text("no_data"))
    ax.set_ylabel(style.text("lr"))
    ax.set_title(style.text("lr"))


def training_curves(history: History, style: TextStyle, analysis: dict | None = None,
                    config: ChartConfig = ChartConfig()) -> Figure:
    """MLM accuracy (train, held-out), NSP accuracy with chance, losses, learning rate (log), and, when
    the history has accuracy by position kind, a tall middle panel of the kinds together; the predicted
    shortcut levels (`meta.shortcut`) as labelled reference lines on the accuracy panels."""
    shortcut = predicted_shortcut(history)
    kinds = bool(kind_series(history)[1])
    layout = [["mlm", "kinds", "nsp"], ["loss", "kinds", "lr"]] if kinds else [["mlm", "nsp"], ["loss", "lr"]]
    with rc_context(style.rc_params()):
        fig = new_figure(style, config)
        axes = fig.subplot_mosaic(layout, sharex=True)
        count = (style.text("train_eval_points", n=len(history.steps), m=len(history.eval_steps)) if len(history.eval_steps)
                 else style.text("points", n=len(history.steps)))
        set_chart_title(fig, style, "training_title", count, analysis)
        _mlm_panel(axes["mlm"], history, style, shortcut)
        if kinds:
            _kinds_panel(axes["kinds"], history, style, shortcut)
        _nsp_panel(axes["nsp"], history, style, config)
        _loss_panel(axes["loss"], history, style)
        _lr_panel(axes["lr"], history, style)
        for ax in axes.values():
            steps_axis(ax, style)
            ax.tick_params(labelbottom=True)
        place_legends_clear_of_data(fig, [axes[name] for name in ("mlm", "kinds", "loss") if name in axes])
    return fig


def run_comparison(runs: Sequence[tuple[str, History]], style: TextStyle,
                   config: ChartConfig = ChartConfig(), title: str | None = None) -> Figure:
    """1..N runs: held-out [MASK] accuracy curves on one axis (training MLM accuracy over all positions for
    histories without it), grouped bars of the figures named under them, final training loss bars. `title`
    replaces "Run comparison" (one run alone is a summary of that run, and says so)."""
    if not runs:
        raise ValueError("run_comparison needs at least one run")
    colors = [f"C{i % 10}" for i in range(len(runs))]
    summaries = [summary_chart_figures(h) for _, h in runs]
    with rc_context(style.rc_params()):
        fig = new_figure(style, config, height=config.height * 0.8)
        ax_curves, ax_acc, ax_loss = fig.subplots(1, 3, width_ratios=(2.2, 1.6, 0.9))
        fig.suptitle(title or style.text("comparison_title"), fontsize=14)
        headline = all("final_eval_mask" in summary for summary in summaries)
        _summary_curves(ax_curves, runs, colors, headline, style, config)
        # the headline first; the training figure over all positions last, named as such
        metrics = ("final_eval_mask", "best_eval_mask", "final_mlm") if headline else ("mean_mlm", "max_mlm", "final_mlm")
        width = 0.8 / len(runs)
        centers = np.arange(len(metrics))
        for i, ((label, _), summary, color) in enumerate(zip(runs, summaries, colors)):
            heights = [summary[m] for m in metrics]
            bars = ax_acc.bar(centers + (i - (len(runs) - 1) / 2) * width, heights, width * 0.95, color=color,
                              label=label)
            ax_acc.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax_acc.set_xticks(centers, [style.text(m, sep="\n") for m in metrics], fontsize=8.5)
        top = max(s[m] for s in summaries for m in metrics)
        ax_acc.set_ylim(0, min(1.0, top * 1.18) if top > 0 else 1.0)
        ax_acc.set_ylabel(style.text("accuracy"))
        ax_acc.set_title(style.text("summary_title"))
        ax_acc.grid(True, axis="y", alpha=0.3)

        losses = [(label, s["final_loss"], color) for (label, _), s, color in zip(runs, summaries, colors)
                  if s["final_loss"] is not None]
        if losses:
            bars = ax_loss.bar(range(len(losses)), [v for _, v, _ in losses], color=[c for *_, c in losses])
            ax_loss.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
            ax_loss.set_xticks(range(len(losses)), [label for label, *_ in losses], fontsize=9)
            ax_loss.set_ylim(0, max(v for _, v, _ in losses) * 1.18 or 1.0)
        else:
            draw_note(ax_loss, style.text("no_data"))
        ax_loss.set_title(style.text("final_loss", sep="\n"))  # one line runs past the narrow panel
        ax_loss.grid(True, axis="y", alpha=0.3)
        place_legends_clear_of_data(fig, [ax_curves])
    return fig


def loss_analysis(history: History, style: TextStyle, config: ChartConfig = ChartConfig()) -> Figure:
    """Raw and smoothed loss, the decrease from start to end, and the loss against log(step)."""
    with rc_context(style.rc_params()):
        fig = new_figure(style, config, height=config.height * 0.75)
        ax_raw, ax_drop, ax_log = fig.subplots(1, 3, width_ratios=(2, 1, 2))
        set_chart_title(fig, style, "loss_title", style.text("points", n=len(history.loss)))
        ax_raw.set_title(style.text("loss"))
        ax_drop.set_title(style.text("decrease_title"))
        ax_log.set_title(style.text("log_view_title"))
        steps_axis(ax_raw, style)
        steps_axis(ax_log, style, log=True)
        if not len(history.loss):
            for ax in (ax_raw, ax_drop, ax_log):
                draw_note(ax, style.text("no_data"))
            return fig
        steps, loss = history.steps, history.loss
        window = smoothing_window(len(loss), config)
        smooth = stats.moving_average(loss, window)
        ax_raw.plot(steps, loss, color="tab:red", lw=0.8, alpha=0.35, label=style.text("raw"))
        ax_raw.plot(steps, smooth, color="darkred", lw=2, label=style.text("smoothed", window=window))
        ax_raw.legend(loc="upper right")
        for ax in (ax_raw, ax_log):
            ax.set_ylabel(style.text("loss"))
        positive = steps > 0
        if np.any(positive):
            # Raw points only: a window of equal point counts would blur the few early steps that a
            # log axis spreads out.
            ax_log.plot(steps[positive], loss[positive], ".-", color="darkred", lw=0.8, ms=2.5,
                        label=style.text("raw"))
            ax_log.set_xscale("log")
            ax_log.legend(loc="upper right")
        else:
            draw_note(ax_log, style.text("no_positive_steps"))
        edge = max(1, len(loss) // 20)  # mean of the first/last 5%: one noisy log point is not "the" start
        initial, final = float(loss[:edge].mean()), float(loss[-edge:].mean())
        bars = ax_drop.bar([0, 1], [initial, final], color=["0.6", "darkred"], width=0.6)
        ax_drop.bar_label(bars, fmt="%.3f", padding=2)
        ax_drop.set_xticks([0, 1], [style.text("initial"), style.text("final")])
        ax_drop.set_ylim(0, max(initial, final) * 1.25 if max(initial, final) > 0 else 1)
        drop = initial - final
        pct = 100 * drop / initial if initial else math.nan
        # The single first/last points too: they are what a "loss went from X to Y" headline quotes.
        ax_drop.set_xlabel("\n".join([style.text("edge_mean", k=edge), style.text("decrease_note", drop=drop, pct=pct),
                                      style.text("edge_points", first=float(loss[0]), last=float(loss[-1]))]),
                           fontsize=9)
        ax_drop.grid(True, axis="y", alpha=0.3)
    return fig


def chart_files(compare: bool = False) -> tuple[str, ...]:
    """The five charts' file names: the runs chart is `run_summary.png` for one run and keeps the
    original's `comparison_50k_100k.png` when it compares runs (--compare)."""
    return tuple(COMPARISON_CHART if compare and name == SUMMARY_CHART else name for name in CHART_FILES)


def all_charts(history: History, style: TextStyle, runs: Sequence[tuple[str, History]] | None = None,
               analysis: dict | None = None, config: ChartConfig = ChartConfig()) -> dict[str, Figure]:
    """The five charts by file name (`chart_files`); `runs` defaults to the main history alone. The
    curve charts draw `analysis["chart_data"]` (`bertstudy.analysis.chart_data`)."""
    # Without --compare the runs chart summarizes the one run and its title says so; its line is
    # labelled with the run's step count.
    single = not runs
    runs = list(runs) if runs else [(style.text("this_run", steps=run_label(history)), history)]
    names = chart_files(compare=not single)
    figures = (training_curves(history, style, analysis, config), correlation_analysis(history, style, analysis, config),
               run_comparison(runs, style, config, title=style.text("single_run_title") if single else None),
               loss_analysis(history, style, config), forecast(history, style, config, analysis))
    return dict(zip(names, figures))
