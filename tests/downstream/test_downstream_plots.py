"""downstream.png's legibility: legends sit under the panels, off the baseline lines; step labels of
close checkpoints are merged, so no two labels overlap (the committed CPU-tier downstream file)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from bertstudy.charts.fonts import TextStyle  # noqa: E402
from bertstudy.downstream.analysis import load_downstream  # noqa: E402
from bertstudy.downstream.plots import downstream_chart, step_groups  # noqa: E402

DOWNSTREAM = Path(__file__).resolve().parent.parent / "data" / "cpu_tier_seed42_downstream.json"  # a real pass, pinned
ENGLISH = TextStyle("en")


def drawn():
    fig = downstream_chart(load_downstream(DOWNSTREAM), ENGLISH)
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
