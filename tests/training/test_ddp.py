"""Two DDP processes (torchrun, gloo, CPU) end with the weights of one process on the combined batch, and
resume exactly after SIGTERM and SIGKILL."""

from __future__ import annotations

import os
import re
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
from bertstudy.base.errors import EXIT_USAGE
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # torchrun pairs of processes, each its own interpreter and torch import
ROOT = Path(__file__).resolve().parent.parent.parent
RUN = dict(steps=4, grad_accum=2, log_interval=2, eval_interval=2, save_interval=2, dropout=0.0, warmup_steps=1)


def test_two_gloo_processes_equal_one_process_on_the_combined_batch(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    two = tmp_path / "ddp2"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "train_large_100k.py", *tiny_args(corpus, two, tmp_path / "cache", batch_size=4, device="cpu", **RUN)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    one = tmp_path / "single"
    assert train_large_100k.main(tiny_args(corpus, one, tmp_path / "cache", batch_size=8, device="cpu", **RUN)) == 0

    ddp_history, single_history = read_json(two / "training_history_100k.json"), read_json(one / "training_history_100k.json")
    assert ddp_history["meta"]["world_size"] == 2 and ddp_history["meta"]["global_batch"] == 16
    assert single_history["meta"]["global_batch"] == 16
    for key in ("steps", "eval_steps"):
        assert ddp_history[key] == single_history[key]
    for key in ("mlm_acc", "nsp_acc", "loss", "eval_mlm_acc", "eval_mlm_loss"):
        torch.testing.assert_close(torch.tensor(ddp_history[key]), torch.tensor(single_history[key]), rtol=1e-4, atol=1e-5)
    ddp_weights = ckpt.load_final_model(two / ckpt.FINAL_MODEL_NAME)["model"]
    single_weights = ckpt.load_final_model(one / ckpt.FINAL_MODEL_NAME)["model"]
    for name, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    initial = ckpt.load_checkpoint(ckpt.checkpoint_path(one / "checkpoints_100k", 2))["model"]
    changed = sum(not torch.equal(initial[name], single_weights[name]) for name in single_weights)
    assert changed > len(single_weights) // 2  # the runs really trained (the comparison is not of untouched weights)
    # only rank 0 writes: one log, one checkpoint per save
    assert [s for s, _ in ckpt.list_checkpoints(two / "checkpoints_100k")] == [2, 4]


# The training script under torchrun, with a hold: after optimizer step HOLD_AT_STEP rank 0 touches
# HOLD_MARKER and waits until the test removes it, so the test can signal every process at a known step.
# Each worker writes its pid to PID_DIR/rank<RANK> (torchrun starts workers in their own sessions).
DDP_LAUNCHER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["REPO_ROOT"])
from bertstudy.training import trainer
pids = Path(os.environ["PID_DIR"])
pids.mkdir(exist_ok=True)
(pids / ("rank" + os.environ["RANK"])).write_text(str(os.getpid()))
hold_at, marker = int(os.environ["HOLD_AT_STEP"]), Path(os.environ["HOLD_MARKER"])
real_step = trainer.Trainer.train_step
def held_step(self, step, *args, **kwargs):
    result = real_step(self, step, *args, **kwargs)
    if self.dist.is_main and step + 1 == hold_at:
        marker.touch()
        while marker.exists():
            time.sleep(0.02)
    return result
trainer.Trainer.train_step = held_step
import train_large_100k
from bertstudy.base.cli import exit_script  # as the script ends (train_large_100k.py)
exit_script(train_large_100k.main(sys.argv[1:]))
"""
DROPOUT_RUN = dict(steps=60, log_interval=10, save_interval=20, eval_interval=20, dropout=0.1, batch_size=4,
                   grad_accum=2, device="cpu", keep_last=0, num_layers=1)


def _torchrun(script, args, env, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def _run_held(launcher, args, tmp_path, hold_at, signum):
    """Start, wait until rank 0 holds after step hold_at, send signum to torchrun and both workers, release."""
    pid_dir, marker = tmp_path / f"pids_{hold_at}", tmp_path / f"hold_{hold_at}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "REPO_ROOT": str(ROOT),
           "PID_DIR": str(pid_dir), "HOLD_AT_STEP": str(hold_at), "HOLD_MARKER": str(marker)}
    process = _torchrun(launcher, args, env)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the hold"
        time.sleep(0.05)
    workers = [int((pid_dir / f"rank{r}").read_text()) for r in (0, 1)]
    for pid in [process.pid, *workers]:
        os.kill(pid, signum)
    marker.unlink()
    output = process.communicate(timeout=120)[0]
    return output


def _torchrun_two(env: dict, *args: str) -> None:
    """train_large_100k.py under torchrun with 2 gloo processes, which must finish (exit 0)."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "train_large_100k.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ddp_sigterm_mid_interval_then_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """2 gloo processes, dropout on: SIGTERM after step 33 (mid log interval), --resume, SIGKILL after
    step 47, --resume: history, log records and final weights equal the uninterrupted 2-process run."""
    from tests.training.test_resume import _assert_same_as_reference

    corpus = write_tiny_corpus(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    reference = tmp_path / "uninterrupted"
    _torchrun_two(env, *tiny_args(corpus, reference, tmp_path / "cache", **DROPOUT_RUN))

    launcher = tmp_path / "launch.py"
    launcher.write_text(DDP_LAUNCHER, encoding="utf-8")
    out = tmp_path / "interrupted"
    args = tiny_args(corpus, out, tmp_path / "cache", **DROPOUT_RUN)
    folder = out / "checkpoints_100k"
    output = _run_held(launcher, args, tmp_path, 33, signal.SIGTERM)
    assert "interrupted: checkpoint saved at step 33" in output, output[-3000:]
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [20, 33]
    saved = ckpt.load_checkpoint(ckpt.checkpoint_path(folder, 33))
    assert len(saved["rng_by_rank"]) == 2 and not torch.equal(saved["rng_by_rank"][0]["torch"],
                                                               saved["rng_by_rank"][1]["torch"])
    _run_held(launcher, args + ["--resume"], tmp_path, 47, signal.SIGKILL)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [20, 33, 40]

    _torchrun_two(env, *args, "--resume")
    _assert_same_as_reference(reference, out, extra_checkpoints=True)
    starts = [r["resumed_from"] for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r["kind"] == "start"]
    assert starts == [None, 33, 40]

    # the same checkpoint in one process, extended (a finished run is "already complete" whatever the
    # process count): another global batch, refused in one line
    single = subprocess.run([sys.executable, "train_large_100k.py", *args, "--resume", "--steps", "70"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == EXIT_USAGE
    assert single.stderr.strip().splitlines() == [single.stderr.strip()]
    assert "written by 2 process(es)" in single.stderr and "--nproc_per_node 2" in single.stderr


def test_ddp_sigterm_to_each_rank_s_group_with_loader_workers_saves_and_resumes_exactly(tmp_path):
    """A group signal under DDP: torchrun passes a SIGTERM on to each rank's whole process group
    (os.killpg), loader workers included. The workers leave it to their rank: checkpoint, exit 130,
    no process left, and the resumed run equals the uninterrupted one."""
    from tests.training.test_resume import _assert_same_as_reference, _group_alive

    corpus = write_tiny_corpus(tmp_path)
    run = {**DROPOUT_RUN, "steps": 24, "save_interval": 10, "eval_interval": 10, "log_interval": 5}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    reference = tmp_path / "uninterrupted"
    _torchrun_two(env, *tiny_args(corpus, reference, tmp_path / "cache", **run))
    launcher = tmp_path / "launch.py"
    launcher.write_text(DDP_LAUNCHER, encoding="utf-8")
    out = tmp_path / "interrupted"
    args = tiny_args(corpus, out, tmp_path / "cache", **run) + ["--data-workers", "2"]
    pid_dir, marker = tmp_path / "pids", tmp_path / "hold"
    process = _torchrun(launcher, args, {**env, "REPO_ROOT": str(ROOT), "PID_DIR": str(pid_dir),
                                         "HOLD_AT_STEP": "13", "HOLD_MARKER": str(marker)})
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()[-3000:]
        time.sleep(0.05)
    ranks = [int((pid_dir / f"rank{r}").read_text()) for r in (0, 1)]
    groups = [os.getpgid(pid) for pid in ranks]
    for group in groups:
        os.killpg(group, signal.SIGTERM)
    marker.unlink()
    output = process.communicate(timeout=120)[0]
    assert "interrupted: checkpoint saved at step 13" in output, output[-3000:]
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints_100k")] == [10, 13]
    time.sleep(1)
    assert all(_group_alive(group) == [] for group in groups)
    _torchrun_two(env, *args, "--resume")
    _assert_same_as_reference(reference, out, extra_checkpoints=True)


CACHE_FAILS_LAUNCHER = """
import os, sys
sys.path.insert(0, os.environ["REPO_ROOT"])
from bertstudy.base.errors import BadInputError
from bertstudy.training import run_data
def failing_cache(*args, **kwargs):
    raise BadInputError("corpus.jsonl", "rank 0 could not build the token cache (simulated)")
if os.environ["RANK"] == "0":
    run_data.load_or_build_cache = failing_cache
import train_large_100k
from bertstudy.base.cli import exit_script  # as the script ends (train_large_100k.py)
exit_script(train_large_100k.main(sys.argv[1:]))
"""


def test_when_rank_0_fails_building_the_cache_every_rank_stops_at_once_with_one_line(tmp_path):
    """The others heard of it through one collective and each printed one line,
    instead of waiting at the barrier (under NCCL until the process group's timeout)."""
    corpus = write_tiny_corpus(tmp_path)
    launcher = tmp_path / "launch.py"
    launcher.write_text(CACHE_FAILS_LAUNCHER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "REPO_ROOT": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--tee", "3", str(launcher), *tiny_args(corpus, tmp_path / "run", tmp_path / "cache", device="cpu")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and time.monotonic() - started < 60, text[-3000:]
    assert "[default0]:error: corpus.jsonl: rank 0 could not build the token cache (simulated)" in text, text[-3000:]
    assert "[default1]:error: rank 1: stopped because another rank failed while building the token cache" in text
    worker_lines = [line for line in text.splitlines() if line.startswith("[default")]
    assert not any("Traceback" in line for line in worker_lines), text[-3000:]  # torchrun's own summary aside


FORCED_GROUP_LAUNCHER = """
import os, sys
from pathlib import Path
sys.path.insert(0, os.environ["REPO_ROOT"])
import torch.nn.parallel
real_init = torch.nn.parallel.DistributedDataParallel.__init__
def recording_init(self, *args, **kwargs):
    Path(os.environ["DDP_MARKER"]).touch()
    real_init(self, *args, **kwargs)
torch.nn.parallel.DistributedDataParallel.__init__ = recording_init
import train_large_100k
from bertstudy.base.cli import exit_script  # as the script ends (train_large_100k.py)
exit_script(train_large_100k.main(sys.argv[1:]))
"""


def test_a_forced_process_group_of_one_trains_through_ddp_like_one_process(tmp_path):
    """The GPU check's DDP part (BERTSTUDY_FORCE_PROCESS_GROUP=1 under torchrun with one
    process) really goes through DDP and its collectives, and trains as a plain single process does."""
    corpus = write_tiny_corpus(tmp_path)
    launcher, marker = tmp_path / "launch.py", tmp_path / "ddp_used"
    launcher.write_text(FORCED_GROUP_LAUNCHER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "REPO_ROOT": str(ROOT),
           "DDP_MARKER": str(marker), "BERTSTUDY_FORCE_PROCESS_GROUP": "1"}
    forced = tmp_path / "forced"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           str(launcher), *tiny_args(corpus, forced, tmp_path / "cache", device="cpu", **RUN)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists()
    plain = tmp_path / "plain"
    assert train_large_100k.main(tiny_args(corpus, plain, tmp_path / "cache", device="cpu", **RUN)) == 0
    a, b = read_json(forced / "training_history_100k.json"), read_json(plain / "training_history_100k.json")
    assert a["steps"] == b["steps"] and a["meta"]["world_size"] == 1
    torch.testing.assert_close(torch.tensor(a["loss"]), torch.tensor(b["loss"]), rtol=1e-5, atol=1e-6)


COUNTING_COMPILE_LAUNCHER = """
import os, sys
sys.path.insert(0, os.environ["REPO_ROOT"])
import torch
from torch._dynamo.testing import CompileCounter
counter, real_compile = CompileCounter(), torch.compile
torch.compile = lambda model, **kwargs: real_compile(model, backend=counter)
from bertstudy.training import trainer
shapes, real_mark = set(), trainer.mark_first_dim_dynamic
def marking(batch):
    shapes.add(tuple(tuple(t.shape) for t in batch.values()))
    real_mark(batch)
trainer.mark_first_dim_dynamic = marking
import train_large_100k
code = train_large_100k.main(sys.argv[1:])
print(f"graphs {counter.frame_count} shapes {len(shapes)}", file=sys.stderr)
sys.exit(code)
"""


def test_compile_under_ddp_with_accumulation_takes_every_row_count_in_one_graph(tmp_path):
    """The GPU check's compile + DDP part on CPU (gloo, a forced process group of one): torch.compile of the
    DDP model with two micro-batches a step (no_sync on the first) captures one graph for all the changing
    row counts (the graphs run eagerly: a counting backend) and trains as the eager run does."""
    corpus = write_tiny_corpus(tmp_path)
    launcher = tmp_path / "launch.py"
    launcher.write_text(COUNTING_COMPILE_LAUNCHER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "REPO_ROOT": str(ROOT),
           "BERTSTUDY_FORCE_PROCESS_GROUP": "1"}
    run = dict(device="cpu", batch_size=4, grad_accum=2, steps=8, log_interval=1)
    compiled = tmp_path / "compiled"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           str(launcher), *tiny_args(corpus, compiled, tmp_path / "cache", compile=True, **run)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    graphs, shapes = (int(x) for x in re.search(r"graphs (\d+) shapes (\d+)", done.stderr).groups())
    assert graphs == 1 and shapes >= 2, done.stderr[-500:]
    eager = tmp_path / "eager"
    assert train_large_100k.main(tiny_args(corpus, eager, tmp_path / "cache", **run)) == 0
    a, b = read_json(compiled / "training_history_100k.json"), read_json(eager / "training_history_100k.json")
    assert a["meta"]["world_size"] == 1 and a["steps"] == b["steps"]
    torch.testing.assert_close(torch.tensor(a["loss"]), torch.tensor(b["loss"]), rtol=1e-5, atol=1e-6)
