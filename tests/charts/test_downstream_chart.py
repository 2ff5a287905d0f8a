"""downstream.png's legibility: legends sit under the panels, off the baseline lines; step labels of
close checkpoints are merged, so no two labels overlap (the committed CPU-tier downstream file).
Points with per-layer scores add a score-by-layer-and-step panel; a file without them draws as before."""

import copy
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from bertstudy.charts.fonts import TextStyle  # noqa: E402
from bertstudy.charts.downstream_chart import downstream_chart, layer_grid, step_groups  # noqa: E402
from bertstudy.downstream.mlm_vs_score import chart_correlations, load_downstream  # noqa: E402

DOWNSTREAM = Path(__file__).resolve().parent.parent / "data" / "cpu_tier_seed42_downstream.json"  # a real pass, pinned
ENGLISH = TextStyle("en")


def drawn():
    doc = load_downstream(DOWNSTREAM)
    fig = downstream_chart(doc, chart_correlations(doc), ENGLISH)
    with rc_context(ENGLISH.rc_params()):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
    return fig, canvas.get_renderer()


def test_legends_cover_no_baseline_line():
    fig, renderer = drawn()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        for line in ax.get_lines():
            ys = set(line.get_ydata())
            if len(ys) != 1:  # a baseline is a horizontal line
                continue
            y_px = ax.transData.transform((0, ys.pop()))[1]
            box = ax.get_window_extent(renderer)
            assert box.y0 <= y_px <= box.y1 and not legend.y0 <= y_px <= legend.y1, line.get_label()


def test_step_labels_do_not_overlap():
    fig, renderer = drawn()
    by_mlm = fig.axes[1::2]
    for ax in by_mlm:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) >= 3
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), (a, b)
    labels = [t.get_text() for t in by_mlm[0].texts]
    assert labels[0].startswith("0-")  # the untrained checkpoints (held-out accuracy 0) share one label


def test_step_groups_merge_only_close_points():
    points = [{"step": s, "heldout_mlm_acc": x, "score": y} for s, x, y in
              [(0, 0.0, 0.5), (1, 0.0, 0.5), (10, 0.001, 0.501), (100, 0.5, 0.7), (200, 1.0, 0.9)]]
    groups = step_groups(points, 1.0, 0.4)
    assert [[p["step"] for p in g] for g in groups] == [[0, 1, 10], [100], [200]]


def with_layers(doc: dict, depth: int = 4) -> dict:
    """The pinned pass with planted per-layer scores: layer i of a point scores score + 0.01 (depth - 1 - i),
    the embedding output best, the last layer its score (the shape of a per-layer pass)."""
    doc = copy.deepcopy(doc)
    for task in doc["tasks"].values():
        for point in task["points"]:
            point["layers"] = [{"layer": i, "score": point["score"] + 0.01 * (depth - 1 - i)} for i in range(depth)]
            point["best_layer"] = {"layer": 0, "score": point["layers"][0]["score"]}
    return doc


def draw(doc: dict):
    fig = downstream_chart(doc, chart_correlations(doc), ENGLISH)
    with rc_context(ENGLISH.rc_params()):
        FigureCanvasAgg(fig).draw()
    return fig


def test_a_pass_without_layers_draws_as_before():
    fig = draw(load_downstream(DOWNSTREAM))
    assert len(fig.axes) == 4 and not any(ax.images for ax in fig.axes)  # two tasks x two panels, no heatmap


def test_points_with_layers_add_a_score_by_layer_and_step_panel():
    doc = with_layers(load_downstream(DOWNSTREAM))
    fig = draw(doc)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2 and len(fig.axes) == 2 * 3 + 2  # a third panel per task, each with its colour bar
    for ax, task in zip(heatmaps, doc["tasks"].values()):
        steps, grid = layer_grid(task["points"])
        assert np.array_equal(np.asarray(ax.images[0].get_array()), grid)
        assert grid.shape == (4, len(task["points"])) and steps == sorted(p["step"] for p in task["points"])
        best = ax.get_lines()[0]  # each checkpoint's best layer marked: the embedding output here
        assert list(best.get_xdata()) == list(range(len(steps))) and set(best.get_ydata()) == {0}
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{s:g}" for s in steps]


def test_a_task_without_layers_beside_one_with_them_says_so():
    doc = with_layers(load_downstream(DOWNSTREAM))
    for point in doc["tasks"]["sentiment"]["points"]:
        del point["layers"]
    fig = draw(doc)
    assert sum(1 for ax in fig.axes if ax.images) == 1
    assert any(t.get_text() == "no per-layer scores" for ax in fig.axes for t in ax.texts)


def test_layer_grid_by_hand():
    points = [{"step": 10, "score": 0.6, "layers": [{"layer": 0, "score": 0.7}, {"layer": 1, "score": 0.6}]},
              {"step": 0, "score": 0.5, "layers": [{"layer": 0, "score": 0.5}]},  # a shallower model: layer 1 blank
              {"step": 5, "score": 0.55}]  # no layers: left out
    steps, grid = layer_grid(points)
    assert steps == [0, 10]
    np.testing.assert_array_equal(grid, [[0.5, 0.7], [np.nan, 0.6]])
