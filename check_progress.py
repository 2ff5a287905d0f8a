#!/usr/bin/env python3
"""Watch the crawl and a training run from the files they write: counts against targets, step of
total, speed, ETA, latest training and held-out metrics, newest checkpoint, and a warning when a
running job has gone silent. One look by default; --follow refreshes until Ctrl-C."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base import cli
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_NOTHING_TO_WATCH, EXIT_OK, EXIT_USAGE, BadInputError, StudyError
from bertstudy.monitor import MonitorConfig, collect_progress, format_progress, nothing_to_watch_hint

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
        ],
        exit_codes=[EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_NOTHING_TO_WATCH],
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
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_dir_arg and args.run_dir and Path(args.run_dir_arg) != Path(args.run_dir):
        parser.error(f"RUN_DIR {args.run_dir_arg} and --run-dir {args.run_dir} disagree; give one")
    run_dir = args.run_dir_arg or args.run_dir or MonitorConfig().run_dir
    config = MonitorConfig(crawl_progress=Path(args.crawl_progress), run_dir=Path(run_dir),
                           stale_minutes=args.stale_minutes)

    def show(summary: dict, clear: bool) -> None:
        if args.json:
            print(json.dumps(summary, ensure_ascii=False), flush=True)
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["time"]))
        text = nothing_to_watch_hint(config) + " (waiting)" if summary["nothing_to_watch"] else format_progress(summary)
        print(f"{CLEAR_SCREEN if clear else ''}[{stamp}]\n{text}", flush=True)

    def check_run_dir() -> None:
        """A folder named on the command line must exist: a typo would otherwise show nothing (or,
        with the default '.', the current folder's crawl) and exit 0."""
        named = args.run_dir_arg or args.run_dir
        if named is None:
            return
        path = Path(named)
        if not path.exists():
            raise BadInputError(path, "no such folder (the run folder is train_large_100k.py's --out-dir; "
                                "start the run first or check the spelling)")
        if not path.is_dir():
            raise BadInputError(path, f"is a file, not a run folder; give the folder that holds it: "
                                f"python check_progress.py {path.parent}")

    def body() -> int:
        check_run_dir()
        if not args.follow:
            summary = collect_progress(config)
            if summary["nothing_to_watch"]:
                raise StudyError(nothing_to_watch_hint(config), exit_code=EXIT_NOTHING_TO_WATCH)
            show(summary, clear=False)
            return EXIT_OK
        clear = sys.stdout.isatty()  # redraw in place on a terminal; append when piped to a file
        refreshes = 0
        try:
            while True:
                try:
                    summary = collect_progress(config)
                    show(summary, clear)
                    code = EXIT_NOTHING_TO_WATCH if summary["nothing_to_watch"] else EXIT_OK
                except StudyError as exc:  # a watcher keeps watching: the writer may repair the file
                    print(f"error: {exc}", file=sys.stderr, flush=True)
                    code = exc.exit_code
                refreshes += 1
                if args.count and refreshes >= args.count:
                    return code
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return EXIT_OK  # Ctrl-C is how --follow is meant to end

    def body_quiet_on_closed_pipe() -> int:
        try:
            return body()
        except BrokenPipeError:  # `check_progress.py | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return EXIT_OK

    return cli.run_main(body_quiet_on_closed_pipe)


if __name__ == "__main__":
    sys.exit(main())
