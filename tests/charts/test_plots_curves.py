"""The phase model in the charts: the segmented fit and the plateau's span with its intervals in the
correlation chart, a phase-model forecast panel and the shaded plateau in the forecast chart; end to
end through analyze_100k.py and visualize_results.py on the committed CPU-tier history."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import analyze_100k  # noqa: E402
import visualize_results  # noqa: E402
from bertstudy.charts import plots, curves as plots_curves  # noqa: E402
from bertstudy.analysis.study import analyze  # noqa: E402
from bertstudy.base.atomic_io import read_json  # noqa: E402
from bertstudy.charts.fonts import TextStyle  # noqa: E402
from bertstudy.analysis.history import History, load_history  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
CPU_TIER = ROOT / "results" / "training_history_100k.json"
ORIGINAL = ROOT / "tests" / "data" / "original_training_history_100k.json"
SMALL = plots.ChartConfig(width=8.0, height=5.0)
ENGLISH = TextStyle("en")


def two_phase_history(n=300) -> History:
    steps = np.linspace(20, 6_000, n).round().astype(np.int64)
    u = np.log(steps)
    acc = 0.02 + 0.03 * u - 0.03 * np.maximum(u - np.log(500), 0) + 0.08 * np.maximum(u - np.log(2_500), 0)
    acc = acc + np.random.default_rng(0).normal(0, 0.003, n)
    empty = np.zeros(0)
    return History(path="two_phase.json", source_format="ours", steps=steps, mlm_acc=acc, nsp_acc=empty,
                   loss=empty, lr=empty)


def spans(ax) -> list[tuple[float, float]]:
    """The x extents of the vertical spans (axvspan) drawn on an axis."""
    out = []
    for patch in ax.patches:
        if isinstance(patch, Rectangle):
            out.append((patch.get_x(), patch.get_x() + patch.get_width()))
        else:
            xs = patch.get_xy()[:, 0]
            out.append((float(xs.min()), float(xs.max())))
    return out


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_correlation_chart_draws_the_segmented_fit_and_the_plateau_with_its_intervals():
    history = two_phase_history()
    analysis = analyze(history, bootstrap=30)
    plateau = analysis["phases"]["plateau"]
    fig = plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL)
    main = fig.axes[0]
    assert any(t.startswith("phase model (piecewise linear in ln step)") for t in legend_texts(main))
    drawn = spans(main)
    assert (pytest.approx(plateau["start_step"]), pytest.approx(plateau["end_step"])) in drawn
    for key in ("start_step_ci", "end_step_ci"):  # the analysis' own intervals, shaded darker
        assert (pytest.approx(plateau[key][0]), pytest.approx(plateau[key][1])) in drawn
    assert len(main.get_lines()) == 4  # three families and the phase model


def test_without_an_analysis_the_plateau_is_drawn_without_intervals():
    fig = plots.correlation_analysis(two_phase_history(), ENGLISH, config=SMALL)
    texts = legend_texts(fig.axes[0])
    assert any(t.startswith("plateau: steps") for t in texts)
    assert not any(t.startswith("95% interval of the plateau") for t in texts) and len(spans(fig.axes[0])) == 1


def test_no_plateau_no_phase_drawing():
    history = load_history(ORIGINAL)
    fig = plots.correlation_analysis(history, ENGLISH, config=SMALL)
    assert len(fig.axes[0].get_lines()) == 3 and spans(fig.axes[0]) == []
    assert all(spans(ax) == [] for ax in plots.forecast(history, ENGLISH, config=SMALL).axes)


def test_forecast_chart_has_a_phase_model_panel_and_shades_the_plateau_everywhere():
    history = two_phase_history()
    fig = plots.forecast(history, ENGLISH, config=SMALL)
    *families, phase_panel = fig.axes
    assert phase_panel.get_title() == "phase model" and legend_texts(phase_panel)[0].startswith("MAE=")
    assert all(len(spans(ax)) == 1 for ax in fig.axes)  # the plateau, no intervals without an analysis
    assert len(phase_panel.get_lines()) == 3  # split line, fitted part, extrapolated last segment


def test_phase_model_from_an_analysis_of_another_metric_is_refitted():
    history = two_phase_history()
    positive = history.steps > 0
    x, y = history.steps[positive].astype(float), history.mlm_acc[positive]
    other = {"metric": {"name": "eval_mlm_acc"}, "phases": {"plateau": {"start_step": 1.0}}, "curve_points": {"n": 300}}
    assert plots_curves.phase_model(x, y, other)["plateau"]["start_step"] > 100


def test_end_to_end_on_the_committed_history(tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert analyze_100k.main([str(CPU_TIER), "--out", str(out), "--bootstrap", "30"]) == 0
    report = capsys.readouterr().out
    assert "plateau from step 429 [" in report and "to step 2,513 [" in report
    assert visualize_results.main([str(CPU_TIER), "--analysis", str(out), "--out-dir", str(tmp_path / "charts"),
                                   "--dpi", "150", "--lang", "en"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "charts").glob("*.png")) == sorted(plots.CHART_FILES)
    analysis = read_json(out)
    fig = plots.correlation_analysis(load_history(CPU_TIER), ENGLISH, analysis, config=SMALL)
    assert any("plateau: steps 429 to 2,513" in t for t in legend_texts(fig.axes[0]))
