"""`make venv` once .venv exists reinstalls torch when TORCH_SPEC or TORCH_INDEX changes
(a stamp named after them), and does nothing while they stay the same. Checked with `make -n`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(work: Path, *args: str) -> str:
    done = subprocess.run(["make", "-n", *args, "venv"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _installed_venv(tmp_path: Path) -> Path:
    """A copy of the Makefile beside a .venv made by the default `make venv` (its stamps, no packages)."""
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("Makefile", "requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, work / name)
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\n")
    (bin_dir / "python").chmod(0o755)
    stamp = next(line for line in _dry_run(work).splitlines() if line.startswith("printf")).rsplit("> ", 1)[1]
    (work / stamp).write_text("torch==2.13.0\n")
    (work / ".venv" / ".installed").write_text("")
    return work


def test_same_spec_is_nothing_to_do_and_another_spec_reinstalls_torch(tmp_path):
    work = _installed_venv(tmp_path)
    assert "pip" not in _dry_run(work)  # the default again: up to date
    cuda = "https://download.pytorch.org/whl/cu128"
    lines = _dry_run(work, "TORCH_SPEC=torch==2.13.0", f"TORCH_INDEX={cuda}")
    assert "pip uninstall -q -y torch" in lines  # the CPU build goes first: pip would keep it
    assert f'pip install -q --index-url {cuda} "torch==2.13.0"' in lines
    assert "pip install -q -r requirements-test.txt" in lines
    assert "pip uninstall" in _dry_run(work, "TORCH_SPEC=torch")  # any other spec, too


def test_torch_is_imported_after_numpy_is_installed(tmp_path):
    """Imported before the requirements (numpy), torch warns "Failed to initialize NumPy" during the install."""
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("Makefile", "requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, work / name)
    lines = _dry_run(work).splitlines()  # a fresh clone: every step
    requirements = next(i for i, line in enumerate(lines) if "pip install -q -r requirements-test.txt" in line)
    torch_check = next(i for i, line in enumerate(lines) if "import torch" in line)
    assert torch_check > requirements


def test_make_alone_lists_the_targets(tmp_path):
    # run as `make test` runs the tests, a nested make would print "Entering directory" lines: not here
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr == ""
    listed = {line.split()[1] for line in done.stdout.splitlines()}
    phony = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    assert listed == set(phony.split()[1:])  # every target, each with its line of help
