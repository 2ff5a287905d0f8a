"""What every top-level script shares: an argparse parser whose --help shows examples and exit
codes, range-checked argument types, and `run_main`, which turns StudyError into one line on
stderr and an exit code instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from bertstudy.base.deps import missing_dependency_message
from bertstudy.base.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOTHING_TO_WATCH,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    StudyError,
)

EXIT_CODE_LINES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "a requested check failed",
    EXIT_USAGE: "bad command line or out-of-range value; an output path that cannot be written; a refusal to "
                "replace an earlier output without --overwrite",
    EXIT_BAD_INPUT: "an input file is missing, empty or malformed (the message names file and line)",
    EXIT_RUNTIME: "the job could not finish (e.g. disk full)",
    EXIT_NOTHING_TO_WATCH: "nothing to watch (check_progress.py)",
    EXIT_INTERRUPTED: "interrupted by SIGINT/SIGTERM after saving state (rerun the same command to continue)",
}


def make_parser(prog: str, description: str, examples: Sequence[str], exit_codes: Sequence[int],
                exit_code_lines: dict[int, str] | None = None) -> argparse.ArgumentParser:
    """A parser whose epilog lists usage examples and the exit codes this script can return;
    `exit_code_lines` replaces the shared wording of a code where a script means something narrower
    (the shared lines name no script's own causes: a crawl's server, training's non-finite losses)."""
    wording = {**EXIT_CODE_LINES, **(exit_code_lines or {})}
    lines = ["examples:"] + [f"  {example}" for example in examples]
    lines += ["", "exit codes:"] + [f"  {code:<4} {wording[code]}" for code in exit_codes]
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a typo such as --thread must be refused, not taken as --threads
    )


def _integer(text: str) -> int:
    """int('2000'), and also '2e3' or '2000.0': a float literal whose value is a whole number."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # ValueError for non-numbers
        if not value.is_integer():
            raise ValueError(text) from None
        return int(value)


def _number(kind: Callable, low=None, high=None, low_open=False, high_open=False, what="value"):
    parse_kind = _integer if kind is int else kind
    expected = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = parse_kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{what} must be {'>' if low_open else '>='} {low}, got {text}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"{what} must be {'<' if high_open else '<='} {high}, got {text}")
        return value

    parse.__name__ = what
    return parse


positive_int = _number(int, low=1, what="a positive integer")
non_negative_int = _number(int, low=0, what="a non-negative integer")
positive_float = _number(float, low=0, low_open=True, what="a positive number")
non_negative_float = _number(float, low=0, what="a non-negative number")
open_unit_float = _number(float, low=0, high=1, low_open=True, high_open=True, what="a number in (0, 1)")
unit_float = _number(float, low=0, high=1, what="a number in [0, 1]")


def int_in_range(low: int, high: int):
    """An argparse type for an integer in [low, high], e.g. `--dpi` in [150, 300]."""
    return _number(int, low=low, high=high, what=f"an integer in [{low}, {high}]")


def labelled_path(text: str) -> tuple[str, str]:
    """An argparse type for `LABEL=PATH` (e.g. `--compare 50k=runs/a/history.json`)."""
    label, sep, path = text.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label.strip(), path.strip()


def run_main(body: Callable[[], int | None]) -> int:
    """Run a script body; StudyError -> `error: ...` on stderr and its exit code (one with exit code 0,
    such as NothingToDo, is a plain line on stdout: nothing to do is not an error)."""
    try:
        code = body()
    except StudyError as exc:
        if exc.exit_code == EXIT_OK:
            print(exc)
            return EXIT_OK
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:  # a dependency imported inside the body (torch, lazily)
        message = missing_dependency_message(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if code is None else code


def exit_script(code: int) -> None:
    """Leave the process with `code`. One of several torchrun processes leaves at once, without the
    interpreter's teardown: DDP keeps the gloo process group (and its threads) alive in C++ after
    destroy_process_group, and tearing the interpreter down around those threads aborted one rank with
    SIGABRT ("terminate called without an active exception") in some clean-clone CI runs, after the run's
    files were all written. By this point every file is closed and renamed into place; only the
    standard streams need flushing. A single process exits the ordinary way."""
    if _int_or_zero(os.environ.get("WORLD_SIZE")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _int_or_zero(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
