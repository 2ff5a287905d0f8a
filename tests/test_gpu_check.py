"""scripts/gpu_check.sh: on a machine without CUDA it stops at once with one clear line, and the
README's GPU section lists exactly the commands it runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.mark.slow  # the GPU check's script run as a subprocess
def test_without_cuda_it_says_so_in_one_line_and_exits_4():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    existed = (ROOT / "runs" / "gpu_check").exists()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == ["gpu_check: no CUDA device (torch sees none); nothing checked"]
    assert (ROOT / "runs" / "gpu_check").exists() == existed  # nothing was started


def _script_commands() -> list[str]:
    commands = []
    for line in SCRIPT.read_text(encoding="utf-8").splitlines():
        step = re.match(r"^step \S+ \d+ (.*)$", line)
        if step:
            command = step.group(1).replace("$PY", ".venv/bin/python")
            commands.append(("CUDA_VISIBLE_DEVICES=0 " if "-m cuda" in command else "") + command)
        elif line.startswith("$PY "):
            commands.append(line.replace("$PY", ".venv/bin/python"))
    return commands


def test_readme_gpu_section_is_the_commands_the_script_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## GPU check", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh gpu-only\n(.*?)```", section, flags=re.S)
    assert blocks[0].split("\n")[:2] == ["make TORCH_SPEC='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cu128 venv",
                                          "make gpu-check"]  # a pinned CUDA build
    assert [line for line in blocks[1].splitlines() if line.strip()] == _script_commands()
    assert len(_script_commands()) == 14
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^gpu-check:.*\n\tscripts/gpu_check\.sh$", makefile, flags=re.M)


def test_the_scripts_training_and_benchmark_lines_parse():
    import shlex

    import train_large_100k
    from bench import throughput
    from bertstudy.training.batch_fit import wants_auto_batch
    from bertstudy.training.config import config_from_args

    parser = train_large_100k.build_parser()
    commands = [shlex.split(c) for c in _script_commands()]
    runs = [c[c.index("--") + 1:] for c in commands if "--" in c] + [c[c.index("train_large_100k.py") + 1:]
                                                                     for c in commands if "train_large_100k.py" in c]
    assert len(runs) == 9  # train, memory_8gb, parity, fp16, compile, the two CUDA-graph parts; ddp_nccl, compile_ddp
    configs = [config_from_args(parser.parse_args(run)) for run in runs if run]
    assert all(c.preset == "large_100k" and c.global_batch == 128 for c in configs)
    train = configs[0]
    assert wants_auto_batch(train, __import__("torch").device("cuda", 0)) and train.steps == 300
    assert (configs[1].batch_size, configs[1].grad_accum) == (32, 4)  # the 8 GB part measures 32 x 4
    assert any(c.compile for c in configs)
    graphs = [c for c in configs if c.compile and c.compile_mode == "reduce-overhead"]
    assert [(c.batch_size, c.grad_accum) for c in graphs] == [(64, 2), (128, 1)]  # refused; through an overflow
    ddp_compiled = configs[-1]  # torchrun lines come last in `runs`
    assert ddp_compiled.compile and ddp_compiled.compile_mode == "default" and ddp_compiled.grad_accum == 2
    bench = next(c for c in commands if "bench/throughput.py" in c)
    bench = throughput.build_parser().parse_args(bench[bench.index("bench/throughput.py") + 1:])
    assert bench.device == "cuda" and bench.preset == "large_100k" and bench.compile_preset == "none"


def test_the_parts_time_limits_fit_one_10_minute_command():
    import re as regex

    limits = [int(m) for m in regex.findall(r"^step \S+ (\d+) ", SCRIPT.read_text(encoding="utf-8"), flags=regex.M)]
    assert len(limits) == 13 and sum(limits) <= 10 * 60


@pytest.mark.slow  # the GPU check's script run as a subprocess
def test_the_refusal_part_passes_on_a_refused_line_and_fails_on_a_run(tmp_path):
    """--expect-refusal runs the command line (here on the CPU, which refuses it the same way) and passes only
    on exit 2 with one stderr line and no out-dir made."""
    import json
    import sys

    from tests.train_helpers import tiny_args, write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path)
    for mode, passed in (("reduce-overhead", True), ("default", False)):
        args = tiny_args(corpus, tmp_path / f"run_{mode}", tmp_path / "cache", compile=True, compile_mode=mode,
                         batch_size=4, grad_accum=2, steps=1, device="cpu", threads=1)
        if mode == "default":  # a line that trains: the part must fail (without compiling on 2 CPU cores)
            args = [a for a in args if a not in ("--compile", "default", "--compile-mode")]
        out = tmp_path / f"{mode}.json"
        done = subprocess.run([sys.executable, "scripts/gpu_train_check.py", "--out", str(out), "--expect-refusal", "--",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        result = json.loads(out.read_text())
        assert result["passed"] is passed and (done.returncode == 0) is passed, done.stderr
        if passed:
            assert result["exit_code"] == 2 and "(CUDA graphs)" in result["stderr"][0]


def test_the_overflow_part_finds_the_step_from_the_loaders_shapes(tmp_path):
    """--through-overflow trains to the first step the sampled shape cannot hold in one micro-batch: that
    step is found by packing the run's own steps."""
    import train_large_100k
    from bertstudy.pretraining.loader import step_micro_batches
    from bertstudy.pretraining.packing import FixedShape
    from bertstudy.training.config import config_from_args
    from bertstudy.training.device import Distributed
    from bertstudy.training.run_data import prepare_data
    from scripts.gpu_train_check import first_sampled_overflow
    from tests.train_helpers import tiny_args, write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path, num_documents=60)
    args = tiny_args(corpus, tmp_path / "run", tmp_path / "cache", batch_size=16, grad_accum=1, max_seq_len=64,
                     max_predictions=10)
    found = first_sampled_overflow(args)
    step = found["first_overflow_step"]
    assert step is not None and step >= 32  # steps 0-31 set the shape, so they fit it
    config = config_from_args(train_large_100k.build_parser().parse_args(args))
    sampler = prepare_data(config, Distributed()).train_sampler
    shape = FixedShape(*found["sampled_shape"])
    counts = [len(step_micro_batches(sampler, config.seed, s, 0, 16, 1, shape)) for s in range(step + 1)]
    assert counts[:-1] == [1] * step and counts[-1] == 2


def test_the_json_is_written_after_each_part(tmp_path):
    """A timeout or a lost machine keeps what was done: --summarize (run after every part) gathers the
    parts finished so far without torch or a GPU."""
    import json
    import sys

    folder = tmp_path / "gpu_check"
    folder.mkdir()
    (folder / "compiler.status").write_text("0 1\n")
    (folder / "compiler.json").write_text(json.dumps({"c_compiler": "/usr/bin/cc"}))
    (folder / "train.status").write_text("124 75\n")  # timed out
    done = subprocess.run([sys.executable, "scripts/gpu_train_check.py", "--summarize", str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads((folder / "gpu_check.json").read_text())
    assert summary["parts"] == {"compiler": {"exit": 0, "seconds": 1}, "train": {"exit": 124, "seconds": 75}}
    assert summary["compiler"] == {"c_compiler": "/usr/bin/cc"} and summary["passed"] is False
    final = subprocess.run([sys.executable, "scripts/gpu_train_check.py", "--summarize", str(folder), "--final"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert final.returncode == 1


def test_mfu_is_against_the_gpu_the_check_finds():
    from bertstudy.training.device import gpu_peak_tflops

    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_peak_tflops("NVIDIA H200") == 989.0
    assert gpu_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_peak_tflops("NVIDIA GeForce RTX 3070") == 40.6
    assert gpu_peak_tflops("Some Future GPU") is None


@pytest.mark.slow  # trains a tiny run and recounts its batches
def test_the_flops_of_a_runs_last_interval_come_from_its_own_batches(tmp_path):
    """The GPU check's MFU: FLOPs per real token of the last log interval's steps (here 0-based steps 4 and 5,
    between the log points at 4 and 6), rebuilt from the run's resolved config and corpus."""
    import train_large_100k
    from bertstudy.base.atomic_io import read_json
    from bertstudy.model import BertConfig
    from bertstudy.pretraining.loader import step_micro_batches
    from bertstudy.training.config import TrainConfig
    from bertstudy.training.device import Distributed
    from bertstudy.training.flops import step_flops
    from bertstudy.training.run_data import prepare_data
    from scripts.gpu_train_check import interval_flops
    from tests.train_helpers import tiny_args, write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", steps=6, log_interval=4)) == 0
    figures = interval_flops(out)
    resolved = read_json(out / "resolved_config.json")
    config = TrainConfig(**{k: v for k, v in resolved.items() if k in TrainConfig.__dataclass_fields__})
    sampler = prepare_data(config, Distributed()).train_sampler
    want = step_flops(BertConfig(**resolved["model"]),
                      [b for s in (4, 5) for b in step_micro_batches(sampler, config.seed, s, 0, 4, 2)])
    assert figures["steps"] == 2 and figures["tokens"] == want["tokens"] > 0
    assert figures["tflop_per_step"] == want["flops"] / 2 / 1e12
    assert figures["computed_tflop_per_step"] >= figures["tflop_per_step"]
