#!/usr/bin/env python3
"""Honest statistics on a training history: how MLM accuracy tracks training steps (Pearson with a
Fisher-z interval, Spearman, Kendall, slope), which learning curve describes it (linear, log-linear,
saturating power law, and a phase model for "rise, plateau, second rise", compared by AIC at the
effective n and by rolling-origin forecasts), the plateau with bootstrap intervals, intervals that
respect autocorrelation (circular block bootstrap, Newey-West) beside the plain ones, and steps needed
to reach target accuracies. Writes analysis_100k_result.json beside the history (the original study's
keys plus the new ones) and prints a report."""

from __future__ import annotations

import sys
from pathlib import Path

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.analysis.study import analyze, choose_metric, metric_arrays
from bertstudy.base.atomic_io import atomic_write_json, check_writable_file, read_json
from bertstudy.base.run_files import ANALYSIS_NAME
from bertstudy.base.cli import labelled_path, make_parser, non_negative_int, open_unit_float, run_main, unit_float
from bertstudy.base.errors import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, BadInputError,
                                   StudyError, UsageError)
from bertstudy.analysis.history import check_run_labels, load_history, predicted_shortcut
from bertstudy.analysis.provenance import check_analysis_out, series_fingerprint
from bertstudy.analysis.report import format_report


EXAMPLES = [
    "python analyze_100k.py runs/quick/training_history_100k.json   # writes runs/quick/analysis_100k_result.json",
    "python analyze_100k.py runs/cpu_study/training_log_100k.jsonl --metric eval_mlm_acc --target 0.5 0.6",
    "python analyze_100k.py runs/cpu_study/training_history_100k.json --metric mlm_acc --out /tmp/training_mlm.json"
    "   # the original's metric",
    "python analyze_100k.py tests/data/original_training_history_100k.json --require-r 0.85 --out /tmp/a.json"
    "   # exits 1: r=0.787",
    "python analyze_100k.py b.json --compare 50K=a.json 100K=b.json --out results/analysis.json",
    "python analyze_100k.py runs/cpu_study_ms/training_history_100k.json --downstream runs/cpu_study_ms/downstream_100k.json",
    "python analyze_100k.py --seeds-summary runs/cpu_study_seed{1,2,3}/analysis_heldout_mlm.json --out results/seeds_summary.json",
]


def goal_r_text(result: dict) -> str:
    r = result["pearson_correlation"]
    return "undefined (constant metric)" if r is None else f"{r:.4f}"


def build_parser():
    parser = make_parser("analyze_100k.py", __doc__, EXAMPLES,
                         [EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME],
                         {EXIT_CHECK_FAILED: "--require-r R was given and r < R"})
    parser.add_argument("history", nargs="?", default="training_history_100k.json",
                        help="training history: ours, the original study's JSON, or the JSONL training log "
                             "(default: %(default)s)")
    parser.add_argument("--metric", default=None,
                        help="metric against steps: any list of the history, e.g. eval_mask_acc (held-out [MASK] "
                             "accuracy: prediction from context), eval_mlm_acc (held-out, all positions), mlm_acc "
                             "(training, all positions: the original's metric), mask_acc, unchanged_acc, loss "
                             "(default: eval_mask_acc where the history has at least 3 points of it, else mlm_acc; "
                             "the report and the JSON's metric.why say which and why)")
    parser.add_argument("--compare", nargs="+", type=labelled_path, default=[], metavar="LABEL=PATH",
                        help="runs to compare, first one the baseline (e.g. 50K=a.json 100K=b.json)")
    parser.add_argument("--train-fraction", type=open_unit_float, default=0.5,
                        help="share of the points each curve is fitted on for the forecast check (default: %(default)s)")
    parser.add_argument("--target", nargs="+", type=unit_float, default=[0.6, 0.7], metavar="ACC",
                        help="accuracies for steps-to-target (default: 0.6 0.7)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=500, metavar="N",
                        help="circular block bootstrap resamples (the plateau's: at most 200); 0 = none (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default: %(default)s)")
    parser.add_argument("--require-r", type=unit_float, default=None, metavar="R",
                        help="goal check: exit 1 when Pearson r is below R (without it the exit is 0 whatever r is)")
    parser.add_argument("--out", default=None,
                        help="result JSON, written atomically (default: analysis_100k_result.json beside the history)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out file that holds an analysis of another history or metric, or a file "
                             "of unknown origin (an analysis of the same numbers is always redone)")
    parser.add_argument("--downstream", default=None, metavar="FILE",
                        help="probe_downstream.py's JSON: adds, per task, Pearson and Spearman (with intervals) between "
                             "held-out MLM accuracy and the score, and between log-step and the score")
    parser.add_argument("--seeds-summary", nargs="+", default=None, metavar="ANALYSIS",
                        help="instead of analysing a history: the spread (per run, mean, min, max, sd) of every headline "
                             "figure across runs that differ only in --seed, from their analysis JSONs (any number per "
                             "run, one per metric); needs --out")
    parser.add_argument("--quiet", action="store_true", help="print only the output path, not the report")
    return parser


def _summary_runs(path: Path) -> list | None:
    """The runs an existing seeds summary covers (a summary of the same runs is redone freely), else None."""
    try:
        obj = read_json(path)
    except StudyError:
        return None
    return obj.get("runs") if isinstance(obj, dict) else None


def _bands_and_shortcut(analyses: list[dict], paths: list[str]) -> dict:
    """The held-out accuracies by step across the runs (read from the histories the analyses name) and
    the shortcut levels their corpus predicts, for the seeds chart."""
    from bertstudy.analysis.seeds import BAND_METRICS, run_of, seed_bands

    histories = {}
    for analysis, path in zip(analyses, paths):
        history_path = analysis["source"]["path"]
        if run_of(analysis) not in histories:
            if not Path(history_path).is_file():
                raise BadInputError(path, f"names the history {history_path}, which is not there (run from the folder "
                                          "the analysis was made in)")
            histories[run_of(analysis)] = load_history(history_path)
    series = {metric: {run: h.metric(metric) for run, h in histories.items()} for metric in BAND_METRICS
              if all(len(getattr(h, metric)) for h in histories.values())}
    shortcuts = [predicted_shortcut(h) for h in histories.values()]
    if any(s != shortcuts[0] for s in shortcuts):
        raise UsageError("--seeds-summary: the runs' corpora predict different shortcut levels (meta.shortcut): "
                         "runs on different corpora are not seeds of one run")
    return {"bands": seed_bands(series), "shortcut": shortcuts[0]}


def seeds_summary(paths: list[str], out: str | None, quiet: bool, overwrite: bool) -> int:
    """--seeds-summary: read the analyses and their histories, write the summary to --out, print its table."""
    from bertstudy.analysis.seeds import SeedsInputError, format_seeds_summary, summarize_seeds

    if out is None:
        raise UsageError("--seeds-summary needs --out (where the summary is written)")
    check_writable_file(Path(out), "--out")
    analyses = [read_json(path) for path in paths]
    try:
        summary = summarize_seeds(analyses)
    except SeedsInputError as exc:
        raise BadInputError(paths[exc.index], str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"--seeds-summary: {exc}") from None
    if Path(out).exists() and not overwrite and _summary_runs(Path(out)) != summary["runs"]:
        raise UsageError(f"--out {out} holds something other than a summary of these runs; nothing was written: "
                         "choose another --out, or add --overwrite to replace it")
    summary["inputs"] = [str(path) for path in paths]
    summary.update(_bands_and_shortcut(analyses, paths))
    atomic_write_json(Path(out), summary)
    if not quiet:
        print(format_seeds_summary(summary))
    print(f"wrote {out}")
    return EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run_analysis() -> int:
        if args.seeds_summary:
            return seeds_summary(args.seeds_summary, args.out, args.quiet, args.overwrite)
        check_run_labels(args.compare)
        out = Path(args.out) if args.out is not None else Path(args.history).parent / ANALYSIS_NAME  # beside the history, as the charts are
        check_writable_file(out, "--out")  # before the work: a bad path fails at once, not after the bootstrap
        history = load_history(args.history)
        metric, _ = choose_metric(history, args.metric)
        steps, values = metric_arrays(history, metric)  # bad input (exit 3) before a refusal (exit 2)
        check_analysis_out(out, series_fingerprint(steps, values), args.overwrite)
        downstream = None
        if args.downstream:  # before the work: a pass of another run is refused (exit 3) as --analysis is
            from bertstudy.downstream.mlm_vs_score import load_downstream

            downstream = load_downstream(args.downstream, history)
        runs = [(label, load_history(path)) for label, path in args.compare]
        result = analyze(history, args.metric, train_fraction=args.train_fraction, targets=args.target,
                         bootstrap=args.bootstrap, seed=args.seed, compare=runs, require_r=args.require_r)
        if args.downstream:
            from bertstudy.downstream.mlm_vs_score import downstream_correlations

            result["downstream"] = downstream_correlations(downstream, args.downstream)
        atomic_write_json(out, result)
        if not args.quiet:
            print(format_report(result))
            if args.downstream:
                from bertstudy.downstream.mlm_vs_score import format_downstream

                print("\n" + format_downstream(result["downstream"]))
        print(f"wrote {out}")
        if args.require_r is not None and not result["goal_achieved"]:
            # on stderr, so --quiet (and a pipe of stdout) still say why the exit is 1
            print(f"check failed: Pearson r {goal_r_text(result)} is below --require-r {args.require_r}",
                  file=sys.stderr)
            return EXIT_CHECK_FAILED
        return EXIT_OK

    return run_main(run_analysis)


if __name__ == "__main__":
    sys.exit(main())
