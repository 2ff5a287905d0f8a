"""Two DDP processes (torchrun, gloo, CPU) end with the weights of one process on the combined batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import train_large_100k
from bertstudy import checkpoint as ckpt
from bertstudy.atomic_io import read_json
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
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
