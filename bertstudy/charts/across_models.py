"""The across-model chart: held-out [MASK] accuracy against the NER context gain at the last layer, one
point per run at step 1,000 coloured by recipe, the same runs' earlier probed steps faded behind them.
Data in (the analysis' `records`), a Figure out."""

from __future__ import annotations

from matplotlib.figure import Figure

ACROSS_CHART = "across_models.png"
GAINS = (("ner_gain", "NER context gain (entity F1)"), ("segmentation_gain", "segmentation context gain (word F1)"),
         ("sentiment_gain", "sentiment context gain (accuracy)"))


def across_models_chart(analysis: dict, final_step: int = 1000) -> Figure:
    records = analysis["records"]
    recipes = sorted({r["recipe"] for r in records})
    colors = {recipe: f"C{i}" for i, recipe in enumerate(recipes)}
    fig = Figure(figsize=(15, 5.2), layout="constrained")
    axes = fig.subplots(1, len(GAINS))
    for ax, (key, label) in zip(axes, GAINS):
        for recipe in recipes:
            mine = [r for r in records if r["recipe"] == recipe]
            early = [r for r in mine if r["step"] != final_step]
            final = [r for r in mine if r["step"] == final_step]
            ax.scatter([100 * r["accuracy"] for r in early], [100 * r[key] for r in early], color=colors[recipe],
                       alpha=0.25, s=18, linewidths=0)
            ax.scatter([100 * r["accuracy"] for r in final], [100 * r[key] for r in final], color=colors[recipe],
                       s=42, edgecolors="black", linewidths=0.5, label=f"{recipe} ({len(final)})")
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_xlabel("held-out [MASK] accuracy (%)")
        ax.set_ylabel(f"{label}, points")
        task = key.removesuffix("_gain")
        corr = analysis["secondary"]["by_task"].get(task, {}).get("rank_correlation", {})
        if corr.get("rho") is not None:
            ci = corr.get("ci") or [float("nan")] * 2
            ax.set_title(f"Spearman rho {corr['rho']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}], {corr['n']} runs at step {final_step}",
                         fontsize=10)
    drawn = sum(1 for r in analysis["records"] if r["step"] == final_step)
    fig.suptitle(f"Context gain at the last layer vs held-out [MASK] accuracy: {drawn} runs at step {final_step} "
                 f"(bold), earlier probed steps faded", fontsize=11)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, title="recipe (runs)")
    return fig
