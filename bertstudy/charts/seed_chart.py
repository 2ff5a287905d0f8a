"""The seeds chart: each held-out accuracy by step across runs that differ only in
their pretraining seed, as a min-max band with the seeds' mean and each seed's own line, beside the
shortcut level the corpus predicts. Data in (a seeds summary with `bands`: analysis/seeds.py), a
matplotlib Figure out; nothing is computed here but what to draw.
"""

from __future__ import annotations

from matplotlib import rc_context
from matplotlib.figure import Figure

from bertstudy.analysis.seeds import BAND_METRICS
from bertstudy.analysis.shortcut_level import reference
from bertstudy.charts.fonts import TextStyle
from bertstudy.charts.style import ChartConfig, draw_shortcut, metric_label, new_figure, steps_axis

SEEDS_CHART = "seeds.png"


def seed_name(run: str) -> str:
    """A run folder's seed as the Makefile names it (runs/cpu_study_seed3 -> "3"), else the folder's name."""
    name = run.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit("_seed", 1)[1] if "_seed" in name else name


def seeds_chart(summary: dict, style: TextStyle, config: ChartConfig = ChartConfig()) -> Figure:
    """One panel per held-out accuracy the summary has a band of. ValueError for a summary without
    bands (one made from analyses alone, before the bands existed)."""
    bands = summary.get("bands") or {}
    metrics = [metric for metric in BAND_METRICS if metric in bands]
    if not metrics:
        raise ValueError("the seeds summary has no bands (held-out accuracies by step): remake it with "
                         "analyze_100k.py --seeds-summary from the folder its analyses were made in")
    with rc_context(style.rc_params()):
        fig = new_figure(style, config, height=config.height * 0.75)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        fig.suptitle(style.text("seeds_title", n=len(summary["runs"])), fontsize=14)
        for ax, metric in zip(axes, metrics):
            band = bands[metric]
            for i, (run, values) in enumerate(band["runs"].items()):
                ax.plot(band["steps"], values, lw=0.9, alpha=0.7, color=f"C{i % 10}",
                        label=style.text("seed_run", seed=seed_name(run)))
            ax.fill_between(band["steps"], band["min"], band["max"], color="0.55", alpha=0.3, lw=0,
                            label=style.text("seeds_band"))
            ax.plot(band["steps"], band["mean"], color="black", lw=1.8, label=style.text("seeds_mean"))
            draw_shortcut(ax, reference(summary.get("shortcut"), metric), style)
            ax.set_ylim(bottom=0)
            ax.set_ylabel(metric_label(style, metric))
            ax.set_title(metric_label(style, metric))
            steps_axis(ax, style)
            ax.legend(loc="best", fontsize=8)
    return fig
