"""results/cpu_study_seeds/ as committed: the three CPU-tier seeds' per-step files are all there, and the
summary across the seeds (the r of [MASK]-accuracy lead against score lead at equal step among it) is
what those files give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import analyze_100k

SEEDS_DIR = Path(__file__).resolve().parents[2] / "results" / "cpu_study_seeds"
PER_SEED = ("training_history_100k.json", "downstream_100k.json", "analysis_heldout_mlm.json",
            "analysis_heldout_mask.json", "resolved_config.json")


def test_every_seed_has_its_history_downstream_file_and_analyses():
    seeds = sorted(p.name for p in SEEDS_DIR.iterdir() if p.is_dir())
    assert seeds == ["seed1", "seed2", "seed3"]
    for seed in seeds:
        for name in PER_SEED:
            assert (SEEDS_DIR / seed / name).is_file(), f"{seed}/{name} is not committed"
        downstream = json.loads((SEEDS_DIR / seed / "downstream_100k.json").read_text(encoding="utf-8"))
        for task in ("cws", "ner", "sentiment"):  # every log milestone of cpu_study scored
            assert len(downstream["tasks"][task]["points"]) == 13, f"{seed}: {task}"


@pytest.mark.slow
def test_the_committed_seeds_summary_is_what_the_committed_analyses_give(tmp_path, monkeypatch):
    # each analysis names its history as it lay when the analysis was made (runs/cpu_study_seedN/...):
    # the committed copies are put back there, in a scratch folder
    for seed in ("1", "2", "3"):
        run = tmp_path / "runs" / f"cpu_study_seed{seed}"
        run.mkdir(parents=True)
        shutil.copy(SEEDS_DIR / f"seed{seed}" / "training_history_100k.json", run)
    monkeypatch.chdir(tmp_path)
    inputs = [str(SEEDS_DIR / seed / name) for seed in ("seed1", "seed2", "seed3")
              for name in ("analysis_heldout_mlm.json", "analysis_heldout_mask.json")]
    out = tmp_path / "seeds_summary.json"
    assert analyze_100k.main(["--seeds-summary", *inputs, "--out", str(out)]) == 0
    recomputed = json.loads(out.read_text(encoding="utf-8"))
    committed = json.loads((SEEDS_DIR / "seeds_summary.json").read_text(encoding="utf-8"))
    for key in ("runs", "figures", "downstream_across_seeds", "bands", "shortcut"):
        assert recomputed[key] == committed[key], key
