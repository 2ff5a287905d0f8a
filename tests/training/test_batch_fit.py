"""--batch-size auto: the choice of micro-batch from (fake) memory figures, the flag, and that a
different split trains on the same instances (the math of 4 x 8 = 32 is tested in test_trainer)."""

from __future__ import annotations

import argparse

import torch

from bertstudy.training.batch_fit import MemoryProbe, pick_micro_batch, resolve_batch_split, split_for
from bertstudy.pretraining.loader import step_micro_batches
from bertstudy.training.config import add_config_arguments, config_from_args, preset_config
from tests.pretraining.test_loader import _sampler, _unpack
from tests.train_helpers import tiny_documents

GiB, MiB = 2**30, 2**20


def test_a_large_gpu_takes_the_whole_batch_a_small_one_accumulates():
    h100 = MemoryProbe(fixed_bytes=1 * GiB, per_row_bytes=60 * MiB, budget_bytes=int(0.85 * 79 * GiB))
    assert pick_micro_batch(128, h100) == 128
    card_8gb = MemoryProbe(fixed_bytes=int(0.8 * GiB), per_row_bytes=150 * MiB, budget_bytes=int(0.85 * 7.6 * GiB))
    assert pick_micro_batch(128, card_8gb) == 32  # 41 rows would fit; 32 is the largest divisor of 128 below
    tiny = MemoryProbe(fixed_bytes=4 * GiB, per_row_bytes=GiB, budget_bytes=3 * GiB)
    assert pick_micro_batch(128, tiny) == 1  # nothing fits: one instance at a time, and the run will say OOM
    assert pick_micro_batch(96, MemoryProbe(0, 10, 500)) == 48  # divisors only: 50 would not divide 96


def test_batch_size_auto_flag_keeps_the_global_batch():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--batch-size", "auto"]))
    assert config.auto_batch and (config.batch_size, config.grad_accum) == (32, 4)
    config = config_from_args(parser.parse_args(["--batch-size", "auto", "--grad-accum", "2"]))
    assert config.auto_batch and config.global_batch == 64
    whole = split_for(config, 64)
    assert (whole.batch_size, whole.grad_accum) == (64, 1)


def test_automatic_batch_sizing_has_one_flag():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert "--batch-size" in flags and not any(flag.endswith("auto-batch") for flag in flags)


def test_cpu_keeps_the_configured_split():
    config = preset_config("quick", batch_size=8, grad_accum=4, auto_batch=True)
    assert resolve_batch_split(config, None, 100, torch.device("cpu"), None) is config


def test_another_split_trains_on_the_same_instances():
    sampler = _sampler(tiny_documents(30))
    split_4x8 = step_micro_batches(sampler, 11, 9, 0, 8, 4)
    split_32x1 = step_micro_batches(sampler, 11, 9, 0, 32, 1)
    def instances(micro):
        return sorted((tuple(i[0]), tuple(i[2]), i[3]) for b in micro for i in _unpack(b))
    assert len(split_4x8) == 4 and len(split_32x1) == 1
    assert instances(split_4x8) == instances(split_32x1)
    assert sum(int((b["mlm_labels"] != -100).sum()) for b in split_4x8) == int((split_32x1[0]["mlm_labels"] != -100).sum())
    # the whole share is packed before it is split: the same rows, so the same computed positions
    assert sum(b["input_ids"].size for b in split_4x8) == split_32x1[0]["input_ids"].size
