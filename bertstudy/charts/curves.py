"""The charts of fitted curves: step vs MLM accuracy with the three families and the phase model
(correlation_analysis.png), and the forecast check (forecast.png). Data in, Figure out; fits come
from `bertstudy.analysis.stats` and `bertstudy.analysis.phases`, and the phase model's plateau with its intervals from
the analysis when it is of the same metric (training MLM accuracy), else from a fit without intervals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from bertstudy.analysis import curves, phases, stats
from bertstudy.charts.fonts import TextStyle
from bertstudy.analysis.history import History
from bertstudy.charts.style import (CURVE_COLORS, CURVE_STYLES, NOTE_COLOR, PHASE_COLOR, TRAIN_COLOR, ChartConfig, draw_note,
                         marker_area, new_figure, set_chart_title, smoothing_window, steps_axis)


def phase_model(curve_x: np.ndarray, curve_y: np.ndarray, analysis: dict | None) -> dict | None:
    """The phase result the charts draw (training MLM accuracy, steps > 0): the analysis's own when it
    analysed that metric on these points (with its bootstrap intervals), else a fit without them."""
    if isinstance(analysis, dict) and isinstance(analysis.get("phases"), dict):
        metric = analysis.get("metric")
        metric = metric.get("name") if isinstance(metric, dict) else metric
        if metric == "mlm_acc" and analysis.get("curve_points", {}).get("n") == len(curve_x):
            return analysis["phases"]
    if len(curve_x) < 3 * phases.MIN_SEGMENT_POINTS:
        return None
    return phases.detect_phases(curve_x, curve_y, n_resamples=0)


def shade_plateau(ax, phase: dict | None, style: TextStyle, label: bool = True) -> None:
    """The plateau's span (light grey) and the 95% intervals of its start and end (darker), if any."""
    plateau = (phase or {}).get("plateau")
    if not plateau:
        return
    span = style.text("plateau_span", start=f"{plateau['start_step']:,.0f}", end=f"{plateau['end_step']:,.0f}",
                      level=plateau["level"])
    ax.axvspan(plateau["start_step"], plateau["end_step"], color="0.88", lw=0, zorder=0, label=span if label else None)
    intervals = [plateau.get(k) for k in ("start_step_ci", "end_step_ci")]
    drawn = False
    for ci in intervals:
        if ci and ci[0] is not None and ci[1] is not None:
            ax.axvspan(ci[0], ci[1], color="0.65", alpha=0.45, lw=0, zorder=0,
                       label=style.text("plateau_ci") if label and not drawn else None)
            drawn = True


def draw_phase_fit(ax, phase: dict | None, x_grid: np.ndarray, style: TextStyle) -> bool:
    """The selected segmented fit over `x_grid` and its plateau, when the phase model found one."""
    if not (phase or {}).get("plateau") or not len(x_grid):
        return False
    fit = phases.selected_fit_json(phase)
    ax.plot(x_grid, phases.predict_from_json(fit, x_grid), color=PHASE_COLOR, lw=2.0, ls="-.", zorder=4,
            label=style.text("phase_fit") + f": AIC={fit['aic']:.0f}")
    shade_plateau(ax, phase, style)
    return True


def correlation_analysis(history: History, style: TextStyle, analysis: dict | None = None,
                         config: ChartConfig = ChartConfig()) -> Figure:
    """Step vs MLM accuracy with the three fitted curves (left) and each curve's residuals (right)."""
    steps, acc = history.steps.astype(float), history.mlm_acc
    assoc = stats.association(steps, acc)
    # Curves are fitted on steps > 0 (ln(step) and step^-c need them), the points analyze_100k.py
    # fits, so the chart shows the same fits, AICs and best curve as the analysis.
    positive = steps > 0
    curve_x, curve_y = steps[positive], acc[positive]
    fits = curves.fit_all_curves(curve_x, curve_y)
    best = curves.best_curve(fits)
    with rc_context(style.rc_params()):
        fig = new_figure(style, config)
        grid = fig.add_gridspec(len(fits), 2, width_ratios=(1.5, 1))
        ax_main = fig.add_subplot(grid[:, 0])
        set_chart_title(fig, style, "correlation_title", history, analysis)
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
                draw_note(ax_res, style.text("too_short" if "too few" in fit.message else "fit_failed"))
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
            draw_note(ax_main, style.text("too_short"), y=0.5)
        draw_phase_fit(ax_main, phase_model(curve_x, curve_y, analysis), grid_x, style)
        for ax in residual_axes:
            ax.set_ylabel(style.text("residual"), fontsize=9)
            steps_axis(ax, style)
        for ax in residual_axes[:-1]:
            ax.tick_params(labelbottom=False)
            ax.set_xlabel("")
        ax_main.set_ylabel(style.text("mlm_acc"))
        steps_axis(ax_main, style)
        ax_main.set_title(style.text("fit_title"))
        low, high = float(acc.min()), float(acc.max())
        pad = 0.08 * (high - low) if high > low else 0.05
        ax_main.set_ylim(low - pad, high + pad)  # a curve's extrapolation at the first step must not squash the data
        ax_main.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return fig


def forecast(history: History, style: TextStyle, config: ChartConfig = ChartConfig(),
             analysis: dict | None = None) -> Figure:
    """Each curve fitted on the first part, its 95% prediction band over the rest, against the data;
    a fourth panel does the same for the phase model (0-2 breaks by AIC on the first part, its last
    segment extrapolated; no band), and every panel shades the plateau of the whole run, if any."""
    positive = history.steps > 0  # as analyze_100k.py: the curves need step > 0
    steps, acc = history.steps[positive].astype(float), history.mlm_acc[positive]
    check = curves.forecast_check(steps, acc, train_fraction=config.train_fraction)
    n_train = check["n_train"]
    with rc_context(style.rc_params()):
        fig = new_figure(style, config, height=config.height * 0.72)
        axes = fig.subplots(1, len(check["curves"]) + 1, sharey=True)
        set_chart_title(fig, style, "forecast_title", history)
        test_x = steps[n_train:]
        area = marker_area(len(steps), config)
        band_edges = []  # (axis, low, high) of each drawn band, for the y-limits
        whole_run = phase_model(steps, acc, analysis)
        for i, ax in enumerate(axes):
            shade_plateau(ax, whole_run, style, label=i == 0)  # where the run's phases lie, against the split
        for ax, (name, entry) in zip(axes, [*check["curves"].items(), ("phases", None)]):
            # Points above the band (zorder 3 > 1): a band drawn over them would tint them grey.
            ax.scatter(steps[:n_train], acc[:n_train], s=area, color="0.55", edgecolors="none",
                       label=style.text("fit_part"), zorder=3)
            ax.scatter(test_x, acc[n_train:], s=area, color=TRAIN_COLOR, alpha=0.75, edgecolors="none",
                       label=style.text("held_part"), zorder=3)
            ax.set_title(style.text(f"curve_{name}"))
            steps_axis(ax, style)
            if check["split_step"] is not None:
                ax.axvline(check["split_step"], color="black", ls=":", lw=1.2,
                           label=style.text("split", step=f"{check['split_step']:,.0f}"))
            if name == "phases":
                _phase_forecast_panel(ax, steps, acc, n_train, style)
                continue
            fit = entry["fit"]
            if not fit.ok:
                draw_note(ax, style.text("too_short" if "too few" in fit.message or "nothing" in fit.message
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
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9, markerscale=2)
        axes[0].set_ylabel(style.text("mlm_acc"))
        shown = acc if len(acc) else history.mlm_acc  # only step-0 points: nothing is forecast
        low, high, _ = forecast_ylim(shown, [(lo, hi) for _, lo, hi in band_edges])
        axes[0].set_ylim(low, high)
        for ax, lo, hi in band_edges:  # say so where a band is cut, rather than let it pass for a narrow one
            if len(lo) and (np.min(lo) < low or np.max(hi) > high):
                ax.text(0.02, 0.98, style.text("band_clipped"), transform=ax.transAxes, ha="left", va="top",
                        fontsize=8.5, color=NOTE_COLOR)
    return fig


def _phase_forecast_panel(ax, steps: np.ndarray, acc: np.ndarray, n_train: int, style: TextStyle) -> None:
    """The phase model as the forecast check scores it: fitted on the first part only, with 0-2
    breaks by AIC, its last segment extrapolated over the rest (the analysis' rolling origins do the same)."""
    fit = phases.fit_best_segmented(steps[:n_train], acc[:n_train]) if 0 < n_train < len(steps) else None
    if fit is None:
        draw_note(ax, style.text("too_short"), y=0.3)
        return
    test_x = steps[n_train:]
    ax.plot(steps[:n_train], fit.predict(steps[:n_train]), color=PHASE_COLOR, lw=1.8)
    (line,) = ax.plot(test_x, fit.predict(test_x), color=PHASE_COLOR, lw=1.8, ls="--")
    mae = float(np.mean(np.abs(fit.predict(test_x) - acc[n_train:])))
    ax.legend([line], [style.text("mae", mae=mae)], loc="lower right", fontsize=9)


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


