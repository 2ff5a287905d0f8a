"""The history JSON is rewritten with each checkpoint (fsynced) and at the end, and between them at most
every HISTORY_REFRESH_S seconds without fsync, not at every log point: a run killed between checkpoints
leaves the history of its last checkpoint, and resumed it ends exactly as an uninterrupted run."""

from __future__ import annotations

import os
import signal

import pytest

import train_large_100k
from bertstudy.base import atomic_io
from bertstudy.base.atomic_io import read_json
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import run_log
from tests.training.test_resume import RUN, _assert_same_as_reference, _start, _wait_for, reference  # noqa: F401
from tests.train_helpers import tiny_args


@pytest.mark.slow  # trains the reference run and its own
def test_a_run_writes_the_history_at_checkpoints_not_at_each_point(reference, tmp_path, monkeypatch):  # noqa: F811
    root, corpus, reference_out = reference
    writes = []
    real = run_log.write_history
    monkeypatch.setattr(run_log, "write_history",
                        lambda path, history, durable=True: (writes.append((list(history["steps"]), durable)),
                                                             real(path, history, durable))[1])
    out = tmp_path / "counted"
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache", **RUN)) == 0
    # 6 log points and 4 evals (steps 0, 4, 8, 12) used to be 10 rewrites, each fsynced; now the first point
    # (the step-0 eval, so the file exists from the start), then one per checkpoint (4, 8, 12) and the end
    assert writes == [([], False), ([2, 4], True), ([2, 4, 6, 8], True), ([2, 4, 6, 8, 10, 12], True),
                      ([2, 4, 6, 8, 10, 12], True)]
    _assert_same_as_reference(reference_out, out)


def test_without_fsync_the_file_is_still_replaced_whole(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic_io.os, "fsync", lambda fd: synced.append(fd))
    path = tmp_path / "h.json"
    run_log.write_history(path, {"steps": [1]}, durable=False)
    assert read_json(path) == {"steps": [1]} and synced == []
    run_log.write_history(path, {"steps": [1, 2]})
    assert read_json(path) == {"steps": [1, 2]} and len(synced) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]  # no temporary file left behind


def test_points_rewrite_the_file_after_the_refresh_interval(tmp_path):
    clock = iter([100.0, 130.0, 161.0, 162.0])
    history_file = run_log.HistoryFile(tmp_path / "h.json", refresh_s=60.0, clock=lambda: next(clock))
    history_file.point({"steps": [1]})  # first: written (at 100)
    history_file.point({"steps": [1, 2]})  # 30 s later: skipped
    history_file.point({"steps": [1, 2, 3]})  # 61 s after the write: written (at 161)
    assert read_json(tmp_path / "h.json") == {"steps": [1, 2, 3]}
    history_file.save({"steps": [1, 2, 3, 4]})  # a checkpoint: always (at 162)
    assert read_json(tmp_path / "h.json") == {"steps": [1, 2, 3, 4]}


@pytest.mark.slow  # a training subprocess killed between checkpoints
def test_killed_between_checkpoints_the_file_holds_the_last_checkpoints_history(reference, tmp_path):  # noqa: F811
    root, corpus, reference_out = reference
    out = tmp_path / "killed"
    args = tiny_args(corpus, out, root / "cache", **RUN)
    log = out / "training_log_100k.jsonl"
    process = _start(args, tmp_path / "unused", step_pause=0.25)
    _wait_for(lambda: log.exists() and '"kind": "train", "step": 6' in log.read_text(encoding="utf-8"), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    on_disk = read_json(out / "training_history_100k.json")
    saved = ckpt.load_checkpoint(ckpt.list_checkpoints(out / "checkpoints_100k")[-1][1])["history"]
    assert on_disk["steps"] == [2, 4] and on_disk["eval_steps"] == [0, 4] and on_disk == saved
    assert train_large_100k.main(args + ["--resume"]) == 0
    _assert_same_as_reference(reference_out, out)
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
