"""The charts say what they plot: titles count the points drawn, legends sit where no line or point is,
and the one-run summary leads with held-out [MASK] accuracy and names every figure it shows."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from bertstudy.analysis import chart_data
from bertstudy.charts import plots
from bertstudy.charts.fonts import TextStyle
from bertstudy.charts.style import _drawn_points, _free_corner
from tests.shortcut_helpers import kinds_history

pytestmark = pytest.mark.slow  # rendered charts
SMALL = plots.ChartConfig(width=10.0, height=6.0)
ENGLISH = TextStyle("en")


def with_chart_data(history) -> dict:
    steps, values = history.metric("eval_mask_acc")
    return {"chart_data": chart_data.for_series(steps, values, metric="eval_mask_acc")}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return kinds_history(tmp_path_factory.mktemp("kinds"), eval_every=10)  # 300 training points, 30 evals


def legend_box(ax):
    """The legend's box in the panel's axes fractions, as drawn."""
    renderer = FigureCanvasAgg(ax.figure).get_renderer()
    ax.figure.draw(renderer)
    return ax.get_legend().get_window_extent(renderer).transformed(ax.transAxes.inverted())


def test_titles_count_the_points_each_chart_draws(history):
    charts = plots.all_charts(history, ENGLISH, analysis=with_chart_data(history), config=SMALL)
    assert "300 training points, 30 held-out points" in charts["training_curves.png"].get_suptitle()
    correlation = charts["correlation_analysis.png"].get_suptitle()
    assert correlation.startswith("Training steps vs held-out [MASK] accuracy — 30 points")
    assert "30 points (15 fitted, 15 predicted)" in charts["forecast.png"].get_suptitle()
    assert "300 points" in charts["loss_analysis.png"].get_suptitle()


@pytest.mark.parametrize("title", ["MLM accuracy (all positions)", "MLM accuracy by position kind", "loss"])
def test_training_legends_cover_no_line_or_point(history, title):
    fig = plots.training_curves(history, ENGLISH, config=SMALL)
    ax = next(a for a in fig.axes if a.get_title() == title)
    box = legend_box(ax)
    assert 0 <= box.x0 and box.x1 <= 1 + 1e-6 and 0 <= box.y0 and box.y1 <= 1 + 1e-6  # inside its panel
    points = _drawn_points(ax)
    inside = (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
    assert not inside.any(), f"{inside.sum()} drawn points under the legend of '{title}'"


def test_the_free_place_is_the_middle_of_the_widest_gap_or_none():
    # a line along y=0.1 and one along y=0.9: a box of height 0.2 goes midway, at the right
    xs = np.linspace(0, 1, 50)
    points = np.concatenate([np.column_stack([xs, np.full(50, 0.1)]), np.column_stack([xs, np.full(50, 0.9)])])
    x, y = _free_corner(points, 0.3, 0.2)
    assert x == pytest.approx(1 - 0.3 - 0.015) and y + 0.1 == pytest.approx(0.5, abs=0.011)
    crowded = np.column_stack([np.repeat(xs, 50), np.tile(xs, 50)])  # points everywhere
    assert _free_corner(crowded, 0.3, 0.2) is None


def test_the_run_summary_leads_with_held_out_mask_accuracy_and_names_its_figures(history):
    fig = plots.run_comparison([("this run", history)], ENGLISH, config=SMALL)
    curves, bars, losses = fig.axes
    assert curves.get_title() == "held-out [MASK] accuracy"
    assert [list(line.get_ydata()) for line in curves.get_lines()] == [list(history.eval_mask_acc)]
    assert [t.get_text() for t in bars.get_xticklabels()] == [
        "final held-out\n[MASK] accuracy", "best held-out\n[MASK] accuracy", "final training MLM\nacc. (all positions)"]
    assert [p.get_height() for p in bars.patches] == pytest.approx(
        [history.eval_mask_acc[-1], history.eval_mask_acc.max(), history.mlm_acc[-1]])
    assert losses.get_title() == "final training loss"
    history_without = kinds_history_without_mask(history)
    old = plots.run_comparison([("original", history_without)], ENGLISH, config=SMALL)
    assert old.axes[0].get_title() == "training MLM accuracy (all positions)"
    assert [t.get_text() for t in old.axes[1].get_xticklabels()][0] == "mean training MLM\nacc. (all positions)"


def kinds_history_without_mask(history):
    """The same run as a history without held-out [MASK] accuracy (the original study's)."""
    from dataclasses import replace

    return replace(history, eval_mask_acc=np.zeros(0))
