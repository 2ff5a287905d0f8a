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
    """After the project sets TF32, the legacy getters (read by torch.compile's
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


@pytest.fixture
def process_group(monkeypatch):
    """Records init_process_group's arguments instead of joining a group."""
    calls: list[dict] = []
    monkeypatch.setattr(device_module.torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(device_module.torch_dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    return calls


def test_one_visible_gpu_per_process_is_that_rank_s_gpu_whatever_local_rank(gpus, process_group):
    """SLURM --gpus-per-task=1 shows each process one GPU (index 0) while LOCAL_RANK
    counts up: rank 1 must take cuda:0, not fail with 'GPU 1 does not exist'; NCCL gets device_id and a
    timeout long enough for rank 0 to tokenize a large corpus (NCCL's default is 10 minutes)."""
    bound = gpus(1)
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    dist = setup_distributed("cuda", env)
    assert dist.device == torch.device("cuda", 0) and bound == [0] and dist.local_rank == 1
    (call,) = process_group
    assert call["backend"] == "nccl" and call["device_id"] == torch.device("cuda", 0)
    assert call["timeout"].total_seconds() == device_module.PG_TIMEOUT_S >= 30 * 60
    with pytest.raises(UsageError, match="GPU 3 does not exist"):  # several visible GPUs: LOCAL_RANK still counts
        gpus(2)
        select_device("cuda", {"LOCAL_RANK": "3"})


def test_gloo_gets_the_explicit_timeout_too_and_the_environment_may_change_it(gpus, process_group):
    gpus(0)
    setup_distributed("cpu", {"WORLD_SIZE": "2", "RANK": "0", "BERTSTUDY_DIST_TIMEOUT_S": "90"})
    (call,) = process_group
    assert call == {"backend": "gloo", "timeout": __import__("datetime").timedelta(seconds=90)}


AGREE_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bertstudy.base.cli import run_main
from bertstudy.base.errors import StudyError
from bertstudy.training.device import agree_or_fail, setup_distributed
def main():
    dist = setup_distributed("cpu")
    failure = StudyError("rank 0 could not build the cache") if dist.is_main else None
    started = time.monotonic()
    try:
        agree_or_fail(failure, dist, "building the token cache")
    finally:
        print(f"rank {dist.rank} left after {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0
sys.exit(run_main(main))
"""


@pytest.mark.slow  # a torchrun pair
def test_a_failure_on_one_rank_stops_the_others_within_seconds_with_one_line(tmp_path):
    """Two gloo processes: rank 0 fails where only it works; rank 1 leaves at once with one line
    (before: it waited in the next collective until the process group's timeout)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    script = tmp_path / "agree.py"
    script.write_text(AGREE_SCRIPT, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "BERTSTUDY_DIST_TIMEOUT_S": "120"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--tee", "3", str(script), str(root)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=100)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-2000:]
    assert "another rank failed while building the token cache" in text, text[-3000:]
    seconds = [float(line.split("after ")[1].split(" s")[0]) for line in text.splitlines() if "left after" in line]
    assert len(seconds) == 2 and max(seconds) < 30, text[-3000:]


def test_the_gpu_check_can_force_fp16_and_a_process_group_of_one(gpus, process_group, monkeypatch):
    """The GPU check runs fp16 with its GradScaler on a bf16 GPU, and DDP over NCCL
    with one process (torchrun --nproc_per_node 1 sets WORLD_SIZE 1, which alone makes no group)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert precision_settings(torch.device("cuda", 0), None) == (torch.bfloat16, False)
    monkeypatch.setenv("BERTSTUDY_FORCE_FP16", "1")
    assert precision_settings(torch.device("cuda", 0), None) == (torch.float16, True)
    assert precision_settings(torch.device("cpu"), None) == (None, False)  # a CPU is not affected
    gpus(1)
    env = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    assert not setup_distributed("cuda", env).enabled and process_group == []
    dist = setup_distributed("cuda", {**env, "BERTSTUDY_FORCE_PROCESS_GROUP": "1"})
    assert dist.enabled and dist.forced and process_group[0]["backend"] == "nccl"
