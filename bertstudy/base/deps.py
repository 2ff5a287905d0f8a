"""A missing dependency is one line, not a traceback: running a script with a python that lacks the
project's packages (the system python instead of .venv/bin/python) says which package is missing and
how to get it, and exits 2 (a problem with how the command was run, not a failed check).

Importing this module (every script does, before anything else of the package) installs a
sys.excepthook for an uncaught ModuleNotFoundError of a runtime dependency; `run_main` uses
`missing_dependency_message` for those raised inside a script's body. Standard library only.
"""

from __future__ import annotations

import os
import sys

# import name -> the requirements.txt package (PIL comes with matplotlib)
DEPENDENCIES = {"torch": "torch", "numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib", "PIL": "matplotlib",
                "requests": "requests", "tqdm": "tqdm", "opencc": "opencc", "mwparserfromhell": "mwparserfromhell",
                "jieba": "jieba", "snownlp": "snownlp", "datasketch": "datasketch", "safetensors": "safetensors"}
EXIT_MISSING_DEPENDENCY = 2  # as bad usage: the command was run with the wrong python


def missing_dependency_message(exc: BaseException) -> str | None:
    """The one line for a ModuleNotFoundError of a runtime dependency; None for anything else."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if top not in DEPENDENCIES:
        return None
    return (f"error: the package {DEPENDENCIES[top]} is not installed for {sys.executable}; run the scripts with "
            f"the project's virtualenv: .venv/bin/python SCRIPT (or first: source .venv/bin/activate), which "
            f"`make venv` creates (or: python3 -m pip install -r requirements.txt)")


def _hook(kind, exc, traceback, previous=sys.excepthook):
    message = missing_dependency_message(exc)
    if message is None:
        previous(kind, exc, traceback)
        return
    print(message, file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_MISSING_DEPENDENCY)  # an excepthook cannot choose the exit status otherwise


if getattr(sys.excepthook, "__module__", None) != __name__:  # once, however often imported
    sys.excepthook = _hook
