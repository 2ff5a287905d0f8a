"""`--batch-size auto`: the global batch is the study's, the micro-batch is the device's.

The study fixes the instances per optimizer step (large_100k: 32 x 4 = 128). How a process splits
its share into micro-batches changes only speed and memory, not the mathematics: the instances of a
step are a pure function of (seed, step, global index) and the trainer weights each micro-batch by
its masked tokens (tests: 4 x 8 equals 32). On a large GPU one big micro-batch keeps the device busy
with few kernel launches; a small card needs accumulation. So on CUDA `auto` measures what a row
of max_seq_len tokens costs in activation memory (a forward and backward at two sizes) and takes the
largest divisor of the per-process batch that fits; on a CPU it keeps the configured split.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import torch

from bertstudy.training.config import TrainConfig

HEADROOM = 0.85  # use at most this share of the free device memory: the allocator fragments, kernels need workspace


@dataclass(frozen=True)
class MemoryProbe:
    fixed_bytes: int  # weights, gradients, optimizer state and the step's constant workspace
    per_row_bytes: int  # activations of one max_seq_len row (forward kept for backward)
    budget_bytes: int  # what the run may use


def pick_micro_batch(per_process: int, probe: MemoryProbe) -> int:
    """The largest divisor d of per_process with fixed + d x per_row <= budget (at least 1)."""
    best = 1
    for d in range(1, per_process + 1):
        if per_process % d == 0 and probe.fixed_bytes + d * probe.per_row_bytes <= probe.budget_bytes:
            best = d
    return best


def split_for(config: TrainConfig, micro: int) -> TrainConfig:
    per_process = config.batch_size * config.grad_accum
    return replace(config, batch_size=micro, grad_accum=per_process // micro)


def _synthetic_rows(rows: int, config: TrainConfig, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Full rows (one instance each, 15% masked): the most a micro-batch of `rows` rows can hold."""
    L = config.max_seq_len
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (rows, L), generator=gen)
    predictions = max(1, round(config.mask_rate * L))
    positions = (torch.arange(rows)[:, None] * L + torch.arange(1, predictions + 1)[None, :]).reshape(-1)
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "position_ids": torch.arange(L).expand(rows, L),
             "instance_ids": torch.ones_like(ids), "mlm_positions": positions, "mlm_labels": ids.reshape(-1)[positions],
             "cls_positions": torch.arange(rows) * L, "nsp_labels": torch.zeros(rows, dtype=torch.long)}
    return {k: v.contiguous().to(device) for k, v in batch.items()}


def measure_cuda_memory(model, config: TrainConfig, vocab_size: int, device: torch.device, autocast) -> MemoryProbe:
    """Peak allocated memory of a forward and backward at 1 and 2 rows (gradients then freed)."""
    peaks = []
    for rows in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with autocast():
            out = model(**_synthetic_rows(rows, config, vocab_size, device))
        out.loss.backward()
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device))
        model.zero_grad(set_to_none=True)
    per_row = max(peaks[1] - peaks[0], 1)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    fixed = peaks[0] - per_row + 2 * param_bytes  # AdamW's two moments are not allocated yet
    free, _ = torch.cuda.mem_get_info(device)
    return MemoryProbe(fixed, per_row, int(HEADROOM * (free + torch.cuda.memory_allocated(device))))


def resolve_batch_split(config: TrainConfig, model, vocab_size: int, device: torch.device, autocast,
                        verbose: bool = True) -> TrainConfig:
    """The config with batch_size/grad_accum chosen for the device (auto_batch on CUDA), else unchanged."""
    if not config.auto_batch or device.type != "cuda":
        return config
    with torch.random.fork_rng(devices=[device]):  # the probe's dropout must not shift the run's streams
        probe = measure_cuda_memory(model, config, vocab_size, device, autocast)
    micro = pick_micro_batch(config.batch_size * config.grad_accum, probe)
    chosen = split_for(config, micro)
    if verbose:
        print(f"--batch-size auto: {chosen.batch_size} x {chosen.grad_accum} per process (a row costs "
              f"{probe.per_row_bytes / 2**20:.1f} MiB; fixed {probe.fixed_bytes / 2**30:.2f} GiB; budget "
              f"{probe.budget_bytes / 2**30:.1f} GiB)", file=sys.stderr)
    return chosen
