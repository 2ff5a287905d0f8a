"""What a run writes in its --out-dir besides checkpoints: at the start the vocabulary, the held-out
split, resolved_config.json, the history's meta and the log's start record; at the end the summary
of the files it wrote. (Whether the folder may be used at all is run_start.py's decision.)"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bertstudy.base.atomic_io import atomic_write_json
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, EXPORT_DIR_NAME, FINAL_MODEL_NAME, HISTORY_NAME, LOG_NAME,
                                      RESOLVED_CONFIG_NAME, SPLIT_NAME, VOCAB_NAME)
from bertstudy.model import BertConfig
from bertstudy.pretraining.heldout_split import write_split
from bertstudy.pretraining.vocab import save_vocab
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training.config import TrainConfig
from bertstudy.training.device import Distributed
from bertstudy.training.machine import machine_identity
from bertstudy.training.run_data import PreparedData
from bertstudy.training.run_log import RunLog, new_history


def prepare_out_dir(config: TrainConfig, data: PreparedData, resumed: bool, overwrite: bool) -> None:
    """Rank 0, once the inputs are valid: from here on the run writes into out_dir."""
    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR_NAME
    if not resumed and overwrite:
        stale = ckpt.list_checkpoints(checkpoint_dir)
        if stale:  # --overwrite: old checkpoints would otherwise win a later --resume
            print(f"note: --overwrite: removing {len(stale)} checkpoint(s) of an earlier run in {checkpoint_dir}",
                  file=sys.stderr)
        # and an earlier run's milestones would mix two runs in a probe
        for _, path in stale + ms.list_milestones(checkpoint_dir):
            path.unlink(missing_ok=True)
    save_vocab(data.vocab, out_dir / VOCAB_NAME)
    write_split(out_dir, data.split)  # probes test only on the held-out documents


def new_run_history(config: TrainConfig, data: PreparedData, model, dist: Distributed, milestone_steps) -> dict:
    """A fresh run's history: empty lists and the meta that says what made it."""
    return new_history({
        "preset": config.preset, "config": config.to_dict(), "total_steps": config.steps,
        "vocab_size": len(data.vocab), "vocab_hash": data.vocab.hash,
        "corpus": {"path": str(config.corpus), "sha256": data.corpus_sha256, "tokens": data.corpus_tokens,
                   "train_documents": data.train_documents, "heldout_documents": data.heldout_documents,
                   "heldout_split": SPLIT_NAME},
        "milestones": sorted(milestone_steps), "shortcut": data.shortcut,
        "parameters": model.num_parameters(), "device": str(dist.device), "world_size": dist.world_size,
        "global_batch": config.global_batch * dist.world_size, "torch": str(torch.__version__),
        "python": platform.python_version(), "machine": machine_identity(dist.device), "started_at": time.time(),
        "finished_at": None, "nonfinite_skipped": 0,
    })


def open_log(config: TrainConfig, model_config: BertConfig, dist: Distributed, start_step: int,
             resumed_from: int | None) -> RunLog:
    """resolved_config.json, then the log (cut back to the resumed step, or fresh) with its start record."""
    out_dir = Path(config.out_dir)
    atomic_write_json(out_dir / RESOLVED_CONFIG_NAME, {**config.to_dict(), "model": asdict(model_config),
                                                       "world_size": dist.world_size})
    log = RunLog(out_dir / LOG_NAME, resume_step=start_step if resumed_from is not None else None)
    log.write("start", total_steps=config.steps, preset=config.preset, resumed_from=resumed_from,
              config=config.to_dict(), machine=machine_identity(dist.device))
    return log


def finished_summary(history: dict, out_dir: Path, step: int, exported: bool = True) -> str:
    """What a finished run prints: the final held-out accuracies and the files it wrote."""
    lines = [f"done: {step} steps"]
    if history["eval_steps"]:
        mask = f"[MASK] accuracy {history['eval_mask_acc'][-1]:.1%}, " if history.get("eval_mask_acc") else ""
        lines[0] += (f"; held-out {mask}MLM accuracy (all positions) {history['eval_mlm_acc'][-1]:.1%}, NSP accuracy "
                     f"{history['eval_nsp_acc'][-1]:.1%} (step {history['eval_steps'][-1]})")
    if history["loss"]:
        lines[0] += f"; training loss {history['loss'][-1]:.3f}"
    names = [HISTORY_NAME, LOG_NAME, RESOLVED_CONFIG_NAME, VOCAB_NAME, FINAL_MODEL_NAME] + [EXPORT_DIR_NAME + "/"] * exported
    checkpoints = ckpt.list_checkpoints(out_dir / CHECKPOINT_DIR_NAME)
    if checkpoints:
        names.append(f"{CHECKPOINT_DIR_NAME}/ ({len(checkpoints)} checkpoint(s))")
    lines.append(f"wrote in {out_dir}: {', '.join(names)}")
    return "\n".join(lines)
