"""Device and precision choice on every kind of machine, checked on the CPU: the CUDA queries are
answered as a machine with N GPUs would, and set_device is held to torch's own contract
(torch.cuda._utils._get_device_index(device, optional=False), which refuses a CUDA device without index)."""

from __future__ import annotations

import pytest
import torch
from torch.cuda._utils import _get_device_index

from bertstudy.training import device as device_module
from bertstudy.training.device import Distributed, bind_device, precision_settings, select_device, setup_distributed
from bertstudy.base.errors import UsageError


@pytest.fixture
def gpus(monkeypatch):
    """gpus(n) makes torch report n GPUs; returns the list of indices set_device was called with."""
    bound: list[int] = []
    saved = tf32_flags()  # enable_tf32 sets them: restored below, through the same (legacy) API

    def install(count: int) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: bound.append(_get_device_index(device, optional=False)))
        return bound

    yield install
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_tf32_reads_back_through_both_apis(gpus):
    """Issue 20 item 1: after the project sets TF32, the legacy getters (read by torch.compile's
    max-autotune, _inductor/select_algorithm.py) and the per-backend fp32_precision agree; setting the
    new API alone made the legacy ones raise "mix of the legacy and new APIs"."""
    device_module.enable_tf32()
    assert torch.get_float32_matmul_precision() == "high"
    assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert torch.backends.mkldnn.matmul.fp32_precision == "none"  # the CPU's matmuls stay exact


def test_the_set_device_contract_refuses_a_cuda_device_without_index(gpus):
    gpus(1)
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.set_device(torch.device("cuda"))  # what the old code passed with one GPU


@pytest.mark.parametrize("choice", ["auto", "cuda", "cuda:0"])
def test_one_gpu_one_process_binds_gpu_0(gpus, choice, monkeypatch):
    bound = gpus(1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    dist = setup_distributed(choice)
    assert dist.device == torch.device("cuda", 0) and bound == [0]
    assert (dist.rank, dist.world_size, dist.enabled) == (0, 1, False)
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # TF32 for fp32 matmuls on CUDA


def test_cuda_n_picks_that_gpu(gpus):
    bound = gpus(2)
    dist = setup_distributed("cuda:1", env={})
    assert dist.device == torch.device("cuda", 1) and bound == [1]


@pytest.mark.parametrize("env, expected", [
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 1),  # one node, 2 GPUs
    ({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, 1),  # node 2 of 2 x 4
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}, 0),  # 2 nodes x 1 GPU
])
def test_torchrun_takes_gpu_local_rank(gpus, env, expected):
    bound = gpus(4)
    for choice in ("auto", "cuda"):
        device = select_device(choice, env)
        bind_device(device)
        assert device == torch.device("cuda", expected)
    assert bound == [expected, expected]


def test_cuda_n_under_torchrun_with_one_process_per_node_is_allowed_else_refused(gpus):
    gpus(2)
    assert select_device("cuda:1", {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}) \
        == torch.device("cuda", 1)
    with pytest.raises(UsageError, match="LOCAL_RANK"):
        select_device("cuda:1", {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})


def test_a_gpu_that_is_not_there_is_a_usage_error(gpus):
    gpus(2)
    with pytest.raises(UsageError, match="GPU 2 does not exist"):
        select_device("cuda:2", {})
    with pytest.raises(UsageError, match="GPU 3 does not exist"):
        select_device("cuda", {"LOCAL_RANK": "3"})


def test_cpu_machines_and_cpu_choice(gpus):
    bound = gpus(0)
    assert setup_distributed("auto", env={}).device == torch.device("cpu")
    with pytest.raises(UsageError, match="CUDA is not available"):
        select_device("cuda", {})
    gpus(2)
    assert setup_distributed("cpu", env={}).device == torch.device("cpu")
    assert bound == []  # the CPU binds nothing


def test_a_device_typo_is_refused():
    with pytest.raises(UsageError, match="auto, cpu, cuda, cuda:N"):
        select_device("gpu", {})


@pytest.mark.parametrize("native, emulated, expected", [
    (True, True, (torch.bfloat16, False)),  # Ampere and later: bf16, no scaler
    (False, True, (torch.float16, True)),  # Volta/Turing: bf16 only by emulation -> fp16 + GradScaler
    (False, False, (torch.float16, True)),
])
def test_amp_on_cuda_uses_bf16_only_where_native(monkeypatch, native, emulated, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or (including_emulation and emulated))
    assert precision_settings(torch.device("cuda", 0), None) == expected
    assert precision_settings(torch.device("cuda", 0), True) == expected
    assert precision_settings(torch.device("cuda", 0), False) == (None, False)


def test_amp_on_cpu_is_off_by_default_and_bf16_when_asked():
    assert precision_settings(torch.device("cpu"), None) == (None, False)
    assert precision_settings(torch.device("cpu"), True) == (torch.bfloat16, False)


def test_distributed_defaults_are_one_cpu_process():
    dist = Distributed()
    assert dist.is_main and not dist.enabled and dist.device.type == "cpu"
    assert device_module.DEVICE_CHOICES == "auto, cpu, cuda, cuda:N"
