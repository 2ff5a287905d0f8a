"""What the README tests share (tests/test_readme_commands.py, tests/test_seed_sweep.py): the README's command
lines read from the file, the tiny flags appended to a script line that runs here, the lines that cannot run
and why, a temporary copy of the repository to run them in, and one line run as a subprocess there."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRIPTS = ("rare_char_fetch.py", "verify_dataset.py", "train_large_100k.py", "analyze_100k.py",
           "visualize_results.py", "check_progress.py", "fill_mask.py")
TINY_TRAIN = ["--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--intermediate-size", "64",
              "--max-seq-len", "32", "--max-predictions", "5", "--batch-size", "4", "--grad-accum", "1",
              "--steps", "12", "--warmup-steps", "2", "--log-interval", "2", "--eval-interval", "6",
              "--save-interval", "6", "--eval-instances", "8", "--threads", "1", "--dropout", "0.0",
              "--keep-last", "1", "--no-progress"]
# Appended to a script's line when it runs here: smaller work, same meaning.
TINY_FLAGS = {
    "rare_char_fetch.py": ["--embedded-parts", "peoples_daily", "--max-articles", "60"],  # embedded source only
    # the embedded profile's size thresholds are for the whole corpus; every other threshold stays the profile's
    "verify_dataset.py": ["--min-sentences", "200", "--min-vocab", "300", "--max-near-dup-rate", "0.05"],
    "train_large_100k.py": TINY_TRAIN,
    "analyze_100k.py": ["--bootstrap", "50"],
    "visualize_results.py": ["--dpi", "150"],
    "check_progress.py": [],  # --follow gets --count 1 (below): one refresh, then exit
    "fill_mask.py": [],
    "probe_downstream.py": ["--cws-train", "100", "--sentiment-train", "100", "--no-progress"],  # smaller probe sets
}
# Script lines that cannot run in a test, and why; they are checked to parse instead.
NOT_RUN = {
    "--source wiki-api": "crawls a live MediaWiki over the network (tests/corpus/test_mediawiki_real.py runs the "
                         "crawler against a local MediaWiki)",
    "bench/throughput.py": "times training steps of two models for minutes (tests/test_bench.py runs it small)",
    "--reference results/": "compares a run on the whole embedded corpus with the committed CPU tier's; a tiny run's "
                            "corpus differs, so the reference is refused (tests/test_monitor_alert.py runs the alert "
                            "on tiny runs of one corpus)",
}
COMMAND_START = re.compile(r"^(python3?|make|\.venv/bin/python)\s")
# The README tells the reader to run the scripts with this virtualenv (`source .venv/bin/activate`, or
# `.venv/bin/python` for `python`); its lines run here through that venv's python (the one `make test`
# made), or this interpreter where the checkout has no .venv.
README_VENV = ".venv"
VENV_PYTHON = ROOT / README_VENV / "bin" / "python"


def readme_commands(text: str) -> list[list[str]]:
    """Command lines, as token lists, in README order, each once: lines of ```sh / ```bash / ```shell
    blocks (comments dropped) and inline `code` that starts like a command."""
    found: list[tuple[int, list[str]]] = []
    for block in re.finditer(r"```(?:sh|bash|shell|console)\n(.*?)```", text, re.S):
        for offset, line in enumerate(block.group(1).splitlines()):
            tokens = shlex.split(line.lstrip("$ "), comments=True)
            if tokens:
                found.append((block.start(1) + offset, tokens))
    fenced = [(m.start(), m.end()) for m in re.finditer(r"```.*?```", text, re.S)]
    for span in re.finditer(r"`([^`\n]+)`", text):
        if any(lo <= span.start() < hi for lo, hi in fenced):
            continue
        if COMMAND_START.match(span.group(1)):
            found.append((span.start(), shlex.split(span.group(1))))
    commands: list[list[str]] = []
    for _, tokens in sorted(found, key=lambda item: item[0]):
        if tokens not in commands:
            commands.append(tokens)
    return commands


def is_make(tokens: list[str]) -> bool:
    return tokens[0] == "make"


def is_torchrun(tokens: list[str]) -> bool:
    return tokens[0] == "torchrun"


def split_torchrun(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(torchrun's own arguments, the script line as `python SCRIPT ARGS`)."""
    at = next(i for i, token in enumerate(tokens) if token.endswith(".py"))
    return tokens[1:at], ["python", *tokens[at:]]


def script_of(tokens: list[str]) -> str | None:
    """The script a python line runs (None for `python -m ...`)."""
    return tokens[1] if len(tokens) > 1 and tokens[1].endswith(".py") else None


def not_run_reason(tokens: list[str]) -> str | None:
    line = " ".join(tokens)
    if len(tokens) > 1 and tokens[1] == "-m":
        return "runs the test suite itself"
    return next((why for needle, why in NOT_RUN.items() if needle in line), None)


def expand_placeholders(commands: list[list[str]]) -> list[list[str]]:
    """`python SCRIPT --help` stands for each pipeline script's --help."""
    out = []
    for tokens in commands:
        if len(tokens) > 1 and tokens[1] == "SCRIPT":
            out += [[tokens[0], script, *tokens[2:]] for script in SCRIPTS]
        else:
            out.append(tokens)
    return out


def check_parses(tokens: list[str]) -> None:
    """argparse accepts the line (what a run would do first), without running it."""
    script = ROOT / script_of(tokens)
    name = f"readme_{script.stem}"
    module = sys.modules.get(name)
    if module is None:  # by file path: bench/throughput.py is not importable by name
        spec = importlib.util.spec_from_file_location(name, script)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    try:
        module.build_parser().parse_args(tokens[2:])
    except SystemExit as exc:
        pytest.fail(f"README line does not parse ({exc.code}): {shlex.join(tokens)}")


WORKSPACE_FOLDERS = ("bertstudy", "results", "scripts", "bench")


def ignored_by_git(root: Path, paths: list[Path]) -> set[Path]:
    """The paths git ignores in `root` (a user's own runs: results/quickstart/, runs/, data/); none outside git."""
    if not (root / ".git").exists() or not paths:
        return set()
    names = "\0".join(str(p.relative_to(root)) for p in paths) + "\0"
    done = subprocess.run(["git", "-C", str(root), "check-ignore", "-z", "--stdin"], input=names,
                          capture_output=True, text=True)
    return {root / name for name in done.stdout.split("\0") if name}


def make_workspace(tmp_path: Path, name: str, root: Path = ROOT) -> Path:
    """A copy of the repository's scripts, package, Makefile and committed results/.

    Only what the repository holds: what the user's own runs left in the tree (the quickstart's
    results/quickstart/, which git ignores) stays out, so the tests do not depend on it."""
    work = tmp_path / name
    work.mkdir()
    for path in root.iterdir():
        if path.suffix in (".py", ".txt") or path.name in ("Makefile", "README.md"):
            shutil.copy2(path, work / path.name)
    for folder in WORKSPACE_FOLDERS:
        entries = [p for p in (root / folder).rglob("*")]
        ignored = ignored_by_git(root, entries)

        def skip(directory: str, names: list[str], ignored=ignored) -> set[str]:
            return {n for n in names if n == "__pycache__" or n.endswith(".pyc")
                    or Path(directory) / n in ignored}

        shutil.copytree(root / folder, work / folder, ignore=skip)
    return work


def tiny(tokens: list[str]) -> list[str]:
    extra = list(TINY_FLAGS.get(script_of(tokens), []))
    if script_of(tokens) == "rare_char_fetch.py" and "wiki-dump" in tokens:
        extra = []  # the dump the test writes is tiny already
    if script_of(tokens) == "check_progress.py" and "--follow" in tokens:
        extra += ["--count", "1", "--interval", "0.1"]
    return tokens + extra


def readme_python() -> str:
    """The interpreter the README's `python` means: the virtualenv's (README_VENV)."""
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def run_line(tokens: list[str], cwd: Path) -> subprocess.CompletedProcess:
    argv = [readme_python(), *tokens[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"README line failed with exit {done.returncode}: {shlex.join(tokens)}\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def make_script_lines(target_args: list[str], cwd: Path) -> list[list[str]]:
    """The python script lines `make -n ARGS` would run (PY=python, so they read like the README's)."""
    done = subprocess.run(["make", "-n", *target_args, "PY=python"], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"make -n {shlex.join(target_args)} failed: {done.stderr}"
    lines = [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("python ")]
    return [tokens for tokens in lines if script_of(tokens)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}
