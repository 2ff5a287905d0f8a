"""Which device, which precision, which rank: the one place that tells CUDA from CPU.

Device selection (`--device`):
- `auto`: CUDA when torch sees a GPU, else the CPU;
- `cuda`: GPU LOCAL_RANK (torchrun sets it per process on each node; a plain `python` run is
  rank 0, so GPU 0). The device always carries an index: torch.cuda.set_device refuses `cuda`
  without one;
- `cuda:N`: GPU N, for one process per node (with several processes per node each takes its
  LOCAL_RANK, so `cuda:N` is refused there);
- `cpu`.
torchrun's RANK and WORLD_SIZE make the process group (nccl on CUDA, gloo on the CPU), on one node
or many. A device that is not there is a one-line usage error (exit 2), never a traceback.
When each process sees one GPU only (SLURM `--gpus-per-task=1`, a per-task CUDA_VISIBLE_DEVICES),
`cuda` is that GPU whatever LOCAL_RANK says.
The process group gets an explicit timeout (`BERTSTUDY_DIST_TIMEOUT_S`, default PG_TIMEOUT_S): long
enough for rank 0 to tokenize a large corpus while the others wait; a failure on one rank reaches
the others through a collective (`agree_or_fail`), so they stop within seconds, not at the timeout.
"""

from __future__ import annotations

import contextlib

import argparse
import datetime
import os
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.distributed as torch_dist

from bertstudy.base.errors import EXIT_RUNTIME, StudyError, UsageError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"
PG_TIMEOUT_S = 3600  # an hour: rank 0 tokenizes a Wikipedia-sized corpus behind a collective (NCCL's default is 10 min)
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def device_choice(text: str) -> str:
    """argparse type of --device: one of auto, cpu, cuda, cuda:N (a typo such as 'gpu' exits 2)."""
    value = text.strip().lower()
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {DEVICE_CHOICES})")
    return value


@dataclass
class Distributed:
    rank: int = 0  # global rank (torchrun's RANK)
    world_size: int = 1  # processes in the job (torchrun's WORLD_SIZE)
    local_rank: int = 0  # GPU index on this node (torchrun's LOCAL_RANK)
    device: torch.device = torch.device("cpu")
    forced: bool = False  # a process group of one (BERTSTUDY_FORCE_PROCESS_GROUP=1: the GPU check's DDP path)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.forced

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"environment variable {name}={text!r} is not an integer (torchrun sets it)") from None


def select_device(choice: str, env: Mapping[str, str] | None = None) -> torch.device:
    """The device this process trains on, always with an index on CUDA (see the module docstring)."""
    env = os.environ if env is None else env
    if not _DEVICE.match(choice):
        raise UsageError(f"--device {choice!r}: choose from {DEVICE_CHOICES}")
    local_rank = _env_int(env, "LOCAL_RANK", 0)
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no visible GPU"
        raise UsageError(f"--device {choice}: CUDA is not available ({build}); use --device cpu or auto")
    count = torch.cuda.device_count()
    if choice == "cuda":
        index = 0 if count == 1 else local_rank  # one visible GPU per process: it is this rank's
    else:
        index = int(choice.split(":", 1)[1])
        if _env_int(env, "LOCAL_WORLD_SIZE", 1) > 1:
            raise UsageError(f"--device {choice} names one GPU, but torchrun starts several processes per node; "
                             f"use --device cuda (each process takes GPU LOCAL_RANK)")
    if index >= count:
        raise UsageError(f"--device {choice}: GPU {index} does not exist (this machine shows {count}: "
                         f"cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def setup_distributed(choice: str, env: Mapping[str, str] | None = None) -> Distributed:
    """Pick the device, bind this process to it, and join the process group when WORLD_SIZE > 1."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", 0)
    device = select_device(choice, env)
    bind_device(device)
    forced = env.get("BERTSTUDY_FORCE_PROCESS_GROUP") == "1"  # DDP and its collectives with one process
    if (world > 1 or forced) and not torch_dist.is_initialized():
        timeout = datetime.timedelta(seconds=_env_int(env, "BERTSTUDY_DIST_TIMEOUT_S", PG_TIMEOUT_S))
        if device.type == "cuda":  # device_id: NCCL binds its communicator now, not at the first collective
            torch_dist.init_process_group(backend="nccl", timeout=timeout, device_id=device)
        else:
            torch_dist.init_process_group(backend="gloo", timeout=timeout)
    return Distributed(rank, world, local_rank, device, forced=forced and world == 1)


def agree_or_fail(failure: BaseException | None, dist: Distributed, what: str) -> None:
    """Every rank calls it after a step only some ranks do (rank 0 building the cache): a failure on any
    rank stops all of them now, each with one line, instead of the others waiting in the next
    collective until the process group's timeout."""
    if not dist.enabled:
        if failure is not None:
            raise failure
        return
    flag = torch.tensor([0.0 if failure is None else 1.0], device=dist.device)
    torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    if failure is not None:
        raise failure
    if flag.item() > 0:
        raise StudyError(f"rank {dist.rank}: stopped because another rank failed while {what} (its message "
                         f"says why)", exit_code=EXIT_RUNTIME)


def bind_device(device: torch.device) -> None:
    """Make `device` this process's current GPU (kernels, NCCL) and let its fp32 matmuls use TF32."""
    if device.type == "cuda":
        torch.cuda.set_device(device)  # needs an index: select_device always gives one
        enable_tf32()


def teardown_distributed(dist: Distributed) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def enable_tf32() -> None:
    """fp32 matmuls and convolutions on CUDA in TF32 (Ampere and later; ignored by older GPUs), through
    one API only. torch 2.9+ also has per-backend `fp32_precision`, but setting it leaves the legacy
    getters (`torch.get_float32_matmul_precision()`, `matmul.allow_tf32`) raising "mix of the legacy and
    new APIs", and torch.compile's autotuning (`_inductor/select_algorithm.py`) reads them: max-autotune
    would crash at its first compile. The legacy flags set the new per-backend values too, so both read
    back consistently (tests/training/test_device.py). CPU matmuls (mkldnn) are left as they are."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def precision_settings(device: torch.device, amp: bool | None):
    """(autocast dtype or None, use a GradScaler). On by default on CUDA, off on the CPU.
    bf16 only where the GPU computes it natively (Ampere+): `is_bf16_supported()` is also true through
    emulation on older cards, which is slow; they get fp16 with a GradScaler instead."""
    use_amp = (device.type == "cuda") if amp is None else amp
    if not use_amp:
        return None, False
    if device.type == "cuda" and os.environ.get("BERTSTUDY_FORCE_FP16") == "1":  # the GPU check's fp16 path
        return torch.float16, True
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16, True
    return torch.bfloat16, False


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    """torch.autocast for `amp_dtype` on `device`, or a no-op context without mixed precision."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value).to(device, non_blocking=True) for key, value in batch.items()}


# Dense bf16/fp16 tensor-core peaks (TFLOP/s, NVIDIA datasheets, no sparsity), matched against
# torch.cuda.get_device_name in this order: the MFU denominator of the GPU a run finds.
GPU_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("B200", 2250.0),
                   ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0),
                   ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("RTX 3080", 59.5), ("RTX 3070", 40.6), ("V100", 125.0),
                   ("T4", 65.0))


def gpu_peak_tflops(name: str) -> float | None:
    """The dense bf16/fp16 peak of a GPU by its name (torch.cuda.get_device_name), None when unknown."""
    for key, peak in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None
