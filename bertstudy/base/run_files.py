"""The names of a run folder's files, in one torch-free place that writers (training/) and readers
(monitor.py, analysis, downstream) all import. The `_100k` names are the original study's."""

from __future__ import annotations

import re
from pathlib import Path

HISTORY_NAME = "training_history_100k.json"  # the original's history, a superset (docs/DESIGN.md)
HISTORY_FORMAT = "chinese-bert-correlation/history-v1"  # meta.format of our histories (the original's has none)
LOG_NAME = "training_log_100k.jsonl"  # one record per event, streamed
RESOLVED_CONFIG_NAME = "resolved_config.json"  # the run's config as resolved (minGPT's habit)
VOCAB_NAME = "vocab.txt"  # BERT's layout: special tokens first
SPLIT_NAME = "heldout_documents.json"  # the documents the run never trained on
CHECKPOINT_DIR_NAME = "checkpoints_100k"  # step_XXXXXX.pth and milestone_XXXXXX.pth
FINAL_MODEL_NAME = "stage4_large_100k_final.pth"  # the original's final weights file
EXPORT_DIR_NAME = "export_hf"  # what transformers loads
ANALYSIS_NAME = "analysis_100k_result.json"  # analyze_100k.py's default output, beside the history
DOWNSTREAM_NAME = "downstream_100k.json"  # probe_downstream.py's frozen probes
FINETUNE_NAME = "downstream_finetune_100k.json"  # probe_downstream.py --finetune

CHECKPOINT_FILE = re.compile(r"^step_(\d{6,})\.pth$")
MILESTONE_FILE = re.compile(r"^milestone_(\d{6,})\.pth$")


def checkpoint_path(folder: Path | str, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}.pth"


def milestone_path(folder: Path | str, step: int) -> Path:
    return Path(folder) / f"milestone_{step:06d}.pth"


def numbered_files(folder: Path | str, pattern: re.Pattern) -> list[tuple[int, Path]]:
    """(step, path) of the files in `folder` whose name matches `pattern`, by step; [] without the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name)))
