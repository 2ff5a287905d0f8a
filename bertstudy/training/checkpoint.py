"""Resumable checkpoints: per-rank RNG states, finding the one to resume from, compatibility, pruning.

The file format, safe loading, migration of older files and atomic saving are weights.py's, shared
with milestones and the final model.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist

from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, CHECKPOINT_FILE, FINAL_MODEL_NAME,  # noqa: F401
                                      checkpoint_path, numbered_files)
from bertstudy.training.weights import (CHECKPOINT, FINAL, RESUME_HINT, describe_non_checkpoint,  # noqa: F401
                                        format_name, load_weights, save_weights)

CHECKPOINT_FORMAT = format_name(CHECKPOINT)
FINAL_FORMAT = format_name(FINAL)


def capture_rng_states(device: torch.device | None = None) -> dict:
    """Every RNG this process touches, as tensors and plain lists (weights_only-loadable). On CUDA only
    this process's own GPU: under DDP each rank has one, and another machine may have fewer."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    on_cuda = device is not None and device.type == "cuda"
    states = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if on_cuda else [],
    }
    return states


def restore_rng_states(states: dict, device: torch.device | None = None) -> None:
    """Restore what capture_rng_states saved; the CUDA state (if any) goes to this process's GPU."""
    py_version, py_state, py_gauss = states["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"][0], device)


def gather_rng_states(dist) -> list | None:
    """Each rank's RNG states, gathered to rank 0 (None on the other ranks)."""
    rng = capture_rng_states(dist.device)
    if not dist.enabled:
        return [rng]
    gathered = [None] * dist.world_size if dist.is_main else None
    torch_dist.gather_object(rng, gathered, dst=0)
    return gathered


def rank_rng_states(state: dict, rank: int) -> dict:
    """This rank's RNG states from a checkpoint (`rng_by_rank`: all ranks, gathered to rank 0 when saving)."""
    return state["rng_by_rank"][rank]


save_checkpoint = save_weights


def load_checkpoint(path, hint: str = RESUME_HINT) -> dict:
    """A resumable checkpoint (weights.load_weights, migrated to the current version), or a BadInputError."""
    return load_weights(path, (CHECKPOINT,), hint)


def list_checkpoints(folder) -> list[tuple[int, Path]]:
    return numbered_files(folder, CHECKPOINT_FILE)


def find_resume_checkpoint(folder) -> tuple[dict, Path] | None:
    """The newest checkpoint that loads; a truncated or refused newer one is skipped with a warning."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path), path
        except BadInputError as exc:
            print(f"warning: skipping checkpoint {exc}", file=sys.stderr)
    return None


def check_compatible(state: dict, path, config: dict, vocab_hash: str, architecture_fields) -> None:
    """Refuse a checkpoint of another vocabulary or model shape, naming what differs."""
    if state["vocab_hash"] != vocab_hash:
        raise BadInputError(path, f"was trained with another vocabulary (vocab hash {state['vocab_hash'][:12]}, "
                                  f"this run's is {vocab_hash[:12]}); use the same --corpus and --min-freq or another --out-dir")
    saved = state["config"]
    diffs = [f"{name} {saved.get(name)} != {config[name]}" for name in architecture_fields if saved.get(name) != config[name]]
    if diffs:
        raise BadInputError(path, f"was trained with another model config ({'; '.join(diffs)}); use another --out-dir")


def prune_checkpoints(folder, keep_last: int) -> list[Path]:
    """Delete all but the newest keep_last checkpoints (0 keeps all); returns the removed paths."""
    if keep_last <= 0:
        return []
    removed = []
    for _, path in list_checkpoints(folder)[:-keep_last]:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def save_final_model(path, model_state: dict, model_config: dict, vocab_hash: str, step: int) -> None:
    save_checkpoint(path, {"format": FINAL_FORMAT, "model": model_state, "model_config": model_config,
                           "vocab_hash": vocab_hash, "step": step})


def load_final_model(path) -> dict:
    return load_weights(path, (FINAL,), RESUME_HINT)

