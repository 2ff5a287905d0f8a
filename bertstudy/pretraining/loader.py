"""Training batches built ahead of the step, off the critical path, still a pure function of
(seed, step, micro-step, rank).

`StepBatches` is a map-style dataset indexed by the optimizer step: item `step` is the list of
packed micro-batches (bertstudy/pretraining/packing.py) this rank trains on at that step. A torch DataLoader
walks the steps from where the run starts (`batch_size=None`: one item is one step), so a resumed
run reads exactly the batches an uninterrupted one would, whatever the number of workers:

  * `num_workers > 0`: worker processes build the next steps while the GPU runs this one
    (`prefetch_factor` steps each), and the main process pins them (`pin_memory` on CUDA) so the
    copies to the device are asynchronous;
  * `num_workers = 0`: built in the training process, right before the step (the CPU default:
    on a CPU the workers would take cores from the model, and building a batch is a small part of a CPU step).

Workers ignore SIGINT and SIGTERM (`leave_signals_to_main`): torchrun, SLURM and `timeout` signal the
whole process group, and a worker killed mid-step made the step raise ("DataLoader worker ... is
killed by signal: Terminated") before the training process could save its checkpoint. The training
process stops at the end of the step, saves, and shuts the workers down; a worker whose parent is
gone leaves by itself (torch's watchdog).

`LoaderClock` records how long the loop waited for each step's batch (history field `data_wait_s`).
"""

from __future__ import annotations

import signal
import time

import numpy as np
import torch

from bertstudy.pretraining.packing import (PACKED_KEYS, FixedShape, RowBuckets, pack_bucketed, pack_fixed, pack_micro_batches,
                                           pack_rows, plan_fixed_shape, plan_row_buckets)
from bertstudy.pretraining.instances import InstanceSampler, fixed_eval_instances, training_instances

DEFAULT_CUDA_WORKERS = 4  # a compiled step (the CUDA default) is shorter than the eager one two were sized for (docs/PERFORMANCE.md)
PREFETCH_STEPS = 4  # steps each worker builds ahead: a few, to ride out slow ones


def step_micro_batches(sampler: InstanceSampler, seed: int, step: int, rank: int, batch_size: int,
                       grad_accum: int, shape: FixedShape | RowBuckets | None = None) -> list[dict[str, np.ndarray]]:
    """This rank's packed micro-batches of `step`. The rank's share of the step's global batch is
    global indices rank x (batch_size x grad_accum) onwards; its instances are packed into rows and
    the rows split into up to grad_accum micro-batches (no more rows in one than batch_size), or,
    with a fixed `shape`, cut into micro-batches of that shape (packing.pack_fixed), or with row
    buckets (one micro-batch per step) packed into the smallest bucket that holds them."""
    per_rank = batch_size * grad_accum
    instances = training_instances(sampler, seed, step, rank * per_rank, per_rank)
    if isinstance(shape, RowBuckets):
        if grad_accum != 1:
            raise ValueError(f"row buckets take one micro-batch per step, not {grad_accum}")
        return [pack_bucketed(instances, sampler.max_seq_len, shape)]
    if shape is not None:
        return pack_fixed(instances, sampler.max_seq_len, shape)
    return pack_micro_batches(instances, sampler.max_seq_len, grad_accum)


SHAPE_SAMPLE_STEPS = 32  # steps 0..31 of the rank's share set the run's fixed shape (the same on a resume)


def plan_step_shape(sampler: InstanceSampler, seed: int, rank: int, batch_size: int, grad_accum: int) -> FixedShape:
    """The fixed micro-batch shape of a run (packing.plan_fixed_shape over its first steps): a pure
    function of the corpus, seed, rank and split, so a resumed run gets the same one."""
    per_rank = batch_size * grad_accum
    sample = [training_instances(sampler, seed, step, rank * per_rank, per_rank) for step in range(SHAPE_SAMPLE_STEPS)]
    return plan_fixed_shape(sample, sampler.max_seq_len, grad_accum)


def plan_step_buckets(sampler: InstanceSampler, seed: int, rank: int, batch_size: int) -> RowBuckets:
    """The row buckets of a run with one micro-batch per step (packing.plan_row_buckets over the packed row
    counts of its first SHAPE_SAMPLE_STEPS steps): a pure function, so a resumed run gets the same."""
    counts = [len(pack_rows(np.asarray([len(inst[0]) for inst in training_instances(
        sampler, seed, step, rank * batch_size, batch_size)]), sampler.max_seq_len)) for step in range(SHAPE_SAMPLE_STEPS)]
    return plan_row_buckets(counts, batch_size, sampler.max_predictions)


def first_overflow_step(sampler: InstanceSampler, seed: int, rank: int, batch_size: int, shape: FixedShape,
                        first: int, last: int) -> int | None:
    """The first step in [first, last) whose instances (one micro-batch of batch_size per step) need more than
    one micro-batch of `shape`, or None: where a run on a sampled shape meets its first overflow step."""
    for step in range(first, last):
        if len(step_micro_batches(sampler, seed, step, rank, batch_size, 1, shape)) > 1:
            return step
    return None


def eval_micro_batches(sampler: InstanceSampler, seed: int, num_instances: int,
                       batch_size: int) -> list[dict[str, np.ndarray]]:
    """The fixed held-out set, packed in groups of batch_size instances."""
    instances = fixed_eval_instances(sampler, seed, num_instances)
    batches = []
    for first in range(0, num_instances, batch_size):
        batches += pack_micro_batches(instances[first:first + batch_size], sampler.max_seq_len, 1)
    return batches


MODEL_KEYS = set(PACKED_KEYS) | {"attention_mask"}  # packed or the plain padded layout; not instance_index


def batch_to_device(batch: dict[str, torch.Tensor | np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """The model's inputs on the device; non_blocking, which is asynchronous when the loader pinned them."""
    out = {}
    for key, value in batch.items():
        if key not in MODEL_KEYS:
            continue
        tensor = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
        out[key] = tensor.to(device, non_blocking=True)
    return out


class StepBatches(torch.utils.data.Dataset):
    """Item `step`: (step, [(host counts, model inputs as CPU tensors) per micro-batch])."""

    def __init__(self, sampler: InstanceSampler, seed: int, rank: int, batch_size: int, grad_accum: int,
                 shape: FixedShape | RowBuckets | None = None):
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.batch_size, self.grad_accum, self.shape = batch_size, grad_accum, shape

    def __len__(self) -> int:  # the DataLoader is given the steps explicitly; any step is valid
        return 2**62

    def __getitem__(self, step: int):
        return (step, *flatten_step(step_micro_batches(self.sampler, self.seed, step, self.rank, self.batch_size,
                                                        self.grad_accum, self.shape)))


def flatten_step(micro: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, list]:
    """A step's micro-batches as ONE contiguous int64 array and its layout ([(key, offset, shape)] per
    micro-batch): a worker hands over one buffer per step, pinned once, copied to the GPU in one go
    (rather than many small tensors per step, each with its own IPC and pinning)."""
    layout, parts, offset = [], [], 0
    for batch in micro:
        entries = []
        for key, value in batch.items():
            array = np.ascontiguousarray(value, dtype=np.int64)
            entries.append((key, offset, tuple(array.shape)))
            parts.append(array.reshape(-1))
            offset += array.size
        layout.append(entries)
    return np.concatenate(parts), layout


class StepBatch(list):
    """A step's micro-batches (dicts of tensors), views into one buffer: `to_device` copies it once."""

    def __init__(self, buffer: torch.Tensor, layout: list):
        super().__init__(_views(buffer, layout))
        self.buffer, self.layout = buffer, layout

    def to_device(self, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """The model inputs of every micro-batch on `device`, from one (asynchronous when pinned) copy."""
        moved = _views(self.buffer.to(device, non_blocking=True), self.layout)
        return [{key: value for key, value in batch.items() if key in MODEL_KEYS} for batch in moved]


def _views(buffer: torch.Tensor, layout: list) -> list[dict[str, torch.Tensor]]:
    return [{key: buffer[offset:offset + int(np.prod(shape))].view(shape) for key, offset, shape in entries}
            for entries in layout]


class StepLoader:
    """Iterates a DataLoader of flattened steps as (step, StepBatch)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for step, buffer, layout in self.loader:
            yield int(step), StepBatch(buffer, layout)


def resolve_workers(requested: int, device: torch.device) -> int:
    """-1 (auto): DEFAULT_CUDA_WORKERS on CUDA, 0 (build in the loop) elsewhere."""
    if requested >= 0:
        return requested
    return DEFAULT_CUDA_WORKERS if device.type == "cuda" else 0


def leave_signals_to_main(worker_id: int) -> None:
    """worker_init_fn: SIGINT/SIGTERM are the training process's to handle (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_step_loader(sampler: InstanceSampler, seed: int, rank: int, batch_size: int, grad_accum: int,
                     first_step: int, last_step: int, device: torch.device, num_workers: int,
                     shape: FixedShape | RowBuckets | None = None):
    """Steps first_step .. last_step-1 as (step, StepBatch): each step's micro-batches in one buffer
    (built by the workers, pinned on CUDA), viewed as dicts of tensors."""
    dataset = StepBatches(sampler, seed, rank, batch_size, grad_accum, shape)
    extra = {"prefetch_factor": PREFETCH_STEPS, "persistent_workers": False,
             "worker_init_fn": leave_signals_to_main} if num_workers > 0 else {}
    # its own generator: a DataLoader draws a worker base seed, which must not come from (and shift)
    # the global torch RNG whose state a checkpoint saves for the dropout streams
    return StepLoader(torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(first_step, last_step),
                                                  num_workers=num_workers, pin_memory=device.type == "cuda",
                                                  generator=torch.Generator().manual_seed(seed), **extra))


class LoaderClock:
    """Wraps a step loader: next_step() returns (step, micro-batches) and adds the seconds the loop
    waited for them to `waited`, which the log point reads and resets."""

    def __init__(self, loader):
        self.iterator = iter(loader)
        self.waited = 0.0

    def next_step(self):
        started = time.monotonic()
        step, batches = next(self.iterator)
        self.waited += time.monotonic() - started
        return int(step), batches

    def take_wait(self) -> float:
        waited, self.waited = self.waited, 0.0
        return waited
