"""scripts/gpu_check.sh: on a machine without CUDA it stops at once with one clear line, and the
README's GPU section lists exactly the commands it runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


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
    assert len(_script_commands()) == 11
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
    assert len(runs) == 6  # train, memory_8gb, parity, fp16, compile; ddp_nccl
    configs = [config_from_args(parser.parse_args(run)) for run in runs if run]
    assert all(c.preset == "large_100k" and c.global_batch == 128 for c in configs)
    train = configs[0]
    assert wants_auto_batch(train, __import__("torch").device("cuda", 0)) and train.steps == 300
    assert (configs[1].batch_size, configs[1].grad_accum) == (32, 4)  # the 8 GB part measures 32 x 4
    assert any(c.compile for c in configs)
    bench = next(c for c in commands if "bench/throughput.py" in c)
    bench = throughput.build_parser().parse_args(bench[bench.index("bench/throughput.py") + 1:])
    assert bench.device == "cuda" and bench.preset == "large_100k" and bench.compile_preset == "none"


def test_the_parts_time_limits_fit_8_minutes():
    import re as regex

    limits = [int(m) for m in regex.findall(r"^step \S+ (\d+) ", SCRIPT.read_text(encoding="utf-8"), flags=regex.M)]
    assert len(limits) == 10 and sum(limits) <= 8 * 60


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
