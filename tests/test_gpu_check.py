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
    assert blocks[0].split("\n")[:2] == ["make TORCH_SPEC=torch venv", "make gpu-check"]
    assert [line for line in blocks[1].splitlines() if line.strip()] == _script_commands()
    assert len(_script_commands()) == 5
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^gpu-check:.*\n\tscripts/gpu_check\.sh$", makefile, flags=re.M)


def test_the_scripts_training_and_benchmark_lines_parse():
    import shlex

    import train_large_100k
    from bench import throughput
    from bertstudy.training.config import config_from_args

    lines = {shlex.split(c)[1]: shlex.split(c) for c in _script_commands() if c.startswith(".venv") and "--summarize" not in c}
    train = lines["scripts/gpu_train_check.py"]
    config = config_from_args(train_large_100k.build_parser().parse_args(train[train.index("--") + 1:]))
    assert config.auto_batch and config.global_batch == 128 and config.preset == "large_100k"
    bench = throughput.build_parser().parse_args(lines["bench/throughput.py"][2:])
    assert bench.device == "cuda" and bench.preset == "large_100k"
