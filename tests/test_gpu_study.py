"""scripts/gpu_study.sh end to end on the CPU with tiny training flags: the carry folder made once, two
seeds trained side by side in their own folders, probed on their milestones, and one archive of what
comes back (histories, logs, configs, probe JSON, the summary; no weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.downstream_helpers import embedded_like_corpus, write_task_data

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_study.sh"
pytestmark = pytest.mark.slow  # the script's pipeline as subprocesses, on a carry folder made by one
TINY = ("--hidden-size 32 --num-layers 2 --num-heads 2 --intermediate-size 64 --max-seq-len 32 --max-predictions 5 "
        "--batch-size 8 --steps 10 --warmup-steps 2 --log-interval 2 --eval-interval 5 --eval-instances 8 "
        "--milestones 0,10 --heldout-fraction 0.3 --threads 1 --dropout 0 --data-workers 0")
PER_SEED = {"training_history_100k.json", "training_log_100k.jsonl", "resolved_config.json", "heldout_documents.json",
            "vocab.txt", "downstream_100k.json", "train.log", "train.status", "probe.log", "probe.status"}


def _env(tmp_path: Path, carry: Path, **extra) -> dict:
    return {**os.environ, "PY": sys.executable, "CARRY": str(carry), "STUDY_DIR": str(tmp_path / "out"), "SEEDS": "1 2",
            "TRAIN_ARGS": TINY, "PROBE_ARGS": "--cws-train 30 --sentiment-train 40 --milestone-steps 10 --threads 1", "RUN_LIMIT_S": "200",
            "PROBE_LIMIT_S": "200", "ARCHIVE": str(tmp_path / "results.tar.gz"), "CUDA_VISIBLE_DEVICES": "", **extra}


@pytest.fixture(scope="module")
def carry(tmp_path_factory):
    """The carry folder as the CPU machine makes it: corpus, task files, token cache."""
    root = tmp_path_factory.mktemp("gpu_study")
    task_data = write_task_data(root / "tasks")
    corpus = embedded_like_corpus(task_data, root / "corpus.jsonl")
    folder = root / "carry"
    done = subprocess.run([sys.executable, "scripts/gpu_study_files.py", "--prepare", str(folder), "--corpus", str(corpus),
                           "--task-data", str(task_data), "--", "--preset", "gpu_study", *TINY.split()],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder / "corpus.jsonl").is_file() and any((folder / "cache").iterdir())
    assert all((folder / "task_data" / name).is_file() for name in ("seg/data.txt", "sentiment/neg.txt"))
    return folder


def test_two_seeds_train_probe_and_come_back_in_one_archive(tmp_path, carry):
    device_out = tmp_path / "device_out"  # the device tool's $OUT exists already: the script must not use it
    device_out.mkdir()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=_env(tmp_path, carry, OUT=str(device_out)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    archive = tmp_path / "results.tar.gz"
    assert archive.stat().st_size < 16 * 2**20
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("gpu_study_summary.json"))
        histories = {s: json.load(tar.extractfile(f"seed_{s}/training_history_100k.json")) for s in ("1", "2")}
    assert names == {"gpu_study.log", "gpu_study_summary.json"} | {f"seed_{s}/{n}" for s in ("1", "2") for n in PER_SEED}
    assert not any(name.endswith((".pth", ".pt", ".safetensors")) for name in names)  # no weights come back
    assert summary["complete"] and summary["preset"] == "gpu_study" and summary["nvidia_smi_samples"] is None
    for seed in ("1", "2"):
        run = summary["runs"][seed]
        assert run["exit"] == 0 and run["probe_exit"] == 0 and run["steps"] == run["total_steps"] == 10
        assert run["probe_points"]["cws"] == 1 and run["last_eval"]["step"] == 10
        assert histories[seed]["meta"]["config"]["seed"] == int(seed)
    assert histories["1"]["loss"] != histories["2"]["loss"]  # two seeds, two runs
    assert histories["1"]["meta"]["corpus"]["sha256"] == histories["2"]["meta"]["corpus"]["sha256"]


def test_refusals_are_one_line(tmp_path, carry):
    (tmp_path / "out").mkdir()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=_env(tmp_path, carry), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "exists" in done.stderr
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=_env(tmp_path, tmp_path / "nowhere", STUDY_DIR=str(tmp_path / "o2")),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "corpus.jsonl: missing" in done.stderr and not (tmp_path / "o2").exists()


def test_the_readme_runs_this_script_with_settings_it_reads():
    """The README's GPU study line (a GPU-only block, so the test above runs the script in its place) names
    only settings the script reads; its CPU-side carry line runs with the README's other script lines."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The GPU study tier", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh gpu-only\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) == 1
    tokens = shlex.split(blocks[0])
    settings = dict(token.split("=", 1) for token in tokens[:-1])
    assert tokens[-1] == "scripts/gpu_study.sh" and settings["PY"] == "python3"
    read = set(re.findall(r'^([A-Z_]+)="\$\{\1:-', SCRIPT.read_text(encoding="utf-8"), flags=re.M))
    assert set(settings) <= read, f"the README sets what the script does not read: {set(settings) - read}"
    assert "`.venv/bin/python scripts/gpu_study_files.py --prepare .gpucarry/gpu_study " in section
    assert settings["ARCHIVE"].startswith("$OUT/")  # the device tool's folder that comes back
