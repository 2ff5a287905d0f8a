#!/usr/bin/env python3
"""Draw the study's five charts (training curves, correlation and curve fits, the run's summary or,
with --compare, the run comparison, loss, forecast) from a training history, with bilingual Chinese/English labels when a CJK font is
installed and English-only labels (plus a one-line warning) when not. The charts go beside the
history unless --out-dir says otherwise (never into the repository root by default); charts of
another run are never replaced without --overwrite, and an --analysis must be the analysis of this
history. The correlation and forecast charts draw what the analysis computed (fits, the phase model
and its plateau, the chosen curve starred); an analysis written before it carried chart data is
refused (exit 3: rerun analyze_100k.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
import matplotlib

matplotlib.use("Agg")  # headless: files only, never a window

from bertstudy.base.atomic_io import atomic_writer, check_writable_dir, read_json  # noqa: E402
from bertstudy.base.cli import int_in_range, labelled_path, make_parser, open_unit_float, run_main  # noqa: E402
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, BadInputError, UsageError  # noqa: E402
from bertstudy.charts.fonts import LANGS, choose_text_style  # noqa: E402
from bertstudy.analysis.history import check_run_labels, load_history, predicted_shortcut  # noqa: E402
from bertstudy.analysis.shortcut_level import reference  # noqa: E402
from bertstudy.analysis.seeds import SUMMARY_FORMAT as SEEDS_FORMAT  # noqa: E402
from bertstudy.analysis.study import choose_metric  # noqa: E402
from bertstudy.charts.plots import all_charts, chart_files, render_png  # noqa: E402
from bertstudy.analysis import chart_data  # noqa: E402
from bertstudy.analysis.provenance import (  # noqa: E402
    CHART_HISTORY_KEY,
    CHART_HISTORY_PATH_KEY,
    check_analysis_matches,
    check_chart_folder,
    history_fingerprint,
)

DEFAULT_TRAIN_FRACTION = 0.5
REPO_ROOT = Path(__file__).resolve().parent  # charts are never written here unless --out-dir says so

EXAMPLES = [
    "python visualize_results.py training_history_100k.json --analysis analysis_100k_result.json --out-dir charts",
    "python visualize_results.py runs/quick/training_history_100k.json   # charts in runs/quick/",
    "python visualize_results.py runs/quick/training_history_100k.json --metric mlm_acc --out-dir /tmp/charts"
    "   # the original's metric",
    "python visualize_results.py runs/cpu_study/training_log_100k.jsonl --out-dir results --overwrite --dpi 300",
    "python visualize_results.py runs/b/training_history_100k.json "
    "--compare 50K=runs/a/training_history_100k.json 100K=runs/b/training_history_100k.json",
    "CBC_NO_CJK_FONT=1 python visualize_results.py history.json --lang en   # English-only labels",
    "python visualize_results.py runs/cpu_study_ms/training_history_100k.json "
    "--downstream runs/cpu_study_ms/downstream_100k.json   # adds downstream.png",
    "python visualize_results.py --seeds-summary results/seeds_summary.json   # results/seeds.png",
]


def build_parser():
    parser = make_parser("visualize_results.py", __doc__, EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME])
    parser.add_argument("history", nargs="?", default="training_history_100k.json",
                        help="training history: ours, the original study's JSON, or the JSONL training log "
                             "(default: %(default)s)")
    parser.add_argument("--analysis", metavar="PATH",
                        help="analysis_100k_result.json of this history: the curve charts draw its fits, plateau and "
                             "chosen curve, the titles its headline numbers (without it the fits are made here, "
                             "without the plateau's bootstrap intervals)")
    parser.add_argument("--metric", default=None,
                        help="the accuracy the curve charts draw, without --analysis: any list of the history (default: "
                             "eval_mask_acc where the history has at least 3 points of it, else mlm_acc); with "
                             "--analysis the analysis' own metric (another one is refused)")
    parser.add_argument("--compare", nargs="+", type=labelled_path, metavar="LABEL=PATH",
                        help="runs to compare in comparison_50k_100k.png (default: the main history alone, summarized in "
                             "run_summary.png)")
    parser.add_argument("--train-fraction", type=open_unit_float, default=None,
                        help="share of the points the forecast curves are fitted on, without --analysis (default: "
                             f"{DEFAULT_TRAIN_FRACTION}); with --analysis the analysis' own (analyze_100k.py "
                             "--train-fraction)")
    parser.add_argument("--downstream", metavar="FILE",
                        help="probe_downstream.py's JSON: adds a sixth chart, downstream.png")
    parser.add_argument("--seeds-summary", metavar="FILE", default=None,
                        help="instead of one run's charts: seeds.png, each held-out accuracy across pretraining seeds "
                             "as a band (analyze_100k.py --seeds-summary's JSON); --out-dir defaults to its folder")
    parser.add_argument("--out-dir", default=None,
                        help="folder for the PNGs (default: the history's folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace charts in --out-dir that were drawn from another history or whose origin "
                             "is unknown (e.g. the committed results/); without it they are kept and nothing is drawn")
    parser.add_argument("--dpi", type=int_in_range(150, 300), default=200,
                        help="resolution, 150-300 (default: %(default)s)")
    parser.add_argument("--lang", choices=LANGS, default="both",
                        help="'both' = Chinese / English labels (needs a CJK font), 'en' = English only")
    return parser


def curve_analysis(args, history) -> dict:
    """The analysis the charts draw: --analysis (of this history, with chart data: an older one is refused,
    exit 3), else the chart data computed here from the history (no headline, no bootstrap intervals)."""
    if not args.analysis:
        fraction = DEFAULT_TRAIN_FRACTION if args.train_fraction is None else args.train_fraction
        metric, _ = choose_metric(history, args.metric)
        steps, values = history.metric(metric)  # no minimum: a history too short for a fit still gets its charts
        steps = steps.astype(float)
        shortcut = reference(predicted_shortcut(history), metric)
        return {"chart_data": chart_data.for_series(steps, values, fraction, metric, shortcut)}
    analysis = read_json(args.analysis)
    check_analysis_matches(analysis, args.analysis, history)
    data = chart_data.chart_data_of(analysis, args.analysis, history)
    if args.metric is not None and args.metric != chart_data.drawn_metric(data):
        raise UsageError(f"--metric {args.metric}: the analysis {args.analysis} draws {chart_data.drawn_metric(data)}; "
                         f"rerun analyze_100k.py --metric {args.metric}, or leave --metric out")
    drawn = data["forecast"]["train_fraction"]
    if args.train_fraction is not None and args.train_fraction != drawn:
        raise UsageError(f"--train-fraction {args.train_fraction}: the analysis {args.analysis} made its forecast "
                         f"check with {drawn}; rerun analyze_100k.py --train-fraction {args.train_fraction}, "
                         "or leave --train-fraction out")
    return analysis


def draw_seeds(args, style) -> int:
    """--seeds-summary: seeds.png from a seeds summary (its bands), under the same overwrite rule as the
    run charts (a chart of the same summary is redrawn; another's needs --overwrite)."""
    import hashlib
    import json

    from bertstudy.charts.seed_chart import SEEDS_CHART, seeds_chart

    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(args.seeds_summary).parent
    check_writable_dir(out_dir, "--out-dir")
    summary = read_json(args.seeds_summary)
    if not isinstance(summary, dict) or summary.get("format") != SEEDS_FORMAT:
        raise BadInputError(args.seeds_summary, f"not a seeds summary (format {SEEDS_FORMAT}): make one with "
                                                "analyze_100k.py --seeds-summary")
    fingerprint = hashlib.sha256(json.dumps(summary.get("bands"), sort_keys=True).encode()).hexdigest()
    check_chart_folder(out_dir, (SEEDS_CHART,), fingerprint, args.overwrite)
    try:
        figure = seeds_chart(summary, style)
    except ValueError as exc:
        raise BadInputError(args.seeds_summary, str(exc)) from None
    write_chart(out_dir / SEEDS_CHART, figure, style, args.dpi, fingerprint, args.seeds_summary)
    return EXIT_OK


def write_chart(path: Path, figure, style, dpi: int, fingerprint: str, source) -> None:
    """One chart as PNG, atomically, with what it was drawn from in its metadata (the overwrite guard reads it)."""
    png = render_png(figure, style, dpi, metadata={CHART_HISTORY_KEY: fingerprint, CHART_HISTORY_PATH_KEY: str(source)})
    with atomic_writer(path, "wb") as handle:
        handle.write(png)
    print(f"wrote {path} ({len(png) / 1024:.0f} KiB)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def draw_charts() -> int:
        check_run_labels(args.compare or [])
        style = choose_text_style(args.lang)
        if style.warning:
            print(style.warning, file=sys.stderr)
        if args.seeds_summary:
            return draw_seeds(args, style)
        if not Path(args.history).exists():  # said first: no --out-dir helps without a history
            raise BadInputError(args.history, "no such file: give a training history, e.g. python visualize_results.py "
                                "runs/quick/training_history_100k.json (train_large_100k.py writes it into its --out-dir)")
        out_dir = Path(args.out_dir) if args.out_dir is not None else Path(args.history).parent
        if args.out_dir is None and out_dir.resolve() == REPO_ROOT:
            # a history in the checkout's root (train's default --out-dir is ".") must not scatter PNGs
            # among the scripts; results/ holds the committed charts
            raise UsageError(f"the history {args.history} is in the repository's root folder: charts are not written "
                             "there by default; give --out-dir (e.g. --out-dir charts)")
        check_writable_dir(out_dir, "--out-dir")  # before the (slow) drawing: a bad folder fails at once
        history = load_history(args.history)
        fingerprint = history_fingerprint(history)
        downstream = None
        if args.downstream:  # read before drawing: a bad file fails at once
            from bertstudy.charts.downstream_chart import DOWNSTREAM_CHART, downstream_chart
            from bertstudy.downstream.mlm_vs_score import chart_correlations, load_downstream

            downstream = load_downstream(args.downstream, history)  # another run's pass: exit 3, as --analysis
        names = chart_files(compare=bool(args.compare)) + ((DOWNSTREAM_CHART,) if downstream else ())
        check_chart_folder(out_dir, names, fingerprint, args.overwrite)
        analysis = curve_analysis(args, history)
        runs = [(label, load_history(path)) for label, path in args.compare] if args.compare else None
        figures = all_charts(history, style, runs=runs, analysis=analysis)
        if downstream is not None:
            figures[DOWNSTREAM_CHART] = downstream_chart(downstream, chart_correlations(downstream), style)
        for name, figure in figures.items():
            write_chart(out_dir / name, figure, style, args.dpi, fingerprint, args.history)
        return EXIT_OK

    return run_main(draw_charts)


if __name__ == "__main__":
    sys.exit(main())
