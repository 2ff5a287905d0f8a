"""A script run with a python that lacks a dependency (the system python instead of the
virtualenv) prints one line naming the virtualenv and the install command, and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _shadow(tmp_path: Path, *names: str) -> dict:
    """An environment whose PYTHONPATH hides `names` as the system python without them would."""
    for name in names:
        package = tmp_path / "shadow" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow"), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.mark.parametrize("argv", [
    ["verify_dataset.py", "CORPUS"],  # imports its figures' packages inside the body
    ["train_large_100k.py", "--help"],
    ["analyze_100k.py", "--help"],
    ["visualize_results.py", "--help"],
    ["probe_downstream.py", "RUN"],  # imports torch once the command line is valid
])
def test_a_missing_package_is_one_line_and_exit_2(tmp_path, argv):
    env = _shadow(tmp_path, "numpy", "torch", "matplotlib", "datasketch", "tqdm", "requests", "opencc")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "d", "source": "test", "sentences": ["一个中文句子在这里"]}\n', encoding="utf-8")
    argv = [{"CORPUS": str(corpus), "RUN": str(tmp_path)}.get(a, a) for a in argv] + \
        (["--report", str(tmp_path / "r.json")] if argv[0] == "verify_dataset.py" else [])
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the package ") and ".venv/bin/python" in lines[0] and "make venv" in lines[0]


def test_a_missing_package_inside_the_body_is_one_line_and_exit_2(tmp_path):
    """train_large_100k.py imports torch only once its command line is valid: run_main catches that too."""
    env = _shadow(tmp_path, "torch")
    done = subprocess.run([sys.executable, "train_large_100k.py", "--preset", "quick", "--out-dir", str(tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith("error: the package torch is not installed"), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_a_missing_module_that_is_not_a_dependency_is_still_a_traceback():
    from bertstudy.base.deps import missing_dependency_message

    assert missing_dependency_message(ModuleNotFoundError("No module named 'bertstudy.nope'", name="bertstudy.nope")) is None
    assert "scipy" in missing_dependency_message(ModuleNotFoundError("x", name="scipy.stats"))
