"""Checkpoints: atomic plain-data files, safe loading (no pickled code runs), resume lookup, refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import train_large_100k
from bertstudy.training import checkpoint as ckpt
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_USAGE, BadInputError
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)


class CreatesMarkerWhenUnpickled:
    """Unpickling this runs open(marker, "w"): a stand-in for any code a hostile .pth could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    root, corpus, out, code = tiny_run("ckpt", steps=6, save_interval=2, keep_last=0)
    assert code == 0
    return root, corpus, out


def test_rng_states_round_trip():
    states = ckpt.capture_rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    ckpt.restore_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_saved_checkpoint_is_plain_data_and_complete(run_dir):
    _, _, out = run_dir
    path = ckpt.checkpoint_path(out / ckpt.CHECKPOINT_DIR_NAME, 4)
    state = ckpt.load_checkpoint(path)  # weights_only=True inside
    assert state["step"] == 4 and state["format"] == ckpt.CHECKPOINT_FORMAT
    for key in ("model", "optimizer", "rng", "config", "vocab_hash", "history", "data_position", "elapsed_s"):
        assert key in state
    assert state["history"]["steps"] == [2, 4]
    assert state["data_position"]["next_step"] == 4 and state["config"]["hidden_size"] == 32
    assert ckpt.load_final_model(out / ckpt.FINAL_MODEL_NAME)["step"] == 6


def test_pickled_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "checkpoints_100k" / "step_000009.pth"
    evil.parent.mkdir()
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "step": 9, "model": CreatesMarkerWhenUnpickled(marker)}, evil)
    with pytest.raises(BadInputError, match="step_000009.pth: refused"):
        ckpt.load_checkpoint(evil)
    assert ckpt.find_resume_checkpoint(evil.parent) is None
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # proof that the payload is real: an unsafe load does run it
    assert marker.exists()


def test_truncated_newest_checkpoint_is_skipped_for_resume(run_dir, tmp_path, capsys):
    _, _, out = run_dir
    folder = tmp_path / "checkpoints_100k"
    folder.mkdir()
    for step in (2, 4):
        (folder / f"step_00000{step}.pth").write_bytes(ckpt.checkpoint_path(out / "checkpoints_100k", step).read_bytes())
    newest = folder / "step_000004.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        ckpt.load_checkpoint(newest)
    state, path = ckpt.find_resume_checkpoint(folder)
    assert path.name == "step_000002.pth" and state["step"] == 2
    assert "skipping checkpoint" in capsys.readouterr().err
    (folder / "step_000006.pth").write_bytes(b"")
    (folder / "notes.txt").write_text("not a checkpoint")
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [2, 4, 6]
    assert ckpt.find_resume_checkpoint(folder)[1].name == "step_000002.pth"


def test_other_files_are_refused(tmp_path):
    plain = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(BadInputError, match="not a chinese-bert-correlation/checkpoint-v2"):
        ckpt.load_checkpoint(plain)
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "step": 1}, plain)
    with pytest.raises(BadInputError, match="lacks"):
        ckpt.load_checkpoint(plain)
    with pytest.raises(BadInputError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing.pth")


def test_resume_with_a_changed_architecture_or_lr_is_refused_naming_the_fields(run_dir, capsys):
    root, corpus, out = run_dir
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = train_large_100k.main(tiny_args(corpus, out, root / "cache", steps=8, hidden_size=64, lr=1e-3) + ["--resume"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step_000006.pth" in err[0]
    assert "hidden_size 32, lr 0.002" in err[0] and "gives hidden_size 64, lr 0.001" in err[0]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_with_another_vocabulary_is_refused(run_dir, tmp_path, capsys):
    root, _, out = run_dir
    other_corpus = write_tiny_corpus(tmp_path, num_documents=25, seed=5)
    checkpoint = ckpt.checkpoint_path(out / "checkpoints_100k", 4)
    code = train_large_100k.main(tiny_args(other_corpus, tmp_path / "o", root / "cache", steps=8)
                                 + ["--resume", str(checkpoint)])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "step_000004.pth" in err and "another vocabulary" in err


def test_keep_last_prunes_oldest(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.checkpoint_path(tmp_path, step).write_bytes(b"x")
    removed = ckpt.prune_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["step_000001.pth", "step_000002.pth"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]
    assert ckpt.prune_checkpoints(tmp_path, 0) == []


def test_overwrite_removes_an_earlier_runs_checkpoints(run_dir, tmp_path, capsys):
    root, corpus, out = run_dir
    fresh = tmp_path / "fresh"
    folder = fresh / "checkpoints_100k"
    folder.mkdir(parents=True)
    for step in (2, 4, 6, 900):  # 900: an earlier, longer run's, which a later --resume would pick
        ckpt.checkpoint_path(folder, step).write_bytes(ckpt.checkpoint_path(out / "checkpoints_100k", 6).read_bytes())
    args = tiny_args(corpus, fresh, root / "cache", steps=2, save_interval=2)
    assert train_large_100k.main(args + ["--overwrite"]) == 0
    assert "--overwrite: removing 4 checkpoint(s) of an earlier run" in capsys.readouterr().err
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [2]
