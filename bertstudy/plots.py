"""The five charts of the study: data in (History objects, analysis dicts), matplotlib Figure out.

No file I/O and no pyplot here: figures are built with `matplotlib.figure.Figure` directly (no
global figure registry, nothing to close) under the TextStyle's font settings; `render_png` turns
one into PNG bytes under the same settings, and the script writes them atomically. Fits and
association numbers come from `bertstudy.stats`, never recomputed here. Where data is missing
(no held-out points, no loss, too few points to fit) the panel shows a note instead of a curve.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from . import stats
from .fonts import LABELS, TextStyle
from .history import History

CURVE_COLORS = {"linear": "tab:orange", "log_linear": "tab:green", "power_saturating": "tab:red"}
CURVE_STYLES = {"linear": "-", "log_linear": (0, (6, 2)), "power_saturating": (0, (1.5, 1.5))}
TRAIN_COLOR, EVAL_COLOR, NOTE_COLOR = "tab:blue", "tab:purple", "0.35"
CHART_FILES = ("training_curves.png", "correlation_analysis.png", "comparison_50k_100k.png",
               "loss_analysis.png", "forecast.png")


@dataclass(frozen=True)
class ChartConfig:
    train_fraction: float = 0.5  # share of the points the forecast curves are fitted on
    smoothing_window: int = 0  # moving-average window in points; 0 = about 2% of the points
    width: float = 13.0  # inches; with 150-300 dpi a chart is 2000-4000 px wide, legible when shrunk
    height: float = 7.5  # inches
    marker_size: float = 7.0  # scatter marker area; 1,000 points stay distinguishable


def smoothing_window(n_points: int, config: ChartConfig = ChartConfig()) -> int:
    if config.smoothing_window > 0:
        return config.smoothing_window
    return max(1, int(round(n_points * 0.02)) | 1)  # odd, so the centred window is symmetric


def marker_area(n_points: int, config: ChartConfig = ChartConfig()) -> float:
    """Scatter marker area: the configured size for ~1,000 points, up to 6x larger for a handful."""
    return config.marker_size * float(np.clip(200 / max(n_points, 1), 1, 6))


def run_summary(history: History) -> dict:
    """Mean, max and final training MLM accuracy and the final loss (None where absent)."""
    acc = history.mlm_acc
    return {"mean_mlm": float(acc.mean()), "max_mlm": float(acc.max()), "final_mlm": float(acc[-1]),
            "final_loss": float(history.loss[-1]) if len(history.loss) else None}


def run_label(history: History) -> str:
    """A short name for a run in the comparison chart: its planned (or last logged) step count."""
    total = history.meta.get("total_steps") if isinstance(history.meta, dict) else None
    steps = int(total) if isinstance(total, (int, float)) and total > 0 else int(history.steps[-1])
    return f"{steps / 1000:g}K" if steps >= 1000 else str(steps)


def render_png(fig: Figure, style: TextStyle, dpi: int, metadata: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a figure; drawing happens under the style's fonts (tick labels are made then).
    `metadata` goes into PNG text chunks (visualize_results.py records which history it drew)."""
    buffer = io.BytesIO()
    with rc_context(style.rc_params()):
        fig.savefig(buffer, format="png", dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def _new_figure(style: TextStyle, config: ChartConfig, height: float | None = None) -> Figure:
    return Figure(figsize=(config.width, height or config.height), layout="constrained")


def _format_steps(ax) -> None:
    """Step ticks as 20K, 40K...: six-digit numbers would collide on a shared x axis."""
    def fmt(value, _pos):
        if abs(value) >= 1000:
            return f"{value / 1000:g}K"
        return f"{value:g}"
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))


def _note(ax, text: str, y: float = 0.5) -> None:
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va="center", color=NOTE_COLOR, fontsize=11,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})


def _steps_axis(ax, style: TextStyle, log: bool = False) -> None:
    ax.set_xlabel(style.text("step_log" if log else "step"))
    if not log:
        _format_steps(ax)
    ax.grid(True, alpha=0.3)


def _headline(analysis: dict | None, style: TextStyle) -> str | None:
    """One line of the analysis' headline numbers, when an analysis with them was given."""
    if not isinstance(analysis, dict):
        return None
    r, steps, best = analysis.get("pearson_correlation"), analysis.get("total_steps"), analysis.get("best_curve")
    if not isinstance(r, (int, float)) or not isinstance(steps, (int, float)):
        return None
    best_key = f"curve_{best}" if isinstance(best, str) else None
    best_label = LABELS[best_key] if best_key in LABELS else ("—", "—")
    metric = analysis.get("metric")
    metric = metric.get("name") if isinstance(metric, dict) else metric
    # The charts plot training MLM accuracy; an analysis of another metric says which r it quotes.
    r_of = f" ({metric})" if isinstance(metric, str) and metric != "mlm_acc" else ""
    return style.text("headline", steps=int(steps), r=float(r), best=best_label, r_of=r_of)


def _title(fig: Figure, style: TextStyle, key: str, history: History, analysis: dict | None = None) -> None:
    lines = [f"{style.text(key)} — {style.text('points', n=len(history.steps))}"]
    headline = _headline(analysis, style)
    if headline:
        lines.append(headline)
    fig.suptitle("\n".join(lines), fontsize=14)


def training_curves(history: History, style: TextStyle, analysis: dict | None = None,
                    config: ChartConfig = ChartConfig()) -> Figure:
    """2x2: MLM accuracy (train, held-out), NSP accuracy with chance, losses, learning rate (log)."""
    with rc_context(style.rc_params()):
        fig = _new_figure(style, config)
        (ax_mlm, ax_nsp), (ax_loss, ax_lr) = fig.subplots(2, 2, sharex=True)
        _title(fig, style, "training_title", history, analysis)
        ax_mlm.plot(history.steps, history.mlm_acc, color=TRAIN_COLOR, lw=1, label=style.text("train"))
        if len(history.eval_mlm_acc):
            ax_mlm.plot(history.eval_steps, history.eval_mlm_acc, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                        label=style.text("held_out"))
        else:
            _note(ax_mlm, style.text("no_held_out"), y=0.12)
        ax_mlm.set_ylabel(style.text("mlm_acc"))
        ax_mlm.set_title(style.text("mlm_acc"))
        ax_mlm.legend(loc="best")  # matplotlib picks the corner the curves leave free

        if len(history.nsp_acc):
            # Per-batch NSP accuracy is coarse and noisy (multiples of 1/batch): the raw line is faint
            # and a moving average shows whether it leaves the chance line at all.
            window = smoothing_window(len(history.nsp_acc), config)
            if window > 1:
                ax_nsp.plot(history.steps, history.nsp_acc, color=TRAIN_COLOR, lw=0.7, alpha=0.4)
                ax_nsp.plot(history.steps, stats.moving_average(history.nsp_acc, window), color=TRAIN_COLOR,
                            lw=1.8, label=style.text("train_smoothed", window=window))
            else:  # too few points to smooth
                ax_nsp.plot(history.steps, history.nsp_acc, color=TRAIN_COLOR, lw=1.2, label=style.text("train"))
            if len(history.eval_nsp_acc):
                ax_nsp.plot(history.eval_steps, history.eval_nsp_acc, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                            label=style.text("held_out"))
            ax_nsp.axhline(0.5, color="0.3", ls="--", lw=1, label=style.text("chance"))
            # Accuracy never exceeds 1: the band above it holds the legend, so it never covers data.
            ax_nsp.set_ylim(0, 1.38)
            ax_nsp.set_yticks(np.linspace(0, 1, 6))
            ax_nsp.legend(loc="upper center", fontsize=8.5, labelspacing=0.3, borderaxespad=0.3)
        else:
            _note(ax_nsp, style.text("no_data"))
        ax_nsp.set_ylabel(style.text("nsp_acc"))
        ax_nsp.set_title(style.text("nsp_acc"))

        plotted = False
        for key, values, color in (("loss", history.loss, "tab:red"),
                                   ("mlm_loss", history.series.get("mlm_loss", ()), "tab:orange"),
                                   ("nsp_loss", history.series.get("nsp_loss", ()), "tab:brown")):
            if len(values):
                ax_loss.plot(history.steps, values, color=color, lw=1, label=style.text(key))
                plotted = True
        if len(history.eval_mlm_loss):
            ax_loss.plot(history.eval_steps, history.eval_mlm_loss, "o-", color=EVAL_COLOR, ms=3, lw=1.2,
                         label=style.text("eval_loss"))
            plotted = True
        if plotted:
            ax_loss.legend(loc="best", fontsize=9)
        else:
            _note(ax_loss, style.text("no_data"))
        ax_loss.set_ylabel(style.text("loss"))
        ax_loss.set_title(style.text("loss"))

        lr_ok = len(history.lr) > 0 and bool(np.any(history.lr > 0))
        if lr_ok:
            positive = history.lr > 0  # a log axis cannot show the zero of a warm-up start
            ax_lr.plot(history.steps[positive], history.lr[positive], color="tab:green", lw=1.2)
            ax_lr.set_yscale("log")
        else:
            _note(ax_lr, style.text("no_data"))
        ax_lr.set_ylabel(style.text("lr"))
        ax_lr.set_title(style.text("lr"))
        for ax in (ax_mlm, ax_nsp, ax_loss, ax_lr):
            _steps_axis(ax, style)
        for ax in (ax_mlm, ax_nsp):
            ax.tick_params(labelbottom=True)
    return fig


def correlation_analysis(history: History, style: TextStyle, analysis: dict | None = None,
                         config: ChartConfig = ChartConfig()) -> Figure:
    """Step vs MLM accuracy with the three fitted curves (left) and each curve's residuals (right)."""
    steps, acc = history.steps.astype(float), history.mlm_acc
    assoc = stats.association(steps, acc)
    # Curves are fitted on steps > 0 (ln(step) and step^-c need them), the points analyze_100k.py
    # fits, so the chart shows the same fits, AICs and best curve as the analysis.
    positive = steps > 0
    curve_x, curve_y = steps[positive], acc[positive]
    fits = stats.fit_all_curves(curve_x, curve_y)
    best = stats.best_curve(fits)
    with rc_context(style.rc_params()):
        fig = _new_figure(style, config)
        grid = fig.add_gridspec(len(fits), 2, width_ratios=(1.5, 1))
        ax_main = fig.add_subplot(grid[:, 0])
        _title(fig, style, "correlation_title", history, analysis)
        parts = []
        if assoc["pearson"]["r"] is not None:
            parts.append(style.text("pearson", r=assoc["pearson"]["r"]))
        if assoc["spearman"]["rho"] is not None:
            parts.append(style.text("spearman", rho=assoc["spearman"]["rho"]))
        observed = style.text("observed") + ("\n" + "\n".join(parts) if parts else "")
        ax_main.scatter(steps, acc, s=marker_area(len(steps), config), alpha=0.45, color=TRAIN_COLOR, label=observed,
                        edgecolors="none")
        grid_x = np.linspace(curve_x.min(), curve_x.max(), 400) if len(curve_x) else curve_x
        residual_axes = []
        for row, (name, fit) in enumerate(fits.items()):
            # One shared y scale: a curve of the wrong shape shows as a bigger, structured residual
            # only when every panel is drawn to the same scale.
            first = residual_axes[0] if residual_axes else None
            ax_res = fig.add_subplot(grid[row, 1], sharex=first, sharey=first)
            residual_axes.append(ax_res)
            curve_label = style.text(f"curve_{name}")
            ax_res.set_title(curve_label, fontsize=10, loc="left")
            if not fit.ok:
                _note(ax_res, style.text("too_short" if "too few" in fit.message else "fit_failed"))
                continue
            stats_text = style.text("fit_stats", r2=fit.r_squared, aic=fit.aic)
            marker = f" ★ {style.text('best')}" if name == best else ""
            # Two curves can nearly coincide (a power law with a small exponent is log-like): distinct
            # dash patterns keep both visible, and the best one is drawn on top.
            ax_main.plot(grid_x, fit.predict(grid_x), color=CURVE_COLORS[name], ls=CURVE_STYLES[name],
                         lw=2.4 if name == best else 1.6, zorder=3 if name == best else 2,
                         label=f"{curve_label}: {stats_text}{marker}")
            residuals = curve_y - fit.predict(curve_x)
            ax_res.scatter(curve_x, residuals, s=marker_area(len(curve_x), config) * 0.6, color=CURVE_COLORS[name],
                           alpha=0.5, edgecolors="none")
            ax_res.axhline(0, color="0.2", lw=0.8)
            window = smoothing_window(len(residuals), config)
            # The smoothed residual shows structure a good curve would not leave (a hump = wrong shape);
            # with a handful of points (window 1) it would only join the dots.
            if window > 1:
                ax_res.plot(curve_x, stats.moving_average(residuals, window), color="black", lw=1.2,
                            label=style.text("residual_trend", window=window))
            ax_res.set_title(f"{curve_label}  {stats_text}", fontsize=10, loc="left")
        trend = [line for ax in residual_axes for line in ax.get_lines() if line.get_label() and
                 not line.get_label().startswith("_")]
        if trend:  # the same black line in every panel: explained once, under the panels, off the data
            fig.legend(handles=trend[:1], loc="outside lower right", fontsize=9, frameon=False)
        if not any(f.ok for f in fits.values()):
            _note(ax_main, style.text("too_short"), y=0.5)
        for ax in residual_axes:
            ax.set_ylabel(style.text("residual"), fontsize=9)
            _steps_axis(ax, style)
        for ax in residual_axes[:-1]:
            ax.tick_params(labelbottom=False)
            ax.set_xlabel("")
        ax_main.set_ylabel(style.text("mlm_acc"))
        _steps_axis(ax_main, style)
        ax_main.set_title(style.text("fit_title"))
        low, high = float(acc.min()), float(acc.max())
        pad = 0.08 * (high - low) if high > low else 0.05
        ax_main.set_ylim(low - pad, high + pad)  # a curve's extrapolation at the first step must not squash the data
        ax_main.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return fig


def run_comparison(runs: Sequence[tuple[str, History]], style: TextStyle,
                   config: ChartConfig = ChartConfig(), title: str | None = None) -> Figure:
    """1..N runs: MLM accuracy curves on one axis, grouped accuracy bars, final-loss bars. `title`
    replaces "Run comparison" (one run alone is a summary of that run, and says so)."""
    if not runs:
        raise ValueError("run_comparison needs at least one run")
    colors = [f"C{i % 10}" for i in range(len(runs))]
    summaries = [run_summary(h) for _, h in runs]
    with rc_context(style.rc_params()):
        fig = _new_figure(style, config, height=config.height * 0.8)
        ax_curves, ax_acc, ax_loss = fig.subplots(1, 3, width_ratios=(2.2, 1.6, 0.9))
        fig.suptitle(title or style.text("comparison_title"), fontsize=14)
        for (label, history), color in zip(runs, colors):
            window = smoothing_window(len(history.steps), config)
            ax_curves.plot(history.steps, history.mlm_acc, color=color, lw=0.7, alpha=0.35)
            ax_curves.plot(history.steps, stats.moving_average(history.mlm_acc, window), color=color, lw=1.8,
                           label=f"{label} ({style.text('points', n=len(history.steps))})")
        ax_curves.set_ylabel(style.text("mlm_acc"))
        ax_curves.set_title(style.text("mlm_acc"))
        _steps_axis(ax_curves, style)
        ax_curves.legend(loc="lower right", fontsize=9)

        metrics = ("mean_mlm", "max_mlm", "final_mlm")
        width = 0.8 / len(runs)
        centers = np.arange(len(metrics))
        for i, ((label, _), summary, color) in enumerate(zip(runs, summaries, colors)):
            heights = [summary[m] for m in metrics]
            bars = ax_acc.bar(centers + (i - (len(runs) - 1) / 2) * width, heights, width * 0.95, color=color,
                              label=label)
            ax_acc.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax_acc.set_xticks(centers, [style.text(m, sep="\n") for m in metrics], fontsize=9)
        top = max(s["max_mlm"] for s in summaries)
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
            _note(ax_loss, style.text("no_data"))
        ax_loss.set_title(style.text("final_loss"))
        ax_loss.grid(True, axis="y", alpha=0.3)
    return fig


def loss_analysis(history: History, style: TextStyle, config: ChartConfig = ChartConfig()) -> Figure:
    """Raw and smoothed loss, the decrease from start to end, and the loss against log(step)."""
    with rc_context(style.rc_params()):
        fig = _new_figure(style, config, height=config.height * 0.75)
        ax_raw, ax_drop, ax_log = fig.subplots(1, 3, width_ratios=(2, 1, 2))
        _title(fig, style, "loss_title", history)
        ax_raw.set_title(style.text("loss"))
        ax_drop.set_title(style.text("decrease_title"))
        ax_log.set_title(style.text("log_view_title"))
        _steps_axis(ax_raw, style)
        _steps_axis(ax_log, style, log=True)
        if not len(history.loss):
            for ax in (ax_raw, ax_drop, ax_log):
                _note(ax, style.text("no_data"))
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
            _note(ax_log, style.text("no_positive_steps"))
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


def forecast(history: History, style: TextStyle, config: ChartConfig = ChartConfig()) -> Figure:
    """Each curve fitted on the first part, its 95% prediction band over the rest, against the data."""
    positive = history.steps > 0  # as analyze_100k.py: the curves need step > 0
    steps, acc = history.steps[positive].astype(float), history.mlm_acc[positive]
    check = stats.forecast_check(steps, acc, train_fraction=config.train_fraction)
    n_train = check["n_train"]
    with rc_context(style.rc_params()):
        fig = _new_figure(style, config, height=config.height * 0.72)
        axes = fig.subplots(1, len(check["curves"]), sharey=True)
        _title(fig, style, "forecast_title", history)
        test_x = steps[n_train:]
        area = marker_area(len(steps), config)
        band_edges = []  # (axis, low, high) of each drawn band, for the y-limits
        for ax, (name, entry) in zip(axes, check["curves"].items()):
            fit = entry["fit"]
            # Points above the band (zorder 3 > 1): a band drawn over them would tint them grey.
            ax.scatter(steps[:n_train], acc[:n_train], s=area, color="0.55", edgecolors="none",
                       label=style.text("fit_part"), zorder=3)
            ax.scatter(test_x, acc[n_train:], s=area, color=TRAIN_COLOR, alpha=0.75, edgecolors="none",
                       label=style.text("held_part"), zorder=3)
            ax.set_title(style.text(f"curve_{name}"))
            _steps_axis(ax, style)
            if check["split_step"] is not None:
                ax.axvline(check["split_step"], color="black", ls=":", lw=1.2,
                           label=style.text("split", step=f"{check['split_step']:,.0f}"))
            if not fit.ok:
                _note(ax, style.text("too_short" if "too few" in fit.message or "nothing" in fit.message
                                     else "fit_failed"), y=0.3)
                continue
            color = CURVE_COLORS[name]
            fit_x = steps[:n_train]
            ax.plot(fit_x, fit.predict(fit_x), color=color, lw=1.8)
            lo, hi = fit.prediction_band(test_x)
            band = ax.fill_between(test_x, lo, hi, color=color, alpha=0.18, zorder=1, lw=0)
            band_edges.append((ax, lo, hi))
            (line,) = ax.plot(test_x, fit.predict(test_x), color=color, lw=1.8, ls="--")
            # Per panel only what differs between panels: the forecast, its band and its error.
            ax.legend([line, band], [style.text("mae", mae=entry["mae"]), style.text("band")],
                      loc="lower right", fontsize=9)
        # What all panels share goes once, under them.
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=9, markerscale=2)
        axes[0].set_ylabel(style.text("mlm_acc"))
        shown = acc if len(acc) else history.mlm_acc  # only step-0 points: nothing is forecast
        low, high, _ = forecast_ylim(shown, [(lo, hi) for _, lo, hi in band_edges])
        axes[0].set_ylim(low, high)
        for ax, lo, hi in band_edges:  # say so where a band is cut, rather than let it pass for a narrow one
            if len(lo) and (np.min(lo) < low or np.max(hi) > high):
                ax.text(0.02, 0.98, style.text("band_clipped"), transform=ax.transAxes, ha="left", va="top",
                        fontsize=8.5, color=NOTE_COLOR)
    return fig


def forecast_ylim(values: np.ndarray, bands: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, bool]:
    """(low, high, cut) y-limits of the forecast chart: the data with a margin, widened to hold the
    prediction bands, but never past [0, 1] (accuracy) nor more than one data span beyond the data on
    either side (a wild extrapolated band must not flatten the data); `cut` when a band still
    reaches past the top or bottom edge."""
    low, high = float(np.min(values)), float(np.max(values))
    span = high - low if high > low else 0.05
    lo_lim, hi_lim = low - 0.15 * span, high + 0.15 * span
    floor, ceiling = max(-0.02, low - span), min(1.02, high + span)
    band_lo = min((float(np.min(lo)) for lo, _ in bands if len(lo)), default=lo_lim)
    band_hi = max((float(np.max(hi)) for _, hi in bands if len(hi)), default=hi_lim)
    lo_lim, hi_lim = min(lo_lim, max(band_lo - 0.03 * span, floor)), max(hi_lim, min(band_hi + 0.03 * span, ceiling))
    return lo_lim, hi_lim, band_lo < lo_lim or band_hi > hi_lim


def all_charts(history: History, style: TextStyle, runs: Sequence[tuple[str, History]] | None = None,
               analysis: dict | None = None, config: ChartConfig = ChartConfig()) -> dict[str, Figure]:
    """The five charts by file name; `runs` defaults to the main history alone."""
    # Without --compare the chart (file name kept from the original study) summarizes the one run and
    # its title says so; its line is labelled with the run's step count.
    single = not runs
    runs = list(runs) if runs else [(style.text("this_run", steps=run_label(history)), history)]
    return {
        "training_curves.png": training_curves(history, style, analysis, config),
        "correlation_analysis.png": correlation_analysis(history, style, analysis, config),
        "comparison_50k_100k.png": run_comparison(runs, style, config,
                                                  title=style.text("single_run_title") if single else None),
        "loss_analysis.png": loss_analysis(history, style, config),
        "forecast.png": forecast(history, style, config),
    }
