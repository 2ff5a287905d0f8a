"""The curve charts draw the analysis' chart data and fit nothing: the segmented fit and the plateau's span
with its intervals, the flat end, the chosen curve starred (the one the title names), a phase-model forecast
panel, the forecast panels' ticks and gaps; end to end through analyze_100k.py and visualize_results.py on
the committed CPU-tier history."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import analyze_100k  # noqa: E402
import visualize_results  # noqa: E402
from bertstudy.analysis import chart_data, curves, phases  # noqa: E402
from bertstudy.charts import plots  # noqa: E402
from bertstudy.analysis.study import analyze  # noqa: E402
from bertstudy.base.atomic_io import read_json  # noqa: E402
from bertstudy.charts.fonts import TextStyle  # noqa: E402
from bertstudy.analysis.history import History, load_history  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
CPU_TIER = ROOT / "tests" / "data" / "cpu_tier_seed42_history.json"  # a real run, pinned
ORIGINAL = ROOT / "tests" / "data" / "original_training_history_100k.json"
SMALL = plots.ChartConfig(width=8.0, height=5.0)
ENGLISH = TextStyle("en")
pytestmark = pytest.mark.slow  # each test fits the curves of a real or synthetic history and renders charts


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


def drawn(history, analysis=None):
    return {**(analysis or {}), "chart_data": chart_data.for_series(history.steps, history.mlm_acc)}


def test_correlation_chart_draws_the_segmented_fit_and_the_plateau_with_its_intervals():
    history = two_phase_history()
    analysis = analyze(history, bootstrap=30)
    plateau = analysis["phases"]["plateau"]
    assert analysis["chart_data"]["plateau"] == plateau  # the chart data carries the analysis' own plateau
    fig = plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL)
    main = fig.axes[0]
    assert any(t.startswith("phase model (piecewise linear in ln step)") for t in legend_texts(main))
    drawn_spans = spans(main)
    assert (pytest.approx(plateau["start_step"]), pytest.approx(plateau["end_step"])) in drawn_spans
    for key in ("start_step_ci", "end_step_ci"):  # the analysis' own intervals, shaded darker
        assert (pytest.approx(plateau[key][0]), pytest.approx(plateau[key][1])) in drawn_spans
    assert len(main.get_lines()) == 4  # three families and the phase model


def test_without_an_analysis_the_plateau_is_drawn_without_intervals():
    history = two_phase_history()
    fig = plots.correlation_analysis(history, ENGLISH, drawn(history), config=SMALL)
    texts = legend_texts(fig.axes[0])
    assert any(t.startswith("plateau: steps") for t in texts)
    assert not any(t.startswith("95% interval of the plateau") for t in texts) and len(spans(fig.axes[0])) == 1


def test_no_plateau_no_plateau_drawing_but_the_flat_end_is_marked():
    history = load_history(ORIGINAL)
    data = drawn(history)["chart_data"]
    # the original's three-break fit has no flat run between two rises; its last segment, from step 77,700, is flat
    assert data["plateau"] is None and data["final_flat"]["start_step"] == pytest.approx(77_700, rel=1e-3)
    fig = plots.correlation_analysis(history, ENGLISH, {"chart_data": data}, config=SMALL)
    flat = [(pytest.approx(data["final_flat"]["start_step"]), pytest.approx(100_000.0))]
    assert spans(fig.axes[0]) == flat and len(fig.axes[0].get_lines()) == 4  # three families, the phase fit
    assert not any(t.startswith("plateau") for t in legend_texts(fig.axes[0]))
    assert all(spans(ax) == flat for ax in plots.forecast(history, ENGLISH, config=SMALL,
                                                          analysis={"chart_data": data}).axes)


def test_forecast_chart_has_a_phase_model_panel_and_shades_the_plateau_everywhere():
    history = two_phase_history()
    fig = plots.forecast(history, ENGLISH, config=SMALL, analysis=drawn(history))
    *families, phase_panel = fig.axes
    assert phase_panel.get_title() == "phase model" and legend_texts(phase_panel)[0].startswith("MAE=")
    assert all(len(spans(ax)) == 1 for ax in fig.axes)  # the plateau, no intervals without an analysis
    assert len(phase_panel.get_lines()) == 3  # split line, fitted part, extrapolated last segment


def test_the_charts_fit_nothing(monkeypatch):
    history = two_phase_history()
    analysis = analyze(history, bootstrap=0)

    def no_fit(*args, **kwargs):
        raise AssertionError("a chart fitted a curve")

    for module, name in ((curves, "fit_curve"), (curves, "fit_all_curves"), (curves, "forecast_check"),
                         (phases, "fit_segmented"), (phases, "detect_phases"), (phases, "fit_best_segmented")):
        monkeypatch.setattr(module, name, no_fit)
    plots.all_charts(history, ENGLISH, analysis=analysis, config=SMALL)


def test_the_chart_marks_exactly_the_plateau_the_analysis_json_holds():
    history = two_phase_history()
    analysis = analyze(history, bootstrap=0)
    analysis["chart_data"]["plateau"] = {**analysis["chart_data"]["plateau"], "start_step": 1234.0, "end_step": 3456.0}
    for fig in (plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL),
                plots.forecast(history, ENGLISH, config=SMALL, analysis=analysis)):
        assert (pytest.approx(1234.0), pytest.approx(3456.0)) in spans(fig.axes[0])


def test_one_name_for_the_chosen_curve_in_the_json_title_and_legend():
    history = two_phase_history()
    analysis = analyze(history, bootstrap=0)
    assert analysis["chosen_curve"] == "phases" and analysis["best_curve"] != "phases"  # they differ here
    assert "smallest raw AIC" in analysis["best_curve_is"] and analysis["chart_data"]["chosen_curve"] == "phases"
    fig = plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL)
    assert "chosen curve: phase model" in fig.get_suptitle() and "best curve" not in fig.get_suptitle()
    starred = [t for t in legend_texts(fig.axes[0]) if "★" in t]
    assert len(starred) == 1 and starred[0].startswith("phase model") and starred[0].endswith("★ chosen")


def test_a_run_that_ends_flat_says_so_in_the_json_and_the_chart():
    steps = np.linspace(20, 6_000, 300).round().astype(np.int64)
    u = np.log(steps)  # rise, plateau, second rise, then flat to the end (the quickstart's shape)
    acc = (0.02 + 0.03 * u - 0.03 * np.maximum(u - np.log(300), 0) + 0.08 * np.maximum(u - np.log(1_000), 0)
           - 0.08 * np.maximum(u - np.log(2_500), 0) + np.random.default_rng(1).normal(0, 0.002, 300))
    empty = np.zeros(0)
    history = History(path="ends_flat.json", source_format="ours", steps=steps, mlm_acc=acc, nsp_acc=empty,
                      loss=empty, lr=empty)
    analysis = analyze(history, bootstrap=0)
    flat = analysis["phases"]["final_flat"]
    assert flat is not None and 2_000 < flat["start_step"] < 3_200 and flat["end_step"] == 6_000
    assert analysis["phases"]["plateau"]["end_step"] < flat["start_step"]  # the plateau is the earlier one
    fig = plots.correlation_analysis(history, ENGLISH, analysis, config=SMALL)
    assert any(t.startswith(f"flat end: from step {flat['start_step']:,.0f}") for t in legend_texts(fig.axes[0]))
    assert (pytest.approx(flat["start_step"]), pytest.approx(6_000.0)) in spans(fig.axes[0])


def test_forecast_panels_have_distinct_uncrowded_ticks_and_equal_gaps():
    steps = np.arange(10, 1_210, 10)  # the quickstart's length: the default locator put 7 labels (0 to 1.2K) per panel
    acc = 0.05 + 0.02 * np.log(steps) + np.random.default_rng(2).normal(0, 0.003, len(steps))
    empty = np.zeros(0)
    history = History(path="q.json", source_format="ours", steps=steps, mlm_acc=acc, nsp_acc=empty, loss=empty,
                      lr=empty)
    fig = plots.forecast(history, ENGLISH, analysis=drawn(history))  # the chart's real size
    with rc_context(ENGLISH.rc_params()):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0]
                  <= ax.get_xlim()[1]]
        texts = [t.get_text() for t in labels]
        assert len(texts) == len(set(texts)) and len(texts) <= 5, texts
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        assert all(a.x1 + 4 < b.x0 for a, b in zip(boxes, boxes[1:])), texts  # at least 4 px apart
    edges = [ax.get_position() for ax in fig.axes]
    gaps = [b.x0 - a.x1 for a, b in zip(edges, edges[1:])]
    assert max(gaps) - min(gaps) < 0.002, gaps


def test_chart_data_follows_the_analysed_metric_and_is_checked_against_it():
    history = two_phase_history()
    history.eval_steps, history.eval_mlm_acc = history.steps[::10], history.mlm_acc[::10] - 0.01
    analysis = analyze(history, "eval_mlm_acc", bootstrap=0)
    data = analysis["chart_data"]
    assert data["metric"] == "eval_mlm_acc" and data["n_points"] == 30
    assert chart_data.chart_data_of(analysis, "a.json", history) is data
    history.eval_mlm_acc = history.eval_mlm_acc + 0.01
    with pytest.raises(Exception, match="a.json: its chart data is of another history's eval_mlm_acc"):
        chart_data.chart_data_of(analysis, "a.json", history)
    history.eval_mlm_acc = np.zeros(0)
    with pytest.raises(Exception, match="draws 'eval_mlm_acc', which two_phase.json does not have"):
        chart_data.chart_data_of(analysis, "a.json", history)
    older = {**data, "metric": None}  # chart data written before it named its metric: training MLM accuracy
    data = chart_data.for_series(history.steps, history.mlm_acc)
    assert chart_data.chart_data_of({"chart_data": {**data, "metric": None}}, "a.json", history)["n_points"] == 300
    assert older["data_sha256"] != data["data_sha256"]


def test_end_to_end_on_the_committed_history(tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert analyze_100k.main([str(CPU_TIER), "--out", str(out), "--bootstrap", "30"]) == 0
    report = capsys.readouterr().out
    assert "plateau from step 580 [" in report and "to step 1,950 [" in report
    assert visualize_results.main([str(CPU_TIER), "--analysis", str(out), "--out-dir", str(tmp_path / "charts"),
                                   "--dpi", "150", "--lang", "en"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "charts").glob("*.png")) == sorted(plots.CHART_FILES)
    analysis = read_json(out)
    fig = plots.correlation_analysis(load_history(CPU_TIER), ENGLISH, analysis, config=SMALL)
    assert any("plateau: steps 580 to 1,950" in t for t in legend_texts(fig.axes[0]))
