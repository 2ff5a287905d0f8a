"""One weight format, one loader: files of the previous format version still load, resume and probe."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import train_large_100k
from bertstudy.base.errors import BadInputError
from bertstudy.downstream.probe import load_model
from bertstudy.pretraining.vocab import load_vocab
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training.weights import (CHECKPOINT, MILESTONE, OLDER_RUN_VALUES, PROBE_HINT, format_name,
                                        load_milestone, load_weights, migrate)
from tests.train_helpers import tiny_args

FLAGS = dict(milestones="0,3,6", keep_last=0)


def as_version_1(state: dict) -> dict:
    """`state` as the previous format wrote it: no model_config in a checkpoint, no pre_ln in a milestone's
    model_config, a config from before the recipe fields (where the run used their older values), 7 metric
    totals, `rng` without `rng_by_rank`."""
    kind = "checkpoint" if "optimizer" in state else "milestone"
    old = {**state, "format": format_name(kind, 1)}
    if kind == "checkpoint":
        del old["model_config"], old["rng_by_rank"]
        old["totals"] = list(state["totals"])[:7]
    else:
        old["model_config"] = {k: v for k, v in state["model_config"].items() if k != "pre_ln"}
    config = state["config"]
    old["config"] = {k: v for k, v in config.items()
                     if not (OLDER_RUN_VALUES.get(k, object()) == v or (k == "eval_mask_rate" and v == config["mask_rate"])
                             or (k == "split_seed" and v == config["seed"]))}
    return old


@pytest.fixture
def old_run(tiny_run, tmp_path):
    """A copy of a tiny run whose step-3 checkpoint and milestones are rewritten in the previous format, the
    later checkpoint and the final model removed: (corpus, cache, the copy, the untouched run)."""
    root, corpus, out, code = tiny_run("weights", **FLAGS)
    assert code == 0
    run = tmp_path / "run"
    shutil.copytree(out, run)
    folder = run / "checkpoints_100k"
    (folder / "step_000006.pth").unlink()
    (run / ckpt.FINAL_MODEL_NAME).unlink()
    shutil.rmtree(run / "export_hf", ignore_errors=True)
    for path in [folder / "step_000003.pth"] + [p for _, p in ms.list_milestones(folder)]:
        torch.save(as_version_1(torch.load(path, weights_only=True)), path)
    return corpus, root / "cache", run, out


def test_an_old_checkpoint_loads_as_the_current_version(old_run):
    _, _, run, out = old_run
    path = run / "checkpoints_100k" / "step_000003.pth"
    assert torch.load(path, weights_only=True)["format"].endswith("-v1")
    state = ckpt.load_checkpoint(path)
    assert state["format"] == ckpt.CHECKPOINT_FORMAT
    new = ckpt.load_checkpoint(out / "checkpoints_100k" / "step_000003.pth")
    assert state["model_config"] == new["model_config"]  # rebuilt from the config and the embedding's rows
    assert state["config"] == new["config"]
    assert state["rng_by_rank"] == [state["rng"]]
    assert math.isnan(state["totals"][-1]) and state["totals"][:7] == new["totals"][:7]
    milestone = load_milestone(run / "checkpoints_100k" / "milestone_000003.pth")
    assert milestone["model_config"]["pre_ln"] is False and milestone["format"] == format_name(MILESTONE)


def test_an_old_checkpoint_resumes_to_the_same_losses(old_run):
    corpus, cache, run, out = old_run
    assert train_large_100k.main(tiny_args(corpus, run, cache, resume="auto", **FLAGS)) == 0
    resumed = json.loads((run / "training_history_100k.json").read_text())
    whole = json.loads((out / "training_history_100k.json").read_text())
    for key in ("steps", "loss", "mlm_loss", "nsp_loss", "mlm_acc", "eval_mlm_loss"):
        assert resumed[key] == whole[key], key


def test_the_probe_loads_old_milestones_and_checkpoints(old_run):
    _, _, run, out = old_run
    vocab = load_vocab(run / "vocab.txt")
    for name in ("milestone_000003.pth", "step_000003.pth"):
        old, new = load_model(run / "checkpoints_100k" / name, vocab), load_model(out / "checkpoints_100k" / name, vocab)
        assert old.step == new.step == 3
        for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()):
            assert torch.equal(a, b)


def test_the_loader_dispatches_on_the_format(tiny_run, tmp_path):
    _, _, out, _ = tiny_run("weights", **FLAGS)
    milestone = out / "checkpoints_100k" / "milestone_000003.pth"
    with pytest.raises(BadInputError, match="is a milestone file, not a checkpoint file"):
        ckpt.load_checkpoint(milestone)
    with pytest.raises(BadInputError, match="final model"):
        load_weights(out / ckpt.FINAL_MODEL_NAME, (CHECKPOINT, MILESTONE), PROBE_HINT)
    newer = tmp_path / "newer.pth"
    torch.save({**torch.load(milestone, weights_only=True), "format": format_name(MILESTONE, 99)}, newer)
    with pytest.raises(BadInputError, match="version 99, newer"):
        load_milestone(newer)
    current = torch.load(milestone, weights_only=True)
    assert migrate(current) is current  # the current version passes through untouched
