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

from bertstudy.base.atomic_io import atomic_writer
from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, CHECKPOINT_FILE, FINAL_MODEL_NAME,  # noqa: F401
                                      checkpoint_path, numbered_files)

CHECKPOINT_FORMAT = "chinese-bert-correlation/checkpoint-v1"
FINAL_FORMAT = "chinese-bert-correlation/final-model-v1"
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "rng", "config", "vocab_hash", "history")


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


def rank_rng_states(state: dict, rank: int) -> dict:
    """This rank's RNG states from a checkpoint: `rng_by_rank` (all ranks, gathered to rank 0 when
    saving), or `rng` alone in a single-process checkpoint of an earlier version."""
    by_rank = state.get("rng_by_rank")
    return by_rank[rank] if by_rank else state["rng"]


def save_checkpoint(path, state: dict) -> None:
    """Atomic save; an OSError (disk full) becomes a StudyError (exit 4) and the old file stays intact."""
    with atomic_writer(path, "wb") as handle:
        torch.save(state, handle)


def _whole_words(text: str, limit: int = 160) -> str:
    """The first line of `text`, cut at a word boundary (with an ellipsis) when longer than limit."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " ..."


RESUME_HINT = "resume from a checkpoints_100k/step_XXXXXX.pth, or give --resume alone (the newest in --out-dir)"


def describe_non_checkpoint(path: Path, hint: str = RESUME_HINT) -> str | None:
    """What a file that cannot be a torch checkpoint is (JSON, text, empty...), or None if it may be one;
    `hint` is the advice that follows (training's --resume advice by default)."""
    if path.is_dir():
        run = path.parent if path.name == CHECKPOINT_DIR_NAME else path
        if hint != RESUME_HINT:
            return f"is a folder, not a checkpoint; {hint}"
        return f"is a folder, not a checkpoint; to continue the run in it: --out-dir {run} --resume"
    with open(path, "rb") as handle:
        head = handle.read(256)
    if not head:
        return f"is empty, not a checkpoint; {hint}"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip format, or a legacy pickle
        return None
    stripped = head.lstrip()
    if path.suffix == ".jsonl" or (stripped[:1] == b"{" and b"\n{" in head and b'"kind"' in head):
        return f"is a JSON Lines file (a training log?), not a checkpoint; {hint}"
    if stripped[:1] in (b"{", b"["):
        guess = " (a training history?)" if b'"steps"' in head or "history" in path.name else ""
        return f"is a JSON file{guess}, not a checkpoint; {hint}"
    if head[8:10] == b'{"':
        return f"is a safetensors file (an export_hf/ model?), not a checkpoint; {hint}"
    try:
        head.decode("utf-8")
        return f"is a text file, not a checkpoint; {hint}"
    except UnicodeDecodeError:
        return f"is not a torch checkpoint file; {hint}"


def load_checkpoint(path, required=REQUIRED_KEYS, kind: str = CHECKPOINT_FORMAT, hint: str = RESUME_HINT) -> dict:
    """torch.load(weights_only=True); anything else than our plain-data dict is refused with BadInputError
    (`hint`: the advice after a file that is no checkpoint at all; training's --resume advice by default)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such checkpoint file")
    what = describe_non_checkpoint(path, hint)
    if what:
        raise BadInputError(path, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        builds = f": it would build {found.group(1)}" if found else ""
        raise BadInputError(path, f"refused: the file holds pickled objects other than tensors and plain data{builds}; "
                                  f"it was not run") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        detail = _whole_words(str(exc)) or type(exc).__name__
        raise BadInputError(path, f"not a readable checkpoint (truncated or corrupt: {detail})") from None
    if isinstance(state, dict) and state.get("format") == FINAL_FORMAT and kind != FINAL_FORMAT:
        raise BadInputError(path, f"is a finished run's final model (weights only), not a resumable checkpoint; {hint}")
    if not isinstance(state, dict) or state.get("format") != kind:
        raise BadInputError(path, f"not a {kind} file")
    missing = [key for key in required if key not in state]
    if missing:
        raise BadInputError(path, f"checkpoint lacks {', '.join(missing)}")
    return state


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


def check_compatible(state: dict, path, config: dict, vocab_hash: str, architecture_fields,
                     older_run_values: dict | None = None) -> None:
    """Refuse a checkpoint of another vocabulary or model shape, naming what differs. `older_run_values`:
    what a checkpoint made before a field existed was trained with (pre_ln: False)."""
    if state["vocab_hash"] != vocab_hash:
        raise BadInputError(path, f"was trained with another vocabulary (vocab hash {state['vocab_hash'][:12]}, "
                                  f"this run's is {vocab_hash[:12]}); use the same --corpus and --min-freq or another --out-dir")
    saved = {**(older_run_values or {}), **state["config"]}
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

