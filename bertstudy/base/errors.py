"""Exit codes shared by every script, and the one exception type that carries them.

Every script's --help lists these codes (see bertstudy.base.cli.EXIT_CODES_HELP).
"""

EXIT_OK = 0  # the job ran and every requested check passed
EXIT_CHECK_FAILED = 1  # the job ran but a requested check failed (thresholds, --require-r)
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_BAD_INPUT = 3  # an input file is missing, empty, malformed or of the wrong kind
EXIT_RUNTIME = 4  # the job could not finish: disk full, too many non-finite losses, server gave up
EXIT_NOTHING_TO_WATCH = 5  # check_progress.py found no file to report on
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: state was saved; rerun to continue (training: --resume)


class StudyError(Exception):
    """An error a user can act on: printed as one line `error: ...`, never a traceback."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInputError(StudyError):
    """An input file (or value) is unusable; the message names the file and, where known, the line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class UsageError(StudyError):
    """A command-line value is out of range (argparse's own errors also exit 2)."""

    exit_code = EXIT_USAGE


class NothingToDo(StudyError):
    """The command has nothing left to do (e.g. a finished run rerun): its message is printed as a
    plain line (not `error: ...`) and the exit code is 0; nothing was written."""

    exit_code = EXIT_OK
