"""What every chart of the study shares: sizes, colours, the step axis, notes, titles and PNG output.

No pyplot: figures are `matplotlib.figure.Figure`s drawn under the TextStyle's font settings.
`plots.py` (training, comparison and loss charts) and `curve_charts.py` (fitted curves, forecast and
phase model) build on it; it imports neither.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bertstudy.charts.fonts import LABELS, TextStyle
from bertstudy.analysis.history import History

CURVE_COLORS = {"linear": "tab:orange", "log_linear": "tab:green", "power_saturating": "tab:red"}
CURVE_STYLES = {"linear": "-", "log_linear": (0, (6, 2)), "power_saturating": (0, (1.5, 1.5))}
TRAIN_COLOR, EVAL_COLOR, NOTE_COLOR = "tab:blue", "tab:purple", "0.35"
PHASE_COLOR = "black"  # the phase model: drawn over the families, its plateau shaded grey


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



def render_png(fig: Figure, style: TextStyle, dpi: int, metadata: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a figure; drawing happens under the style's fonts (tick labels are made then).
    `metadata` goes into PNG text chunks (visualize_results.py records which history it drew)."""
    buffer = io.BytesIO()
    with rc_context(style.rc_params()):
        fig.savefig(buffer, format="png", dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def new_figure(style: TextStyle, config: ChartConfig, height: float | None = None) -> Figure:
    return Figure(figsize=(config.width, height or config.height), layout="constrained")


def format_steps(ax) -> None:
    """Step ticks as 20K, 40K...: six-digit numbers would collide on a shared x axis."""
    def fmt(value, _pos):
        if abs(value) >= 1000:
            return f"{value / 1000:g}K"
        return f"{value:g}"
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))


def draw_note(ax, text: str, y: float = 0.5) -> None:
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va="center", color=NOTE_COLOR, fontsize=11,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})


def steps_axis(ax, style: TextStyle, log: bool = False) -> None:
    ax.set_xlabel(style.text("step_log" if log else "step"))
    if not log:
        format_steps(ax)
    ax.grid(True, alpha=0.3)


HEADLINE_ONE_LINE = 110  # characters: a longer bilingual headline puts its English half on a line of its own


def headline_text(analysis: dict | None, style: TextStyle) -> str | None:
    """The analysis' headline numbers, when an analysis with them was given: one line, or the
    Chinese and English halves on two when together they would run past the figure's edges."""
    if not isinstance(analysis, dict):
        return None
    r, steps = analysis.get("pearson_correlation"), analysis.get("total_steps")
    best = analysis.get("chosen_curve") or analysis.get("best_curve")  # an older analysis has only best_curve
    if not isinstance(r, (int, float)) or not isinstance(steps, (int, float)):
        return None
    best_key = f"curve_{best}" if isinstance(best, str) else None
    best_label = LABELS[best_key] if best_key in LABELS else ("—", "—")
    metric = analysis.get("metric")
    metric = metric.get("name") if isinstance(metric, dict) else metric
    # The charts plot training MLM accuracy; an analysis of another metric says which r it quotes.
    r_of = f" ({metric})" if isinstance(metric, str) and metric != "mlm_acc" else ""
    line = style.text("headline", steps=int(steps), r=float(r), best=best_label, r_of=r_of)
    if len(line) > HEADLINE_ONE_LINE:
        line = style.text("headline", sep="\n", steps=int(steps), r=float(r), best=best_label, r_of=r_of)
    return line


def metric_label(style: TextStyle, metric: str, sep: str = " / ") -> str:
    """A metric's axis label: its name in words where LABELS has one, else the history's key."""
    key = f"metric_{metric}"
    return style.text(key, sep=sep) if key in LABELS else metric


LEGEND_MARGIN = 0.015  # axes fraction kept clear between a legend and the nearest line or point
DENSITY = 400  # samples per axes width a line is checked at: a long straight segment crosses boxes too


def _drawn_points(ax) -> np.ndarray:
    """Every line (sampled along its segments) and point of the panel, in axes fractions."""
    to_axes = ax.transData + ax.transAxes.inverted()
    found = []
    for line in ax.get_lines():
        xy = to_axes.transform(np.asarray(line.get_xydata(), float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
            n = 2 + int(abs(x1 - x0) * DENSITY + abs(y1 - y0) * DENSITY)
            found.append(np.column_stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)]))
        found.append(xy)
    for collection in ax.collections:
        offsets = np.asarray(collection.get_offsets(), float)
        if offsets.size:
            found.append(to_axes.transform(offsets))
    return np.concatenate(found) if found else np.zeros((0, 2))


def _free_corner(points: np.ndarray, width: float, height: float) -> tuple[float, float] | None:
    """The lower-left corner (axes fractions) of a box of this size, at the right, left or centre, that keeps
    the most room between itself and the nearest drawn point (the middle of the widest gap, not a place
    squeezed against a curve); None when every such box has a point in it or within LEGEND_MARGIN."""
    m = LEGEND_MARGIN
    inside = points[(points[:, 0] >= -m) & (points[:, 0] <= 1 + m) & (points[:, 1] >= -m) & (points[:, 1] <= 1 + m)]
    best, room = None, m
    for x in (1 - width - m, m, (1 - width) / 2):
        for y in np.arange(1 - height - m, m - 1e-9, -0.01):
            dx = np.maximum(np.maximum(x - inside[:, 0], inside[:, 0] - x - width), 0)
            dy = np.maximum(np.maximum(y - inside[:, 1], inside[:, 1] - y - height), 0)
            clear = float(np.maximum(dx, dy).min()) if len(inside) else 1.0
            if clear > room + 1e-9:
                best, room = (float(x), float(y)), clear
    return best


def place_legends_clear_of_data(fig: Figure, axes) -> None:
    """Move each panel's legend (made with borderaxespad=0) where no line or point is: the highest free
    place of its measured size (right, left or centre), found from what the panel draws once the whole
    figure is laid out; where there is none, into a band added above the data (the y-axis extended by the
    legend's height, the ticks kept on the data's range)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # the layout's final sizes, which the legends are measured against
    renderer = canvas.get_renderer()
    for ax in axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box, panel = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        width, height = box.width / panel.width, box.height / panel.height
        corner = _free_corner(_drawn_points(ax), width, height)
        if corner is None:
            low, high = ax.get_ylim()
            ticks = [t for t in ax.get_yticks() if low <= t <= high]
            ax.set_ylim(low, low + (high - low) / max(0.4, 1 - height - 2 * LEGEND_MARGIN))
            ax.set_yticks(ticks)
            corner = ((1 - width) / 2, 1 - height - LEGEND_MARGIN)
        legend.set_loc("lower left")
        legend.set_bbox_to_anchor(corner, transform=ax.transAxes)


def draw_shortcut(ax, ref: dict | None, style: TextStyle, color: str = "0.25") -> bool:
    """The predicted no-context shortcut level (`shortcut_level.reference`: {key, level}) as a labelled
    horizontal reference line; nothing when there is none."""
    if not isinstance(ref, dict) or ref.get("level") is None:
        return False
    what = f"shortcut_{ref['key']}"
    ax.axhline(ref["level"], color=color, ls=(0, (4, 2, 1, 2)), lw=1.3, zorder=2,
               label=style.text("shortcut_line", sep="\n", what=LABELS[what] if what in LABELS else (ref["key"], ref["key"]),
                                level=ref["level"]))
    return True


def set_chart_title(fig: Figure, style: TextStyle, key: str, count: str, analysis: dict | None = None,
                    **values) -> None:
    """The chart's title, `count` saying how many points it draws (the caller counts what it drew), and
    the analysis' headline under it when there is one; `values` fill the title's fields."""
    lines = [f"{style.text(key, **values)} — {count}"]
    headline = headline_text(analysis, style)
    if headline:
        lines.append(headline)
    fig.suptitle("\n".join(lines), fontsize=14)

