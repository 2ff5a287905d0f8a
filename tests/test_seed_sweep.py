"""`make study-cpu SEEDS="1 2"`: the lines `make -n` expands to, run on tiny data as
tests/test_readme_commands.py runs the single-seed ones. A sweep stopped after its first seed continues
with the next without retraining the first; the seeds share the held-out split; the summary covers both."""

from __future__ import annotations

import json

import pytest

from bertstudy.base.atomic_io import iter_jsonl
from tests.readme_helpers import make_script_lines, make_workspace, run_line, script_of, tiny

pytestmark = pytest.mark.slow  # make study-cpu's lines for two seeds, each a subprocess


def _seed_of(tokens: list[str]) -> str | None:
    """The seed whose run folder a line works on (None: the shared lines and the summary over all seeds)."""
    if "--seeds-summary" in tokens:
        return None
    return next((t.rsplit("_seed", 1)[1].split("/")[0] for t in tokens if "cpu_study_seed" in t), None)


def test_seed_sweep_resumes_after_the_first_seed(tmp_path):
    work = make_workspace(tmp_path, "seeds")
    lines = make_script_lines(["study-cpu", "SEEDS=1 2", "FINETUNE_STEPS=5,12"], work)  # the tiny run's milestones
    summary_at = next(i for i, t in enumerate(lines) if "--seeds-summary" in t)
    seeds = [_seed_of(t) for t in lines[:summary_at]]  # after the summary: the band chart, then seed 1 published
    assert [s for s in dict.fromkeys(seeds) if s] == ["1", "2"]
    assert [script_of(t) for t in lines[:summary_at] if _seed_of(t) == "1"] == [
        "train_large_100k.py", "probe_downstream.py", "analyze_100k.py", "analyze_100k.py"]
    first_done = max(i for i, s in enumerate(seeds) if s == "1") + 1
    for tokens in lines[:first_done]:  # the sweep stops once seed 1 is done
        run_line(tiny(tokens), work)
    run1, run2 = work / "runs" / "cpu_study_seed1", work / "runs" / "cpu_study_seed2"
    assert not run2.exists()
    checkpoints = {p.name: p.read_bytes() for p in (run1 / "checkpoints_100k").glob("step_*.pth")}
    log_before = (run1 / "training_log_100k.jsonl").read_text()
    assert any(r["kind"] == "train" for _, r in iter_jsonl(run1 / "training_log_100k.jsonl"))
    for tokens in lines:  # make study-cpu SEEDS="1 2" again, from the top
        run_line(tiny(tokens), work)
    # seed 1 is complete: its rerun trains nothing, logs nothing, writes no checkpoint
    assert (run1 / "training_log_100k.jsonl").read_text() == log_before
    assert {p.name: p.read_bytes() for p in (run1 / "checkpoints_100k").glob("step_*.pth")} == checkpoints
    split1, split2 = (json.loads((run / "heldout_documents.json").read_text()) for run in (run1, run2))
    assert split1["heldout_ids"] == split2["heldout_ids"]  # the same held-out documents for every seed
    h1, h2 = (json.loads((run / "training_history_100k.json").read_text()) for run in (run1, run2))
    assert (h1["meta"]["config"]["seed"], h2["meta"]["config"]["seed"]) == (1, 2) and h1["mlm_acc"] != h2["mlm_acc"]
    summary = json.loads((work / "results" / "seeds_summary.json").read_text())
    assert summary["runs"] == ["runs/cpu_study_seed1", "runs/cpu_study_seed2"]
    figures = summary["figures"]
    assert figures["eval_mlm_acc.final"]["n"] == figures["eval_mask_acc.final"]["n"] == 2
    assert figures["eval_mask_acc.final"]["values"]["runs/cpu_study_seed2"] == h2["eval_mask_acc"][-1]
    for run in ("cpu_study_seed1", "cpu_study_seed2"):  # r as each run's own analysis has it (none: constant)
        for metric, name in (("eval_mlm_acc", "mlm"), ("eval_mask_acc", "mask")):
            r = json.loads((work / "runs" / run / f"analysis_heldout_{name}.json").read_text())["pearson_correlation"]
            assert figures.get(f"{metric}.pearson_r", {"values": {}})["values"].get(f"runs/{run}") == r

    # the band: each held-out accuracy at the steps both seeds evaluated, drawn in results/seeds.png
    band = summary["bands"]["eval_mask_acc"]
    assert band["steps"] == h1["eval_steps"] == h2["eval_steps"]
    assert band["runs"]["runs/cpu_study_seed2"] == h2["eval_mask_acc"]
    assert band["min"] == [min(a, b) for a, b in zip(h1["eval_mask_acc"], h2["eval_mask_acc"])]
    assert summary["shortcut"] == h1["meta"]["shortcut"] == h2["meta"]["shortcut"]
    assert (work / "results" / "seeds.png").stat().st_size > 10_000
    # results/ shows the first seed's run (its analyses; the history is copied by the Makefile's cp)
    published = json.loads((work / "results" / "analysis_100k_result.json").read_text())
    assert published["source"]["path"] == "runs/cpu_study_seed1/training_history_100k.json"
    assert published["metric"]["name"] == "eval_mask_acc"
    # the first seed is fine-tuned at a few milestones beside its frozen probes
    finetuned = json.loads((work / "runs" / "cpu_study_seed1" / "downstream_finetune_100k.json").read_text())
    assert [p["step"] for p in finetuned["tasks"]["cws"]["points"]] == [5, 12]
