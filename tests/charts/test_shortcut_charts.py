"""The shortcut measures in the charts: the position kinds on one panel of training_curves.png, the predicted shortcut
level as a labelled reference line on the accuracy charts, the curve charts drawing the analysed metric,
and visualize_results.py's --metric."""

import io
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import visualize_results  # noqa: E402
from bertstudy.analysis import chart_data  # noqa: E402
from bertstudy.analysis.study import analyze  # noqa: E402
from bertstudy.base.atomic_io import atomic_write_json  # noqa: E402
from bertstudy.base.errors import EXIT_USAGE  # noqa: E402
from bertstudy.charts import plots  # noqa: E402
from bertstudy.charts.fonts import TextStyle, choose_text_style  # noqa: E402
from tests.charts.test_plots import render_without_warnings  # noqa: E402
from bertstudy.analysis.history import load_history  # noqa: E402
from tests.shortcut_helpers import PLATEAU, kinds_history, kinds_history_dict  # noqa: E402

SMALL = plots.ChartConfig(width=8.0, height=5.0)
ENGLISH = TextStyle("en")
MASK_LINE = f"predicted shortcut: {PLATEAU:.3f}\n(top character at [MASK])"


def axis_titled(fig, title: str):
    found = [ax for ax in fig.axes if ax.get_title() == title]
    return found[0] if found else None


def labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def horizontal_at(ax, level: float) -> list[str]:
    return [line.get_label() for line in ax.get_lines()
            if len(set(np.asarray(line.get_ydata(), float))) == 1 and line.get_ydata()[0] == pytest.approx(level)]


def test_training_curves_draw_the_position_kinds_together_with_the_shortcut_levels(tmp_path):
    history = kinds_history(tmp_path)
    fig = plots.training_curves(history, ENGLISH, config=SMALL)
    assert len(fig.axes) == 5
    kinds = axis_titled(fig, "MLM accuracy by position kind")
    assert [label for label in labels(kinds) if "held-out" in label] == [
        "[MASK] (held-out)", "random (held-out)", "unchanged (held-out)", "all positions (held-out)"]
    assert horizontal_at(kinds, PLATEAU) == [MASK_LINE]
    overall = history.meta["shortcut"]["overall_level"]
    mlm = axis_titled(fig, "MLM accuracy (all positions)")
    assert horizontal_at(mlm, overall) == [f"predicted shortcut: {overall:.3f}\n(top character at [MASK], copy elsewhere)"]


def test_training_curves_fall_back_to_the_training_kinds_and_skip_the_panel_without_any(tmp_path):
    history = kinds_history(tmp_path, mask_level=None)
    history.eval_mask_acc = history.eval_random_acc = history.eval_unchanged_acc = np.zeros(0)
    kinds = axis_titled(plots.training_curves(history, ENGLISH, config=SMALL), "MLM accuracy by position kind")
    assert labels(kinds) == ["[MASK] (train)", "random (train)", "unchanged (train)", "all positions (train)"]
    bare = kinds_history(tmp_path, "bare.json", mask_level=None, kinds=False)
    fig = plots.training_curves(bare, ENGLISH, config=SMALL)
    assert len(fig.axes) == 4 and axis_titled(fig, "MLM accuracy by position kind") is None
    assert not any("predicted shortcut" in label for ax in fig.axes for label in labels(ax))


@pytest.mark.slow  # renders charts
def test_correlation_chart_draws_the_analysed_metric_and_its_shortcut_level(tmp_path):
    history = kinds_history(tmp_path)
    analysis = analyze(history, bootstrap=0)  # default: held-out [MASK] accuracy
    fig = plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL)
    main = fig.axes[0]
    assert main.get_ylabel() == "held-out [MASK] accuracy"
    assert horizontal_at(main, PLATEAU) == [MASK_LINE]
    assert MASK_LINE in [t.get_text() for t in main.get_legend().get_texts()]
    assert len(main.collections[0].get_offsets()) == len(history.eval_mask_acc)
    assert np.allclose(main.collections[0].get_offsets()[:, 1], history.eval_mask_acc)
    low, high = main.get_ylim()
    assert low < PLATEAU < high
    assert plots.forecast(history, ENGLISH, SMALL, analysis).axes[0].get_ylabel() == "held-out [MASK] accuracy"


@pytest.mark.slow  # renders charts
def test_the_new_labels_render_bilingual_without_missing_glyphs(tmp_path):
    style = choose_text_style("both", environ={})
    assert style.lang == "both", "no CJK font found: install fonts-noto-cjk (`make system-deps`)"
    history = kinds_history(tmp_path)
    _, warnings = render_without_warnings(plots.training_curves(history, style), style)  # the script's size
    assert warnings == []


@pytest.mark.slow  # renders charts
def test_visualize_metric_without_and_with_an_analysis(tmp_path, capsys):
    history = kinds_history(tmp_path)
    parse = visualize_results.build_parser().parse_args
    drawn = visualize_results.curve_analysis(parse([history.path]), history)["chart_data"]
    assert drawn["metric"] == "eval_mask_acc" and drawn["shortcut"]["key"] == "mask_level"
    drawn = visualize_results.curve_analysis(parse([history.path, "--metric", "mlm_acc"]), history)["chart_data"]
    assert drawn["metric"] == "mlm_acc" and drawn["shortcut"]["key"] == "overall_level"
    path = tmp_path / "analysis.json"
    atomic_write_json(path, analyze(history, bootstrap=0))
    args = [history.path, "--analysis", str(path), "--out-dir", str(tmp_path / "charts"), "--lang", "en"]
    assert visualize_results.main(args + ["--metric", "mlm_acc"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--metric mlm_acc: the analysis" in err and "draws eval_mask_acc" in err
    assert chart_data.chart_data_of(visualize_results.read_json(path), path, history)["metric"] == "eval_mask_acc"


def test_long_bilingual_labels_keep_the_panels_evenly_spaced_and_the_title_on_the_figure(tmp_path):
    """A quickstart-sized run analysed on held-out [MASK] accuracy, drawn in both languages: the
    headline, the axis label, the panels' legends and the 'band cut' notes are long; the forecast
    panels keep equal gaps and the training chart's title stays inside the figure."""
    style = choose_text_style("both")
    if style.lang != "both":
        pytest.skip("no CJK font: the bilingual labels are what is long")
    obj = kinds_history_dict(n=12)  # 12 noisy held-out points, as a quickstart has: wide bands, cut
    noise = 0.004 * np.random.default_rng(1).standard_normal(12)
    obj["eval_mask_acc"] = (0.05 + noise + np.linspace(0, 0.006, 12)).tolist()
    (tmp_path / "h.json").write_text(json.dumps(obj), encoding="utf-8")
    history = load_history(tmp_path / "h.json")
    analysis = analyze(history, "eval_mask_acc", bootstrap=0)
    fig = plots.forecast(history, style, analysis=analysis)
    fig.savefig(io.BytesIO(), format="png", dpi=200)  # the layout as the PNG gets it (it is redone per dpi)
    boxes = sorted((ax.get_position() for ax in fig.axes if ax.get_title()), key=lambda box: box.x0)
    gaps = [right.x0 - left.x1 for left, right in zip(boxes, boxes[1:])]
    assert len(gaps) == 3 and max(gaps) - min(gaps) < 0.005, gaps
    title_fig = plots.training_curves(history, style, analysis=analysis)
    title_fig.canvas.draw()
    extent = title_fig._suptitle.get_window_extent()
    width = title_fig.get_figwidth() * title_fig.dpi
    assert extent.x0 >= 0 and extent.x1 <= width, (extent.x0, extent.x1, width)
