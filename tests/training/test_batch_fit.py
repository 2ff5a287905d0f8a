"""--batch-size auto: the choice of micro-batch from (fake) memory figures, the flag, and that a
different split trains on the same instances (the math of 4 x 8 = 32 is tested in test_trainer)."""

from __future__ import annotations

import argparse

import torch

from bertstudy.training.batch_fit import MemoryProbe, fit_micro_batch, pick_micro_batch, resolve_batch_split, split_for
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


class FakeGpuMemory:
    """A card as the allocator reports it: the peak of a forward and backward of `rows` full rows is
    weights + max(gradients + workspace, activations x rows + a quarter of the gradients), so at one or
    two rows the gradients set it; anything above `capacity` runs out of memory."""

    def __init__(self, capacity, per_row=54 * MiB, weights=200 * MiB, ooms_at=()):
        self.capacity, self.per_row, self.param_bytes, self.ooms_at = capacity, per_row, weights, set(ooms_at)
        self.calls: list[int] = []

    def model_peak(self, rows: int) -> int:
        return self.param_bytes + max(self.param_bytes + 50 * MiB, self.per_row * rows + self.param_bytes // 4)

    def peak_at(self, rows: int) -> int:
        self.calls.append(rows)
        if rows in self.ooms_at or self.model_peak(rows) > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return self.model_peak(rows)

    def budget(self) -> int:
        return int(0.85 * self.capacity)


def test_the_probe_measures_activations_at_realistic_sizes_not_at_one_and_two_rows():
    """At 1 and 2 rows the fake card's peak is the same (the gradients dominate), as
    the old probe saw on large_100k (about 1 byte per row): it took the whole batch of 128 on an 8 GB
    card, an out-of-memory crash at step 0. Measured from 8 to 16 rows after a warm-up: 54 MiB a row."""
    card = FakeGpuMemory(capacity=8 * GiB)
    assert card.model_peak(2) - card.model_peak(1) == 0  # what the old probe measured
    micro, probe = fit_micro_batch(128, card)
    assert probe.per_row_bytes == 54 * MiB
    assert card.calls[:3] == [8, 8, 16]  # the warm-up, then the two realistic sizes
    assert micro == 64 and card.calls[-1] == 64  # confirmed by a real forward and backward at that size
    assert probe.fixed_bytes + micro * probe.per_row_bytes <= probe.budget_bytes < card.capacity
    h100 = FakeGpuMemory(capacity=80 * GiB)
    assert fit_micro_batch(128, h100)[0] == 128


def test_out_of_memory_while_probing_or_confirming_halves():
    card = FakeGpuMemory(capacity=8 * GiB, ooms_at={64})  # the confirming step runs out (fragmentation)
    assert fit_micro_batch(128, card)[0] == 32
    long_rows = FakeGpuMemory(capacity=3 * GiB, per_row=200 * MiB)  # 16 rows do not fit: probe at 4 and 8
    micro, probe = fit_micro_batch(128, long_rows)
    assert long_rows.calls[:6] == [8, 8, 16, 4, 4, 8] and probe.per_row_bytes == 200 * MiB and micro == 8
    assert fit_micro_batch(128, FakeGpuMemory(capacity=300 * MiB))[0] == 1  # not even one row: 1 x 128


def test_ddp_counts_its_buckets_and_every_rank_takes_the_smallest_choice(monkeypatch):
    from bertstudy.training.device import Distributed

    card = FakeGpuMemory(capacity=int(3.5 * GiB), weights=600 * MiB)
    alone, ddp = fit_micro_batch(128, card)[0], fit_micro_batch(128, card, ddp=True)[0]
    assert ddp < alone  # DDP's gradient buckets take one more copy of the gradients
    config = preset_config("large_100k")
    seen = []

    def other_rank_chose_8(tensor, op=None):
        seen.append(op)
        tensor.fill_(min(int(tensor.item()), 8))

    monkeypatch.setattr(torch.distributed, "all_reduce", other_rank_chose_8)
    chosen = resolve_batch_split(config, None, 100, torch.device("cuda", 0), None, verbose=False,
                                 dist=Distributed(rank=0, world_size=2), memory=FakeGpuMemory(capacity=80 * GiB))
    assert (chosen.batch_size, chosen.grad_accum) == (8, 16) and seen == [torch.distributed.ReduceOp.MIN]


def test_the_default_split_follows_the_device():
    """Without --batch-size a GPU gets the split that fits (one micro-batch of 128 on
    an H100-sized card: no accumulation), not the 32 x 4 a CPU keeps; --batch-size N still fixes it."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    default = config_from_args(parser.parse_args([]))
    assert (default.batch_size, default.grad_accum, default.auto_batch) == (32, 4, None)
    gpu = torch.device("cuda", 0)
    chosen = resolve_batch_split(default, None, 100, gpu, None, verbose=False, memory=FakeGpuMemory(80 * GiB))
    assert (chosen.batch_size, chosen.grad_accum) == (128, 1)
    small = resolve_batch_split(default, None, 100, gpu, None, verbose=False, memory=FakeGpuMemory(8 * GiB))
    assert (small.batch_size, small.grad_accum) == (64, 2)  # accumulation only where memory requires it
    assert resolve_batch_split(default, None, 100, torch.device("cpu"), None) is default
    fixed = config_from_args(parser.parse_args(["--batch-size", "32"]))
    assert fixed.auto_batch is False
    assert resolve_batch_split(fixed, None, 100, gpu, None, memory=FakeGpuMemory(80 * GiB)) is fixed
