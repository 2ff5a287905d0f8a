"""plots.py: each chart returns a Figure with its panels, on synthetic data and on the original
study's history; the notes that replace curves where data is missing; no tofu with the CJK font."""

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from bertstudy.charts import fonts, plots  # noqa: E402
from bertstudy.charts.fonts import TextStyle, choose_text_style  # noqa: E402
from bertstudy.analysis import chart_data  # noqa: E402
from bertstudy.analysis.history import History, load_history  # noqa: E402

ORIGINAL_HISTORY = Path(__file__).parent.parent / "data" / "original_training_history_100k.json"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
AXES_PER_CHART = {"training_curves.png": 4, "correlation_analysis.png": 4, "run_summary.png": 3,
                  "comparison_50k_100k.png": 3, "loss_analysis.png": 3, "forecast.png": 4}
SMALL = plots.ChartConfig(width=8.0, height=5.0)  # smaller canvases render faster; layout code is the same
FAST_DPI = 60  # for "it still renders" checks; the 150-300 dpi range is the script's, tested there


def synthetic_history(n=200, total=20000, seed=0, held_out=True, path="synthetic.json") -> History:
    """A history shaped like a BERT run: saturating MLM accuracy, NSP rising from chance, decaying
    loss, warm-up then linear-decay learning rate, and (optionally) a held-out evaluation."""
    rng = np.random.default_rng(seed)
    steps = np.linspace(total / n, total, n).round().astype(np.int64)
    mlm = np.clip(0.62 - 0.5 * (steps / steps[0]) ** -0.35 + rng.normal(0, 0.012, n), 0, 1)
    nsp = np.clip(0.5 + 0.45 * (1 - np.exp(-steps / (total / 6))) + rng.normal(0, 0.02, n), 0, 1)
    loss = 7.5 * (steps / steps[0]) ** -0.12 + rng.normal(0, 0.08, n)
    warm = total // 10
    lr = np.where(steps < warm, 1e-4 * steps / warm, 1e-4 * (total - steps) / (total - warm) + 1e-7)
    eval_steps = steps[9::10] if held_out else np.zeros(0, np.int64)
    idx = np.searchsorted(steps, eval_steps)
    return History(
        path=path, source_format="ours", steps=steps, mlm_acc=mlm, nsp_acc=nsp, loss=loss, lr=lr,
        series={"mlm_loss": loss * 0.9, "nsp_loss": loss * 0.1} if held_out else {},
        eval_steps=eval_steps, eval_mlm_acc=mlm[idx] - 0.01, eval_nsp_acc=nsp[idx] - 0.02,
        eval_mlm_loss=loss[idx] * 0.9 + 0.05, meta={"total_steps": total} if held_out else {},
    )


def with_chart_data(history: History, analysis: dict | None = None, train_fraction: float = 0.5) -> dict:
    """`analysis` (default: none) with the chart data of `history`, as visualize_results.py draws without --analysis."""
    return {**(analysis or {}), "chart_data": chart_data.for_series(history.steps, history.mlm_acc, train_fraction)}


@pytest.fixture(scope="module")
def bilingual():
    style = choose_text_style("both", environ={})
    assert style.lang == "both", "no CJK font found: install fonts-noto-cjk (`make system-deps`)"
    return style


@pytest.fixture(scope="module")
def english():
    return TextStyle(lang="en")


def figure_texts(fig: Figure) -> list[str]:
    """Every string in the figure (titles, labels, legends, notes; tick labels once it was rendered)."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def all_texts(fig: Figure) -> str:
    return "\n".join(figure_texts(fig))


def render_without_warnings(fig: Figure, style: TextStyle) -> tuple[bytes, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = plots.render_png(fig, style, dpi=150)
    return png, [str(w.message) for w in caught]


@pytest.mark.slow  # renders charts
def test_each_chart_has_its_panels_on_synthetic_data(bilingual):
    history = synthetic_history()
    charts = plots.all_charts(history, bilingual, analysis=with_chart_data(history), config=SMALL)
    assert list(charts) == list(plots.CHART_FILES)
    for name, fig in charts.items():
        assert isinstance(fig, Figure), name
        assert len(fig.axes) == AXES_PER_CHART[name], name
        assert fig.get_suptitle(), name
    mlm, nsp, loss, lr = charts["training_curves.png"].axes
    assert lr.get_yscale() == "log"
    assert any(abs(line.get_ydata()[0] - 0.5) < 1e-12 for line in nsp.get_lines()), "no 50% chance line"
    assert len(mlm.get_lines()) == 2  # train and held-out
    assert len(loss.get_lines()) == 4  # loss, mlm_loss, nsp_loss, held-out MLM loss
    fit_panel = charts["correlation_analysis.png"].axes[0]
    legend = "\n".join(t.get_text() for t in fit_panel.get_legend().get_texts())
    assert "Pearson r = " in legend and "Spearman ρ = " in legend
    assert len(fit_panel.get_lines()) == 3  # one line per fitted curve
    assert "★" in legend  # the best curve is marked
    *family_axes, phase_axis = charts["forecast.png"].axes
    for ax in family_axes:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("MAE=") for t in texts) and len(ax.collections) >= 3  # 2 scatters + band
    assert phase_axis.get_title() == "阶段模型 / phase model"  # the phase model forecast: no band, an MAE
    assert [t.get_text() for t in phase_axis.get_legend().get_texts()][0].startswith("MAE=")
    assert charts["loss_analysis.png"].axes[2].get_xscale() == "log"


@pytest.mark.slow  # renders charts
def test_residual_panels_share_one_scale_and_the_best_curve_leaves_the_smallest(bilingual):
    history = synthetic_history(n=300)
    fig = plots.correlation_analysis(history, bilingual, with_chart_data(history), config=SMALL)
    residual_axes = fig.axes[1:]
    assert len({ax.get_ylim() for ax in residual_axes}) == 1
    spread = {}
    for ax, name in zip(residual_axes, ("linear", "log_linear", "power_saturating")):
        residuals = np.asarray(ax.collections[0].get_offsets())[:, 1]
        spread[name] = float(np.sqrt(np.mean(residuals ** 2)))
    # The data are a saturating power law plus noise of sd 0.012: that curve's residuals are the noise.
    assert spread["power_saturating"] < spread["log_linear"] < spread["linear"]
    assert spread["power_saturating"] == pytest.approx(0.012, rel=0.3)


@pytest.mark.slow  # renders charts
def test_headline_from_the_analysis_goes_into_the_titles(bilingual, english):
    history = synthetic_history()
    analysis = {"total_steps": 20000, "pearson_correlation": 0.8123, "best_curve": "power_saturating"}
    fig = plots.training_curves(history, bilingual, analysis, config=SMALL)
    title = fig.get_suptitle()
    assert "皮尔逊 r = 0.812" in title and "20,000 steps, Pearson r = 0.812, chosen curve: saturating power" in title
    assert "饱和幂律" in title
    fig = plots.correlation_analysis(history, english, with_chart_data(history, {"total_steps": "x"}), config=SMALL)
    assert "\n" not in fig.get_suptitle()  # an analysis without the numbers adds no headline


def test_headline_names_the_metric_when_the_analysis_is_not_of_training_accuracy(english):
    analysis = {"total_steps": 20000, "pearson_correlation": 0.5, "best_curve": None,
                "metric": {"name": "eval_mlm_acc", "description": "held-out"}}
    short = synthetic_history(n=40)
    title = plots.forecast(short, english, config=SMALL, analysis=with_chart_data(short, analysis)).get_suptitle()
    assert "\n" not in title  # the forecast chart takes no analysis
    title = plots.training_curves(synthetic_history(n=40), english, analysis, config=SMALL).get_suptitle()
    assert "Pearson r (eval_mlm_acc) = 0.500, chosen curve (eval_mlm_acc): —" in title


@pytest.mark.slow  # renders charts
def test_a_step_zero_point_is_left_out_of_the_fits_as_in_the_analysis(english):
    history = synthetic_history(n=80)
    history.steps = np.concatenate([[0], history.steps[1:]])  # an evaluation of the untrained model
    fig = plots.correlation_analysis(history, english, with_chart_data(history), config=SMALL)
    assert len(fig.axes[0].get_lines()) == 3  # log-linear and power fits need step > 0: still drawn
    assert len(fig.axes[0].collections[0].get_offsets()) == 80  # ...while the scatter shows every point
    assert all(len(ax.collections[0].get_offsets()) == 79 for ax in fig.axes[1:])
    forecast = plots.forecast(history, english, config=SMALL, analysis=with_chart_data(history))
    assert all(ax.get_legend() is not None for ax in forecast.axes)  # every curve forecast (MAE legend)


@pytest.mark.slow  # renders charts
def test_no_missing_glyph_warning_and_every_drawn_chinese_character_is_in_the_font(bilingual):
    history = synthetic_history()
    cmaps = [fonts.font_cmap(path, index) for path, index in bilingual.cjk_font.faces]
    for name, fig in plots.all_charts(history, bilingual, analysis=with_chart_data(history), config=SMALL).items():
        png, caught = render_without_warnings(fig, bilingual)
        assert png.startswith(b"\x89PNG"), name
        assert not [m for m in caught if "missing from" in m or "Glyph" in m], (name, caught)
        drawn = all_texts(fig)
        assert CJK.search(drawn), f"{name}: no Chinese text drawn"
        for ch in set(CJK.findall(drawn)):
            assert all(ord(ch) in cmap for cmap in cmaps), f"{name}: {ch!r} not in {bilingual.cjk_font.family}"


def test_the_missing_glyph_check_above_can_fail():
    # Chinese drawn with a Latin-only font does warn: the check in the test above is not vacuous.
    latin = fonts.find_cjk_font(["DejaVu Sans"], required_text="MLM", environ={})
    forced = TextStyle(lang="both", cjk_font=latin)
    fig = plots.loss_analysis(synthetic_history(n=40), forced, config=SMALL)
    _, caught = render_without_warnings(fig, forced)
    assert any("missing from" in m or "Glyph" in m for m in caught)


@pytest.mark.slow  # renders charts
def test_english_fallback_draws_no_chinese(english):
    history = synthetic_history()
    for name, fig in plots.all_charts(history, english, analysis=with_chart_data(history), config=SMALL).items():
        drawn = all_texts(fig)
        assert not CJK.search(drawn), (name, CJK.findall(drawn))
        assert "MLM accuracy" in drawn or "loss" in drawn, name


def test_no_held_out_data_shows_a_note_instead_of_a_line(english):
    history = synthetic_history(held_out=False)
    fig = plots.training_curves(history, english, config=SMALL)
    mlm_axis = fig.axes[0]
    assert len(mlm_axis.get_lines()) == 1
    assert "no held-out data" in [t.get_text() for t in mlm_axis.texts]
    assert len(fig.axes[2].get_lines()) == 1  # only the training loss


@pytest.mark.slow  # renders charts
def test_history_with_only_accuracy_still_renders_every_chart(english):
    full = synthetic_history(n=60)
    bare = History(path="bare.json", source_format="original", steps=full.steps, mlm_acc=full.mlm_acc,
                   nsp_acc=np.zeros(0), loss=np.zeros(0), lr=np.zeros(0))
    charts = plots.all_charts(bare, english, analysis=with_chart_data(bare), config=SMALL)
    for name, fig in charts.items():
        assert plots.render_png(fig, english, dpi=FAST_DPI).startswith(b"\x89PNG"), name
    notes = all_texts(charts["training_curves.png"])
    assert notes.count("no data") == 3  # NSP, loss and learning-rate panels
    assert "no data" in all_texts(charts["loss_analysis.png"])
    assert "no data" in all_texts(charts["run_summary.png"])  # the final-loss panel


@pytest.mark.slow  # renders charts
@pytest.mark.parametrize("n", [1, 2])
def test_history_too_short_to_fit_gets_a_note_instead_of_curves(english, n):
    full = synthetic_history(n=50)
    short = History(path="short.json", source_format="original", steps=full.steps[:n], mlm_acc=full.mlm_acc[:n],
                    nsp_acc=full.nsp_acc[:n], loss=full.loss[:n], lr=full.lr[:n])
    charts = plots.all_charts(short, english, analysis=with_chart_data(short), config=SMALL)
    for name, fig in charts.items():
        assert plots.render_png(fig, english, dpi=FAST_DPI).startswith(b"\x89PNG"), name
    fit_panel = charts["correlation_analysis.png"].axes[0]
    assert fit_panel.get_legend() is not None
    drawn = all_texts(charts["correlation_analysis.png"])
    assert "too few points to fit" in drawn
    assert fit_panel.get_lines() == []  # no curve is fitted through fewer than 3 points
    assert "too few points to fit" in all_texts(charts["forecast.png"])


def test_comparison_of_one_and_of_three_runs(english):
    one = plots.run_comparison([("100K", synthetic_history())], english, config=SMALL)
    curves, acc_bars, loss_bars = one.axes
    assert len(acc_bars.patches) == 3 and len(loss_bars.patches) == 1
    runs = [(f"run{i}", synthetic_history(n=50 * (i + 1), total=10000 * (i + 1), seed=i)) for i in range(3)]
    three = plots.run_comparison(runs, english, config=SMALL)
    curves, acc_bars, loss_bars = three.axes
    assert len(acc_bars.patches) == 9 and len(loss_bars.patches) == 3
    assert [t.get_text() for t in curves.get_legend().get_texts()][0].startswith("run0")
    # The bars show the numbers summary_chart_figures computed.
    summary = plots.summary_chart_figures(runs[2][1])
    assert acc_bars.patches[8].get_height() == pytest.approx(summary["final_mlm"])
    assert loss_bars.patches[2].get_height() == pytest.approx(summary["final_loss"])
    with pytest.raises(ValueError):
        plots.run_comparison([], english)


def test_run_label_and_smoothing_window():
    assert plots.run_label(synthetic_history(total=50000)) == "50K"
    bare = synthetic_history(n=10, total=900, held_out=False)
    assert plots.run_label(bare) == "900"
    assert plots.smoothing_window(1000) == 21 and plots.smoothing_window(10) == 1
    assert plots.smoothing_window(1000, plots.ChartConfig(smoothing_window=5)) == 5
    assert plots.marker_area(1000) == plots.ChartConfig().marker_size
    assert plots.marker_area(10) == 6 * plots.ChartConfig().marker_size  # a handful of points stay visible


@pytest.mark.slow  # renders charts
def test_residual_trend_only_where_there_is_something_to_smooth(english):
    many_history = synthetic_history(n=200)
    many = plots.correlation_analysis(many_history, english, with_chart_data(many_history), config=SMALL)
    assert [t.get_text() for t in many.legends[0].get_texts()] == ["residual moving average (window 5)"]
    assert all(len(ax.get_lines()) == 2 for ax in many.axes[1:])  # zero line + trend
    few_history = synthetic_history(n=40)
    few = plots.correlation_analysis(few_history, english, with_chart_data(few_history), config=SMALL)
    assert few.legends == [] and all(len(ax.get_lines()) == 1 for ax in few.axes[1:])


@pytest.mark.slow  # renders charts
@pytest.mark.skipif(not ORIGINAL_HISTORY.exists(), reason=f"{ORIGINAL_HISTORY} not added yet")
def test_charts_on_the_original_studys_history(bilingual):
    history = load_history(ORIGINAL_HISTORY)
    assert len(history.steps) >= 100
    for name, fig in plots.all_charts(history, bilingual, analysis=with_chart_data(history)).items():
        assert len(fig.axes) == AXES_PER_CHART[name], name
        png, caught = render_without_warnings(fig, bilingual)
        assert len(png) > 50_000 and not [m for m in caught if "Glyph" in m or "missing from" in m], name


def test_forecast_limits_hold_the_prediction_bands_or_say_they_are_cut(english):
    from matplotlib.collections import PolyCollection

    # A short noisy run: wide prediction bands that a data-only y range would cut at the top.
    short = synthetic_history(n=12, total=200, seed=4)
    fig = plots.forecast(short, english, config=SMALL, analysis=with_chart_data(short))
    for ax in fig.axes[:-1]:  # the last panel is the phase model's, which has no band
        bottom, top = ax.get_ylim()
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert bands, "no prediction band drawn"
        band_top = max(float(np.max(c.get_paths()[0].vertices[:, 1])) for c in bands)
        cut = "band runs past the chart's edge (cut)" in [t.get_text() for t in ax.texts]
        assert (band_top <= top) != cut  # inside the chart, or the panel says it is cut
        # The predicted points are drawn above the band, so the band never tints them.
        points = [c for c in ax.collections if not isinstance(c, PolyCollection)]
        assert min(c.get_zorder() for c in points) > max(c.get_zorder() for c in bands)


def test_forecast_ylim_widens_for_bands_within_accuracy_and_a_span():
    values = np.array([0.10, 0.12, 0.14, 0.16, 0.20])  # span 0.10
    low, high, cut = plots.forecast_ylim(values, [(np.array([0.15]), np.array([0.26]))])
    assert high >= 0.26 and not cut and low == pytest.approx(0.10 - 0.015)
    low, high, cut = plots.forecast_ylim(values, [(np.array([-3.0]), np.array([5.0]))])
    assert cut and high == pytest.approx(0.30) and low == pytest.approx(0.0)  # one span beyond the data
    low, high, cut = plots.forecast_ylim(np.array([0.9, 0.99]), [(np.array([0.9]), np.array([1.4]))])
    assert cut and high == pytest.approx(1.02)  # never far past accuracy 1


@pytest.mark.slow  # renders charts
def test_the_one_run_chart_says_what_it_shows(english):
    one = synthetic_history(n=40, total=200)
    charts = plots.all_charts(one, english, analysis=with_chart_data(one), config=SMALL)
    assert "comparison_50k_100k.png" not in charts  # one run is summarized, not compared
    fig = charts["run_summary.png"]
    assert fig.get_suptitle().startswith("One run's summary")
    assert "--compare" in fig.get_suptitle()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("this run, 200 steps")
    runs = [("50K", synthetic_history(total=50000)), ("100K", synthetic_history(total=100000))]
    compared = plots.all_charts(runs[1][1], english, runs=runs, analysis=with_chart_data(runs[1][1]),
                                config=SMALL)["comparison_50k_100k.png"]
    assert compared.get_suptitle() == "Run comparison"
