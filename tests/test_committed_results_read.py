"""Every committed history under results/ is still read by the analyzer, and the committed CPU-tier run
(history, analysis, probe file) still draws: a change to the formats or readers that left them behind
fails here, not in a user's hands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import visualize_results
from bertstudy.analysis.history import load_history

ROOT = Path(__file__).resolve().parent.parent


def committed(pattern: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in listed.stdout.splitlines() if Path(line).match(pattern)]


def test_every_committed_history_loads():
    histories = committed("*training_history_100k.json")
    assert len(histories) >= 26  # the CPU tier, the horizon run, 3 reruns, 21 across-model runs
    for path in histories:
        history = load_history(path)
        assert len(history.steps) > 0 and len(history.steps) == len(history.mlm_acc), path


@pytest.mark.slow
def test_the_committed_cpu_tier_run_still_draws(tmp_path):
    results = ROOT / "results"
    code = visualize_results.main([str(results / "training_history_100k.json"),
                                   "--analysis", str(results / "analysis_100k_result.json"),
                                   "--downstream", str(results / "downstream_100k.json"),
                                   "--out-dir", str(tmp_path), "--dpi", "150"])
    assert code == 0 and sorted(p.name for p in tmp_path.glob("*.png"))
