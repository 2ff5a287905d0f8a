"""Kill -9 a training run (between checkpoints, twice in one run, and in the middle of writing one),
resume it, and get exactly the history and weights of an uninterrupted run (CPU, one thread, dropout on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train_large_100k
from bertstudy.training import checkpoint as ckpt
from bertstudy.base.atomic_io import iter_jsonl, read_json
from bertstudy.training.run_log import TIMING_LISTS
from tests.train_helpers import tiny_args

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # training subprocesses killed and resumed, against a reference run
ROOT = Path(__file__).resolve().parent.parent.parent
RUN = dict(steps=12, save_interval=4, log_interval=2, eval_interval=4, dropout=0.1, keep_last=2)

# The training script, slowed down so a test can signal it at a known point: each optimizer step
# sleeps SLOW_STEP_SECONDS, and the save of step SLOW_SAVE_STEP writes a few bytes of the checkpoint's
# temporary file, touches IN_WRITE_MARKER, then waits SLOW_SAVE_SECONDS before really saving.
LAUNCHER = """
import os, sys, time
from pathlib import Path
import torch
from bertstudy.training import trainer
env = os.environ
step_pause, save_step, save_pause = float(env["SLOW_STEP_SECONDS"]), int(env["SLOW_SAVE_STEP"]), float(env["SLOW_SAVE_SECONDS"])
real_save, real_step = torch.save, trainer.Trainer.train_step
def slow_save(obj, handle, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("step") == save_step:
        handle.write(b"PK partial checkpoint")
        handle.flush()
        Path(env["IN_WRITE_MARKER"]).touch()
        time.sleep(save_pause)
    return real_save(obj, handle, *args, **kwargs)
def slow_step(self, *args, **kwargs):
    time.sleep(step_pause)
    return real_step(self, *args, **kwargs)
torch.save, trainer.Trainer.train_step = slow_save, slow_step
import train_large_100k
from bertstudy.base.cli import exit_script  # as the script ends (train_large_100k.py)
exit_script(train_large_100k.main(sys.argv[1:]))
"""


def _comparable(out: Path) -> tuple[dict, list]:
    history = read_json(out / "training_history_100k.json")
    for name in TIMING_LISTS:
        assert len(history.pop(name)) == len(history["steps"])
    meta = history.pop("meta")
    for key in ("started_at", "finished_at", "config"):
        meta.pop(key)
    records = [{k: v for k, v in r.items() if k not in ("time", "path", *TIMING_LISTS)}
               for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r["kind"] in ("train", "eval", "checkpoint")]
    return {**history, "meta": meta}, records


def _final_weights(out: Path) -> dict:
    return ckpt.load_final_model(out / ckpt.FINAL_MODEL_NAME)["model"]


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The uninterrupted run (trained once per session: test_history_writes compares with it too)."""
    root, corpus, out, code = tiny_run("resume", **RUN)
    assert code == 0
    return root, corpus, out


def _start(args, marker: Path, step_pause=0.0, save_step=-1, save_pause=0.0):
    env = {**os.environ, "SLOW_STEP_SECONDS": str(step_pause), "SLOW_SAVE_STEP": str(save_step),
           "SLOW_SAVE_SECONDS": str(save_pause), "IN_WRITE_MARKER": str(marker)}
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(condition, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


def _assert_same_as_reference(reference_out: Path, out: Path, extra_checkpoints: bool = False) -> None:
    expected_history, expected_records = _comparable(reference_out)
    history, records = _comparable(out)
    assert history == expected_history
    if extra_checkpoints:  # a SIGTERM adds one checkpoint (and its record) at the step it stopped
        expected_records = [r for r in expected_records if r["kind"] != "checkpoint"]
        records = [r for r in records if r["kind"] != "checkpoint"]
    assert records == expected_records
    theirs, ours = _final_weights(reference_out), _final_weights(out)
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)


def test_sigkill_between_checkpoints_twice_then_resume_equals_uninterrupted(reference, tmp_path):
    """Two kills in one run (steps 6 and 10, each past a different checkpoint): resume twice."""
    root, corpus, reference_out = reference
    out = tmp_path / "killed_twice"
    args = tiny_args(corpus, out, root / "cache", **RUN)
    log = out / "training_log_100k.jsonl"
    for kill_step, extra, kept in ((6, [], [4]), (10, ["--resume"], [4, 8])):
        process = _start(args + extra, tmp_path / "unused", step_pause=0.25)
        marker = f'"kind": "train", "step": {kill_step}'
        _wait_for(lambda: log.exists() and marker in log.read_text(encoding="utf-8"), process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints_100k")] == kept
    assert train_large_100k.main(args + ["--resume"]) == 0
    _assert_same_as_reference(reference_out, out)
    starts = [r for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r["kind"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 4, 8]


def test_sigkill_during_a_checkpoint_write_then_resume_equals_uninterrupted(reference, tmp_path):
    root, corpus, reference_out = reference
    out = tmp_path / "killed_in_write"
    marker = tmp_path / "in_write"
    args = tiny_args(corpus, out, root / "cache", **RUN)
    process = _start(args, marker, save_step=8, save_pause=120)
    _wait_for(marker.exists, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    folder = out / "checkpoints_100k"
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [4]  # step 8 exists only as a torn temp file
    assert any(p.name.startswith(".step_000008.pth.") for p in folder.iterdir())
    assert train_large_100k.main(args + ["--resume"]) == 0
    _assert_same_as_reference(reference_out, out)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [8, 12]  # keep_last 2


def test_sigterm_saves_a_checkpoint_and_exits_130(reference, tmp_path):
    root, corpus, reference_out = reference
    out = tmp_path / "terminated"
    args = tiny_args(corpus, out, root / "cache", **RUN)
    marker = tmp_path / "in_write"
    process = _start(args, marker, save_step=8, save_pause=3)
    _wait_for(marker.exists, process)
    process.send_signal(signal.SIGTERM)  # during the step-8 save: the run stops after step 9
    assert process.wait(timeout=60) == 130
    assert "interrupted: checkpoint saved at step 9" in process.stderr.read().decode()
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints_100k")] == [8, 9]
    records = [r for _, r in iter_jsonl(out / "training_log_100k.jsonl")]
    assert records[-1]["kind"] == "end" and records[-1]["status"] == "interrupted"
    assert train_large_100k.main(args + ["--resume"]) == 0
    _assert_same_as_reference(reference_out, out, extra_checkpoints=True)


def _group_alive(pgid: int) -> list[int]:
    """Processes of process group pgid still running (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def test_sigterm_to_the_group_with_loader_workers_saves_and_resumes_exactly(reference, tmp_path):
    """torchrun, SLURM and `timeout` signal the whole process group. With two loader
    workers the workers must leave SIGTERM to the training process: before, they died, the step raised
    'DataLoader worker ... is killed by signal: Terminated', exit 1 and no checkpoint."""
    root, corpus, reference_out = reference
    out = tmp_path / "group_terminated"
    args = tiny_args(corpus, out, root / "cache", **RUN)
    env = {**os.environ, "SLOW_STEP_SECONDS": "0.25", "SLOW_SAVE_STEP": "-1", "SLOW_SAVE_SECONDS": "0",
           "IN_WRITE_MARKER": str(tmp_path / "unused")}
    process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args, "--data-workers", "2"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = out / "training_log_100k.jsonl"
    _wait_for(lambda: log.exists() and '"kind": "train", "step": 6' in log.read_text(encoding="utf-8"), process)
    os.killpg(process.pid, signal.SIGTERM)  # the training process and its two workers
    code = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    assert code == 130, stderr[-3000:]
    stopped = [s for s, _ in ckpt.list_checkpoints(out / "checkpoints_100k")][-1]
    assert 6 <= stopped < RUN["steps"] and f"checkpoint saved at step {stopped}" in stderr
    deadline = time.monotonic() + 15
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_alive(process.pid) == []  # no worker left behind
    assert train_large_100k.main(args + ["--resume", "--data-workers", "2"]) == 0
    _assert_same_as_reference(reference_out, out, extra_checkpoints=True)
