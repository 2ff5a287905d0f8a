#!/usr/bin/env python3
"""Watch the crawl and a training run from the files they write: counts against targets, step of
total, speed, ETA, latest training and held-out metrics, newest checkpoint, and a warning when a
running job has gone silent. With --reference, the run's held-out [MASK] accuracy is held against a
finished run's fitted curve and band, and an alert line says when it falls below the band for
--alert-evals evals in a row or the loss turns non-finite. One look by default; --follow refreshes
until Ctrl-C or until the run and the crawl have finished."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base import cli
from bertstudy.analysis.reference import load_reference
from bertstudy.base.errors import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_NOTHING_TO_WATCH, EXIT_OK, EXIT_USAGE,
                                   BadInputError, StudyError)
from bertstudy.monitor import FINISHED, MonitorConfig, collect_progress, format_progress, nothing_to_watch_hint

CLEAR_SCREEN = "\033[2J\033[H"


def build_parser():
    defaults = MonitorConfig()
    parser = cli.make_parser(
        "check_progress.py",
        __doc__.strip(),  # the whole docstring: its first line alone stops mid-sentence
        examples=[
            "python check_progress.py                               # crawl in data/, training in .",
            "python check_progress.py runs/quick --follow --interval 30   # same as --run-dir runs/quick",
            "python check_progress.py --crawl-progress /tmp/embedded/crawl_progress.json --json",
            "python check_progress.py runs/cpu_study --reference results/analysis_100k_result.json --follow --fail-on-alert",
        ],
        exit_codes=[EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_NOTHING_TO_WATCH],
        exit_code_lines={EXIT_CHECK_FAILED: "an alert, with --fail-on-alert (the run below the reference band, its "
                                            "loss not finite, or the run failed)"},
    )
    parser.add_argument("run_dir_arg", nargs="?", metavar="RUN_DIR",
                        help=f"train_large_100k.py's --out-dir (default: {defaults.run_dir})")
    parser.add_argument("--run-dir", help="the same as RUN_DIR")
    parser.add_argument("--crawl-progress", default=str(defaults.crawl_progress),
                        help="rare_char_fetch.py's progress file (default: %(default)s)")
    parser.add_argument("--stale-minutes", type=cli.positive_float, default=defaults.stale_minutes,
                        help="warn when a running job wrote nothing for this long (default: %(default)s)")
    parser.add_argument("--follow", action="store_true",
                        help="refresh every --interval seconds until Ctrl-C; a bad file is reported, not fatal")
    parser.add_argument("--interval", type=cli.positive_float, default=10.0,
                        help="seconds between refreshes with --follow (default: %(default)s)")
    parser.add_argument("--count", type=cli.non_negative_int, default=0,
                        help="with --follow, stop after this many refreshes (default: 0, never)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object per refresh")
    parser.add_argument("--reference", metavar="ANALYSIS",
                        help="a finished run's analysis JSON (analyze_100k.py's output) of the same preset and "
                             "corpus, or the folder holding it (a run folder, results/): the run's held-out [MASK] "
                             "accuracy is held against its fitted curve and band")
    parser.add_argument("--alert-evals", type=cli.positive_int, default=defaults.alert_evals,
                        help="alert when this many evals in a row fall below the reference band (default: %(default)s)")
    parser.add_argument("--fail-on-alert", action="store_true",
                        help=f"exit {EXIT_CHECK_FAILED} on an alert (with --follow: at the first one), so a shell "
                             "loop or a job scheduler can act on it")
    return parser


def show(summary: dict, config: MonitorConfig, as_json: bool, clear: bool) -> None:
    if as_json:
        print(json.dumps(summary, ensure_ascii=False), flush=True)
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["time"]))
    text = nothing_to_watch_hint(config) + " (waiting)" if summary["nothing_to_watch"] else format_progress(summary)
    print(f"{CLEAR_SCREEN if clear else ''}[{stamp}]\n{text}", flush=True)


def check_run_dir(named: str | None) -> None:
    """A folder named on the command line must exist: a typo would otherwise show nothing (or, with the
    default '.', the current folder's crawl) and exit 0."""
    if named is None:
        return
    path = Path(named)
    if not path.exists():
        raise BadInputError(path, "no such folder (the run folder is train_large_100k.py's --out-dir; "
                            "start the run first or check the spelling)")
    if not path.is_dir():
        raise BadInputError(path, f"is a file, not a run folder; give the folder that holds it: "
                            f"python check_progress.py {path.parent}")


def finished(summary: dict) -> bool:
    """Nothing left to follow: the run has ended (done, interrupted, failed) and no crawl is running."""
    training, crawl = summary["training"], summary["crawl"]
    return bool(training) and training["status"] in FINISHED and (crawl is None or crawl["done"])


def follow(config: MonitorConfig, reference, args) -> int:
    """Redraw every --interval seconds until the run ends, an alert fails it (--fail-on-alert), --count
    refreshes have been shown, or Ctrl-C."""
    clear = sys.stdout.isatty()  # redraw in place on a terminal; append when piped to a file
    refreshes = 0
    try:
        while True:
            try:
                summary = collect_progress(config, reference=reference)
                show(summary, config, args.json, clear)
                code = EXIT_NOTHING_TO_WATCH if summary["nothing_to_watch"] else alert_code(summary, args)
                if code == EXIT_CHECK_FAILED or finished(summary):
                    return code
            except StudyError as exc:  # a watcher keeps watching: the writer may repair the file
                if exc.exit_code == EXIT_BAD_INPUT and args.reference and str(args.reference) in str(exc):
                    raise  # a reference that does not fit the run will not start fitting it
                print(f"error: {exc}", file=sys.stderr, flush=True)
                code = exc.exit_code
            refreshes += 1
            if args.count and refreshes >= args.count:
                return code
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how --follow is meant to end


def alert_code(summary: dict, args) -> int:
    return EXIT_CHECK_FAILED if args.fail_on_alert and summary["alert"] else EXIT_OK


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_dir_arg and args.run_dir and Path(args.run_dir_arg) != Path(args.run_dir):
        parser.error(f"RUN_DIR {args.run_dir_arg} and --run-dir {args.run_dir} disagree; give one")
    run_dir = args.run_dir_arg or args.run_dir or MonitorConfig().run_dir
    config = MonitorConfig(crawl_progress=Path(args.crawl_progress), run_dir=Path(run_dir),
                           stale_minutes=args.stale_minutes, alert_evals=args.alert_evals)

    def watch() -> int:
        check_run_dir(args.run_dir_arg or args.run_dir)
        reference = load_reference(args.reference) if args.reference else None
        if args.follow:
            return follow(config, reference, args)
        summary = collect_progress(config, reference=reference)
        if summary["nothing_to_watch"]:
            raise StudyError(nothing_to_watch_hint(config), exit_code=EXIT_NOTHING_TO_WATCH)
        show(summary, config, args.json, clear=False)
        return alert_code(summary, args)

    def watch_quiet_on_closed_pipe() -> int:
        try:
            return watch()
        except BrokenPipeError:  # `check_progress.py | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return EXIT_OK

    return cli.run_main(watch_quiet_on_closed_pipe)


if __name__ == "__main__":
    sys.exit(main())
