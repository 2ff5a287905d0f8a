"""The charts of fitted curves: step vs MLM accuracy with the three families and the phase model
(correlation_analysis.png), and the forecast check (forecast.png). Data in, Figure out; every fitted
value, residual, band, plateau and the chosen curve come from the analysis' `chart_data`
(`bertstudy.analysis.chart_data`): nothing is fitted here, so a chart shows what its analysis says.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bertstudy.analysis import stats
from bertstudy.analysis.chart_data import drawn_metric
from bertstudy.analysis.history import History
from bertstudy.charts.fonts import LABELS, TextStyle
from bertstudy.charts.style import (CURVE_COLORS, CURVE_STYLES, NOTE_COLOR, PHASE_COLOR, TRAIN_COLOR, ChartConfig,
                                    draw_note, draw_shortcut, marker_area, metric_label, new_figure,
                                    place_legends_clear_of_data, set_chart_title, smoothing_window, steps_axis)

FORECAST_STEP_TICKS = 4  # at most this many step ticks per forecast panel: four panels share the width


def chart_data(analysis: dict | None) -> dict:
    """The analysis' `chart_data` (what `bertstudy.analysis.chart_data` computed); a ValueError without it."""
    data = analysis.get("chart_data") if isinstance(analysis, dict) else None
    if not isinstance(data, dict):
        raise ValueError("the curve charts draw an analysis' chart_data (bertstudy.analysis.chart_data); "
                         "this analysis has none")
    return data


def drawn_series(history: History, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the metric the chart data draws (training MLM accuracy for older chart data)."""
    steps, values = history.metric(drawn_metric(data))
    return np.asarray(steps, float), np.asarray(values, float)


def _array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def chosen_mark(style: TextStyle) -> str:
    return f" ★ {style.text('chosen')}"


def shade_plateau(ax, data: dict, style: TextStyle, label: bool = True) -> None:
    """The plateau's span (light grey) and the 95% intervals of its start and end (darker), if any; the
    run's flat end (hatched), if it ends flat; both exactly as the analysis reports them."""
    plateau, flat = data.get("plateau"), data.get("final_flat")
    if flat:
        text = style.text("final_flat", start=f"{flat['start_step']:,.0f}", level=flat["level"])
        ax.axvspan(flat["start_step"], flat["end_step"], facecolor="none", edgecolor="0.6", hatch="//", lw=0,
                   zorder=0, label=text if label else None)
    if not plateau:
        return
    span = style.text("plateau_span", start=f"{plateau['start_step']:,.0f}", end=f"{plateau['end_step']:,.0f}",
                      level=plateau["level"])
    ax.axvspan(plateau["start_step"], plateau["end_step"], color="0.88", lw=0, zorder=0, label=span if label else None)
    drawn = False
    for ci in (plateau.get(k) for k in ("start_step_ci", "end_step_ci")):
        if ci and ci[0] is not None and ci[1] is not None:
            ax.axvspan(ci[0], ci[1], color="0.65", alpha=0.45, lw=0, zorder=0,
                       label=style.text("plateau_ci") if label and not drawn else None)
            drawn = True


def draw_phase_fit(ax, data: dict, style: TextStyle) -> bool:
    """The selected segmented fit and its plateau (or flat end), when the analysis found one; starred
    when it is the chosen curve."""
    model = data.get("phase_model")
    chosen = data.get("chosen_curve") == "phases"
    if model is None or not (data.get("plateau") or data.get("final_flat") or chosen):
        return False
    ax.plot(_array(data["grid"]), _array(model["on_grid"]), color=PHASE_COLOR, lw=2.4 if chosen else 2.0, ls="-.",
            zorder=4, label=style.text("phase_fit") + f": AIC={model['aic']:.0f}" + (chosen_mark(style) if chosen else ""))
    shade_plateau(ax, data, style)
    return True


def _residual_panel(ax, name: str, entry: dict, x: np.ndarray, style: TextStyle, config: ChartConfig) -> str:
    """One family's residuals (and their moving average); returns its stats text ("" when not fitted)."""
    label = style.text(f"curve_{name}")
    if not entry["ok"]:
        ax.set_title(label, fontsize=10, loc="left")
        draw_note(ax, style.text("too_short" if "too few" in entry["message"] else "fit_failed"))
        return ""
    text = style.text("fit_stats", r2=entry["r_squared"] if entry["r_squared"] is not None else np.nan,
                      aic=entry["aic"])
    residuals = _array(entry["residuals"])
    ax.scatter(x, residuals, s=marker_area(len(x), config) * 0.6, color=CURVE_COLORS[name], alpha=0.5,
               edgecolors="none")
    ax.axhline(0, color="0.2", lw=0.8)
    window = smoothing_window(len(residuals), config)
    # The smoothed residual shows structure a good curve would not leave (a hump = wrong shape);
    # with a handful of points (window 1) it would only join the dots.
    if window > 1:
        ax.plot(x, stats.moving_average(residuals, window), color="black", lw=1.2,
                label=style.text("residual_trend", window=window))
    ax.set_title(f"{label}  {text}", fontsize=10, loc="left")
    return text


def _observed_label(data: dict, style: TextStyle) -> str:
    parts = []
    if data.get("pearson_r") is not None:
        parts.append(style.text("pearson", r=data["pearson_r"]))
    if data.get("spearman_rho") is not None:
        parts.append(style.text("spearman", rho=data["spearman_rho"]))
    return style.text("observed") + ("\n" + "\n".join(parts) if parts else "")


def correlation_analysis(history: History, style: TextStyle, analysis: dict | None = None,
                         config: ChartConfig = ChartConfig()) -> Figure:
    """Step vs the chart data's metric with the three fitted curves, the phase model and the predicted
    shortcut level (left) and each curve's residuals (right), all from the analysis' chart data; the
    chosen curve is starred."""
    data = chart_data(analysis)
    steps, acc = drawn_series(history, data)
    x = steps[steps > 0]  # the curves' points (ln(step) needs step > 0): the residuals' steps
    families = data["families"]
    with rc_context(style.rc_params()):
        fig = new_figure(style, config)
        grid = fig.add_gridspec(len(families), 2, width_ratios=(1.5, 1))
        ax_main = fig.add_subplot(grid[:, 0])
        metric = drawn_metric(data)
        set_chart_title(fig, style, "correlation_title", style.text("points", n=len(steps)), analysis,
                        metric=LABELS.get(f"metric_{metric}", (metric, metric)))
        ax_main.scatter(steps, acc, s=marker_area(len(steps), config), alpha=0.45, color=TRAIN_COLOR,
                        label=_observed_label(data, style), edgecolors="none")
        grid_x, residual_axes = _array(data["grid"]), []
        for row, (name, entry) in enumerate(families.items()):
            # One shared y scale: a curve of the wrong shape shows as a bigger, structured residual
            # only when every panel is drawn to the same scale.
            first = residual_axes[0] if residual_axes else None
            ax_res = fig.add_subplot(grid[row, 1], sharex=first, sharey=first)
            residual_axes.append(ax_res)
            text = _residual_panel(ax_res, name, entry, x, style, config)
            if not text:
                continue
            chosen = name == data.get("chosen_curve")
            # Two curves can nearly coincide (a power law with a small exponent is log-like): distinct
            # dash patterns keep both visible, and the chosen one is drawn on top.
            ax_main.plot(grid_x, _array(entry["on_grid"]), color=CURVE_COLORS[name], ls=CURVE_STYLES[name],
                         lw=2.4 if chosen else 1.6, zorder=3 if chosen else 2,
                         label=f"{style.text(f'curve_{name}')}: {text}" + (chosen_mark(style) if chosen else ""))
        _finish_correlation(fig, ax_main, residual_axes, data, acc, style)
    return fig


def _finish_correlation(fig, ax_main, residual_axes, data: dict, acc: np.ndarray, style: TextStyle) -> None:
    trend = [line for ax in residual_axes for line in ax.get_lines() if line.get_label() and
             not line.get_label().startswith("_")]
    if trend:  # the same black line in every panel: explained once, under the panels, off the data
        fig.legend(handles=trend[:1], loc="outside lower right", fontsize=9, frameon=False)
    if not any(entry["ok"] for entry in data["families"].values()):
        draw_note(ax_main, style.text("too_short"), y=0.5)
    draw_phase_fit(ax_main, data, style)
    shortcut = data.get("shortcut")
    draw_shortcut(ax_main, shortcut, style)
    for ax in residual_axes:
        ax.set_ylabel(style.text("residual"), fontsize=9)
        steps_axis(ax, style)
    for ax in residual_axes[:-1]:
        ax.tick_params(labelbottom=False)
        ax.set_xlabel("")
    ax_main.set_ylabel(metric_label(style, drawn_metric(data)))
    steps_axis(ax_main, style)
    ax_main.set_title(style.text("fit_title"))
    low, high = float(acc.min()), float(acc.max())
    if isinstance(shortcut, dict) and shortcut.get("level") is not None:  # the reference line stays in view
        low, high = min(low, shortcut["level"]), max(high, shortcut["level"])
    pad = 0.08 * (high - low) if high > low else 0.05
    ax_main.set_ylim(low - pad, high + pad)  # a curve's extrapolation at the first step must not squash the data
    ax_main.legend(fontsize=9, framealpha=0.9, borderaxespad=0)
    place_legends_clear_of_data(fig, [ax_main])


def _family_forecast_panel(ax, name: str, entry: dict, fc: dict, style: TextStyle):
    """One family's fit, forecast and band; returns (low, high) of the band, or None."""
    if not entry["ok"]:
        draw_note(ax, style.text("too_short" if "too few" in entry["message"] or "nothing" in entry["message"]
                                 else "fit_failed"), y=0.3)
        return None
    color = CURVE_COLORS[name]
    fit_x, test_x = _array(fc["fit_grid"]), _array(fc["test_grid"])
    ax.plot(fit_x, _array(entry["fitted"]), color=color, lw=1.8)
    lo, hi = _array(entry["band_low"]), _array(entry["band_high"])
    band = ax.fill_between(test_x, lo, hi, color=color, alpha=0.18, zorder=1, lw=0)
    (line,) = ax.plot(test_x, _array(entry["forecast"]), color=color, lw=1.8, ls="--")
    # Per panel only what differs between panels: the forecast, its band and its error.
    # Two-line labels, and out of the layout: a legend wider than its panel would widen that gap only.
    legend = ax.legend([line, band], [style.text("mae", mae=entry["mae"]), style.text("band", sep="\n")],
                       loc="lower right", fontsize=8.5)
    legend.set_in_layout(False)
    return lo[np.isfinite(lo)], hi[np.isfinite(hi)]


def _phase_forecast_panel(ax, fc: dict, style: TextStyle) -> None:
    """The phase model as the forecast check scored it: fitted on the first part only, with 0-5
    breaks by AIC at the effective n, its last segment extrapolated over the rest (as the analysis' rolling origins)."""
    model = fc.get("phase_model")
    if model is None:
        draw_note(ax, style.text("too_short"), y=0.3)
        return
    ax.plot(_array(fc["fit_grid"]), _array(model["fitted"]), color=PHASE_COLOR, lw=1.8)
    (line,) = ax.plot(_array(fc["test_grid"]), _array(model["forecast"]), color=PHASE_COLOR, lw=1.8, ls="--")
    ax.legend([line], [style.text("mae", mae=model["mae"])], loc="lower right", fontsize=8.5).set_in_layout(False)


def forecast(history: History, style: TextStyle, config: ChartConfig = ChartConfig(),
             analysis: dict | None = None) -> Figure:
    """Each curve fitted on the first part, its 95% prediction band over the rest, against the data;
    a fourth panel does the same for the phase model (no band), and every panel shades the plateau
    of the whole run, if any; all from the analysis' chart data."""
    data = chart_data(analysis)
    fc = data["forecast"]
    all_steps, all_values = drawn_series(history, data)
    positive = all_steps > 0  # as the analysis: the curves need step > 0
    steps, acc = all_steps[positive], all_values[positive]
    n_train = fc["n_train"]
    with rc_context(style.rc_params()):
        fig = new_figure(style, config, height=config.height * 0.72)
        # fixed, equal gaps: constrained layout would widen a gap wherever a panel's tick label sticks out
        fig.get_layout_engine().set(wspace=0.03, w_pad=0.02)
        axes = fig.subplots(1, len(fc["families"]) + 1, sharey=True)
        count = (style.text("forecast_points", n=len(steps), fit=n_train, test=len(steps) - n_train)
                 if 0 < n_train < len(steps) else style.text("points", n=len(steps)))
        set_chart_title(fig, style, "forecast_title", count)
        area = marker_area(len(steps), config)
        bands = []  # (axis, low, high) of each drawn band, for the y-limits
        for i, ax in enumerate(axes):
            shade_plateau(ax, data, style, label=i == 0)  # where the run's phases lie, against the split
        for ax, (name, entry) in zip(axes, [*fc["families"].items(), ("phases", None)]):
            # Points above the band (zorder 3 > 1): a band drawn over them would tint them grey.
            ax.scatter(steps[:n_train], acc[:n_train], s=area, color="0.55", edgecolors="none",
                       label=style.text("fit_part"), zorder=3)
            ax.scatter(steps[n_train:], acc[n_train:], s=area, color=TRAIN_COLOR, alpha=0.75, edgecolors="none",
                       label=style.text("held_part"), zorder=3)
            ax.set_title(style.text(f"curve_{name}"))
            steps_axis(ax, style)
            ax.xaxis.set_major_locator(MaxNLocator(FORECAST_STEP_TICKS, steps=[1, 2, 5, 10]))
            if fc["split_step"] is not None:
                ax.axvline(fc["split_step"], color="black", ls=":", lw=1.2,
                           label=style.text("split", step=f"{fc['split_step']:,.0f}"))
            if name == "phases":
                _phase_forecast_panel(ax, fc, style)
                continue
            band = _family_forecast_panel(ax, name, entry, fc, style)
            if band is not None:
                bands.append((ax, *band))
        _finish_forecast(fig, axes, acc if len(acc) else all_values, bands, style, drawn_metric(data))
    return fig


def _finish_forecast(fig, axes, shown: np.ndarray, bands, style: TextStyle, metric: str) -> None:
    # What all panels share goes once, under them.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9, markerscale=2)
    axes[0].set_ylabel(metric_label(style, metric, sep="\n"))
    low, high, _ = forecast_ylim(shown, [(lo, hi) for _, lo, hi in bands])
    axes[0].set_ylim(low, high)
    for ax, lo, hi in bands:  # say so where a band is cut, rather than let it pass for a narrow one
        if len(lo) and (np.min(lo) < low or np.max(hi) > high):
            note = ax.text(0.02, 0.98, style.text("band_clipped", sep="\n"), transform=ax.transAxes, ha="left",
                           va="top", fontsize=8.5, color=NOTE_COLOR)
            note.set_in_layout(False)  # inside its panel; it must not widen the gap beside it


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
