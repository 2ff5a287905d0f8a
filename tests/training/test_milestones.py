"""Milestone checkpoints (--milestones) and the recorded held-out split, on a tiny run."""

from __future__ import annotations

import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import iter_jsonl, read_json
from bertstudy.training.checkpoint import list_checkpoints
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.base.errors import EXIT_OK, EXIT_USAGE, BadInputError, UsageError
from bertstudy.pretraining.heldout_split import SPLIT_NAME, read_split, recompute_split
from bertstudy.training.milestones import list_milestones, log_spaced_steps, milestone_steps
from bertstudy.training.weights import load_milestone
from bertstudy.training.config import preset_config
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)


def test_log_spaced_steps_are_pythia_style():
    assert log_spaced_steps(5000) == [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    assert log_spaced_steps(6) == [0, 1, 2, 5, 6]
    assert log_spaced_steps(1) == [0, 1]


def test_milestone_spec_parsing():
    assert milestone_steps("none", 100) == [] and milestone_steps("", 100) == []
    assert milestone_steps("30,7", 100) == [0, 7, 30]  # step 0 always joins
    assert milestone_steps("log,30", 100) == [0, 1, 2, 5, 10, 20, 30, 50, 100]
    with pytest.raises(UsageError, match="past the run's last step"):
        milestone_steps("200", 100)
    with pytest.raises(UsageError, match="neither"):
        milestone_steps("every", 100)


def test_presets_milestones():
    assert preset_config("cpu_study").milestones == "log"
    assert preset_config("quick").milestones == "none"  # make quickstart stays as fast as before


def test_bad_milestones_flag_exits_2(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    code = train_large_100k.main(tiny_args(corpus, tmp_path / "run", tmp_path / "cache", milestones="9999"))
    assert code == EXIT_USAGE


@pytest.fixture(scope="module")
def milestone_run(tiny_run):
    # keep_last 1: pruning removes every resumable checkpoint but the newest; milestones must stay
    _, corpus, out, code = tiny_run("milestones", milestones="log,4", keep_last=1)
    return code, out, corpus


def test_milestones_survive_pruning_with_their_eval(milestone_run):
    code, out, _ = milestone_run
    assert code == EXIT_OK
    folder = out / "checkpoints_100k"
    assert [s for s, _ in list_checkpoints(folder)] == [6]
    assert [s for s, _ in list_milestones(folder)] == [0, 1, 2, 4, 5, 6]
    history = read_json(out / "training_history_100k.json")
    assert history["meta"]["milestones"] == [0, 1, 2, 4, 5, 6]
    # an eval at every milestone step as well as at the eval interval (3)
    assert history["eval_steps"] == [0, 1, 2, 3, 4, 5, 6]
    records = [obj for _, obj in iter_jsonl(out / "training_log_100k.jsonl") if obj["kind"] == "milestone"]
    assert [r["step"] for r in records] == [0, 1, 2, 4, 5, 6]
    evals = dict(zip(history["eval_steps"], history["eval_mlm_acc"]))
    for record in records:
        state = load_milestone(record["path"])
        assert state["step"] == record["step"]
        assert state["heldout"]["mlm_acc"] == record["heldout_mlm_acc"] == evals[record["step"]]
    # the step-0 milestone is the untrained model; the last equals the final model's weights
    first, last = load_milestone(folder / "milestone_000000.pth"), load_milestone(folder / "milestone_000006.pth")
    assert not torch.equal(first["model"]["embeddings.word.weight"], last["model"]["embeddings.word.weight"])


def test_heldout_split_recorded_and_recomputable(milestone_run):
    _, out, corpus = milestone_run
    record = read_json(out / SPLIT_NAME)
    documents = load_documents(corpus)
    history = read_json(out / "training_history_100k.json")
    assert record["corpus_sha256"] == history["meta"]["corpus"]["sha256"]
    assert len(record["heldout_ids"]) == history["meta"]["corpus"]["heldout_documents"] >= 1
    assert record["heldout_ids"] == recompute_split(documents, record["seed"], record["heldout_fraction"])
    # an older run without the file: recomputed from the corpus its history names
    (out / SPLIT_NAME).rename(out / "moved.json")
    try:
        again = read_split(out, history["meta"])
        assert again["heldout_ids"] == record["heldout_ids"] and again["recomputed"]
        with pytest.raises(BadInputError, match="cannot tell which documents"):
            read_split(out, {})
    finally:
        (out / "moved.json").rename(out / SPLIT_NAME)


def test_overwrite_removes_an_earlier_runs_milestones(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", milestones="5")) == EXIT_OK
    assert [s for s, _ in list_milestones(out / "checkpoints_100k")] == [0, 5]
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", milestones="none")) == EXIT_USAGE  # refused
    assert [s for s, _ in list_milestones(out / "checkpoints_100k")] == [0, 5]  # and nothing deleted
    assert train_large_100k.main([*tiny_args(corpus, out, tmp_path / "cache", milestones="none"), "--overwrite"]) == EXIT_OK
    assert list_milestones(out / "checkpoints_100k") == []


def test_resume_rewrites_later_milestones_identically(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    args = tiny_args(corpus, out, tmp_path / "cache", milestones="log")
    assert train_large_100k.main(args) == EXIT_OK
    folder = out / "checkpoints_100k"
    before = {step: load_milestone(path) for step, path in list_milestones(folder)}
    # continue from step 3 as a resumed run would: milestones 5 and 6 are made again
    assert train_large_100k.main([*args, "--resume", str(folder / "step_000003.pth")]) == EXIT_OK
    after = {step: load_milestone(path) for step, path in list_milestones(folder)}
    assert sorted(after) == sorted(before) == [0, 1, 2, 5, 6]
    for step in after:
        assert after[step]["heldout"] == before[step]["heldout"]
        for name, tensor in before[step]["model"].items():
            assert torch.equal(after[step]["model"][name], tensor), (step, name)
    records = [obj for _, obj in iter_jsonl(out / "training_log_100k.jsonl") if obj["kind"] == "milestone"]
    assert [r["step"] for r in records] == [0, 1, 2, 5, 6]  # the log was cut back, not doubled
