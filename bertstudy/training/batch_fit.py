"""The micro-batch follows the device: the global batch is the study's, the micro-batch is the device's.

The study fixes the instances per optimizer step (large_100k: 32 x 4 = 128). How a process splits
its share into micro-batches changes only speed and memory, not the mathematics: the instances of a
step are a pure function of (seed, step, global index) and the trainer weights each micro-batch by
its masked tokens (tests: 4 x 8 equals 32). On a large GPU one big micro-batch keeps the device busy
with few kernel launches; a small card needs accumulation. So on CUDA, unless `--batch-size N` fixes
the split, the largest divisor of the per-process batch that fits is taken (`--batch-size auto` asks
for it explicitly); on a CPU the configured split stays.

How it is measured (`fit_micro_batch`): a forward and backward of full rows after a warm-up at
realistic sizes (up to PROBE_ROWS rows, halved on out-of-memory): at 1 or 2 rows the peak is set by
the weights and gradients, not by the activations, so a per-row cost measured there is far too small
(docs/PERFORMANCE.md has the measured figures). Then AdamW's two moments and DDP's gradient buckets are added, the largest divisor that fits is
confirmed by one real forward and backward at that size (halved on out-of-memory), every rank takes
the smallest choice, and the choice is the run's config (batch_size x grad_accum, in
resolved_config.json and every checkpoint).
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


PROBE_ROWS = 16  # the larger probe size: activations dominate the peak from about 8 rows of 128 tokens


class CudaMemory:
    """Peak allocated bytes of one forward and backward of `rows` full rows on a GPU, and the budget.
    Tests stand in for it with a fake of the same three members."""

    def __init__(self, model, config: TrainConfig, vocab_size: int, device: torch.device, autocast):
        self.model, self.config, self.vocab_size, self.device, self.autocast = model, config, vocab_size, device, autocast
        self.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def peak_at(self, rows: int) -> int:
        device = self.device
        batch = _synthetic_rows(rows, self.config, self.vocab_size, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            with self.autocast():
                out = self.model(**batch)
            out.loss.backward()
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device)
        finally:
            self.model.zero_grad(set_to_none=True)
            del batch
            torch.cuda.empty_cache()  # an out-of-memory probe must not leave its blocks behind

    def budget(self) -> int:
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(HEADROOM * (free + torch.cuda.memory_allocated(self.device)))


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)


def _measure(per_process: int, memory) -> tuple[int, int] | None:
    """(small, large) row counts and their peaks after a warm-up: (per-row bytes, fixed bytes), or None
    when even one row runs out of memory."""
    large = min(per_process, PROBE_ROWS)
    while True:
        small = max(1, large // 2)
        try:
            memory.peak_at(small)  # warm-up: the allocator's blocks, cuBLAS workspaces, lazy kernels
            low, high = memory.peak_at(small), memory.peak_at(large)
            break
        except torch.OutOfMemoryError:
            if large == 1:
                return None
            large //= 2
    per_row = max((high - low) // (large - small), 1) if large > small else high
    return per_row, low - small * per_row


def fit_micro_batch(per_process: int, memory, ddp: bool = False) -> tuple[int, MemoryProbe | None]:
    """The largest divisor of per_process that fits `memory` (see the module docstring), with the
    probe it was read from (None when only one row was left to try)."""
    if per_process == 1:
        return 1, None
    measured = _measure(per_process, memory)
    if measured is None:
        return 1, None
    per_row, activations_free = measured
    extra = 2 * memory.param_bytes + (memory.param_bytes if ddp else 0)  # AdamW's moments; DDP's buckets
    probe = MemoryProbe(activations_free + extra, per_row, memory.budget())
    micro = pick_micro_batch(per_process, probe)
    while micro > 1:  # confirm with one real forward and backward at that size
        try:
            if memory.peak_at(micro) + extra <= probe.budget_bytes:
                break
        except torch.OutOfMemoryError:
            pass
        micro = _largest_divisor(per_process, micro // 2)
    return micro, probe


def wants_auto_batch(config: TrainConfig, device: torch.device) -> bool:
    """--batch-size auto, or on CUDA the default (no --batch-size N): the split follows the device."""
    return device.type == "cuda" and config.auto_batch is not False


def resolve_batch_split(config: TrainConfig, model, vocab_size: int, device: torch.device, autocast,
                        verbose: bool = True, dist=None, memory=None) -> TrainConfig:
    """The config with batch_size/grad_accum chosen for the device (see wants_auto_batch), else unchanged.
    Under DDP every rank takes the smallest choice (the ranks must agree on the split)."""
    if not wants_auto_batch(config, device):
        return config
    per_process = config.batch_size * config.grad_accum
    ddp = dist is not None and dist.enabled
    with torch.random.fork_rng(devices=[device] if memory is None else []):  # the probe's dropout must not shift the run's streams
        memory = memory or CudaMemory(model, config, vocab_size, device, autocast)
        micro, probe = fit_micro_batch(per_process, memory, ddp)
    if ddp:
        import torch.distributed as torch_dist

        agreed = torch.tensor([micro], dtype=torch.int64, device=dist.device)
        torch_dist.all_reduce(agreed, op=torch_dist.ReduceOp.MIN)
        micro = int(agreed.item())  # once, at set-up
    chosen = split_for(config, micro)
    if verbose:
        found = (f"a row costs {probe.per_row_bytes / 2**20:.1f} MiB; fixed {probe.fixed_bytes / 2**30:.2f} GiB; "
                 f"budget {probe.budget_bytes / 2**30:.1f} GiB") if probe else "one row at a time"
        print(f"batch split for {device}: {chosen.batch_size} x {chosen.grad_accum} per process ({found})",
              file=sys.stderr)
    return chosen
