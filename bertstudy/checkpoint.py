"""Checkpoints: written atomically, loaded safely, found again for --resume.

A checkpoint is a dict of tensors and plain Python values only (RNG states and configs included),
so it loads with torch.load(weights_only=True): a .pth whose pickle would build arbitrary objects is
refused without being executed. Saving goes through atomic_io.atomic_writer (temp file, fsync,
rename), so a crash or a full disk mid-save leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import pickle
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from .atomic_io import atomic_writer
from .errors import BadInputError

CHECKPOINT_FORMAT = "chinese-bert-correlation/checkpoint-v1"
FINAL_FORMAT = "chinese-bert-correlation/final-model-v1"
CHECKPOINT_DIR_NAME = "checkpoints_100k"
FINAL_MODEL_NAME = "stage4_large_100k_final.pth"
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "rng", "config", "vocab_hash", "history")
_NAME = re.compile(r"^step_(\d{6,})\.pth$")


def checkpoint_path(folder, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}.pth"


def capture_rng_states() -> dict:
    """Every RNG the run touches, as tensors and plain lists (weights_only-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    states = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return states


def restore_rng_states(states: dict) -> None:
    py_version, py_state, py_gauss = states["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path, state: dict) -> None:
    """Atomic save; an OSError (disk full) becomes a StudyError (exit 4) and the old file stays intact."""
    with atomic_writer(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(path, required=REQUIRED_KEYS, kind: str = CHECKPOINT_FORMAT) -> dict:
    """torch.load(weights_only=True); anything else than our plain-data dict is refused with BadInputError."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(path, f"refused: the file holds pickled objects other than tensors and plain data ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise BadInputError(path, f"not a readable checkpoint (truncated or corrupt: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != kind:
        raise BadInputError(path, f"not a {kind} file")
    missing = [key for key in required if key not in state]
    if missing:
        raise BadInputError(path, f"checkpoint lacks {', '.join(missing)}")
    return state


def list_checkpoints(folder) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


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
    return load_checkpoint(path, required=("format", "model", "model_config", "vocab_hash"), kind=FINAL_FORMAT)

