"""The project's weight files, one format family, one loader.

Three kinds of file hold a model's weights: the resumable checkpoint (`step_XXXXXX.pth`), the milestone
(`milestone_XXXXXX.pth`, weights for a probe) and the final model. Each is a dict of tensors and plain
Python values with a `format` field, "chinese-bert-correlation/<kind>-v<version>", and each carries
`model_config`, so a reader builds the model from the file alone. `load_weights` reads any of them safely
(torch.load(weights_only=True): a file whose pickle would build arbitrary objects is refused unrun),
brings an older version up to date with `migrate`, and checks the kind against those the caller accepts.
`save_weights` writes atomically (temp file, fsync, rename): a crash mid-save leaves the old file.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import asdict, fields
from pathlib import Path

import torch

from bertstudy.base.atomic_io import atomic_writer
from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import CHECKPOINT_DIR_NAME
from bertstudy.training.config import TrainConfig
from bertstudy.training.trainer import TOTAL_NAMES, model_config_for

FORMAT_PREFIX = "chinese-bert-correlation/"
VERSION = 2  # v2: every kind carries model_config, and a stored config holds every field it trains with
CHECKPOINT = "checkpoint"
MILESTONE = "milestone"
FINAL = "final-model"
REQUIRED = {
    CHECKPOINT: ("format", "step", "model", "model_config", "optimizer", "rng", "config", "vocab_hash", "history"),
    MILESTONE: ("format", "step", "model", "model_config", "config", "vocab_hash", "heldout"),
    FINAL: ("format", "model", "model_config", "vocab_hash"),
}
_FORMAT = re.compile(re.escape(FORMAT_PREFIX) + r"(checkpoint|milestone|final-model)-v(\d+)")
# Config fields added after runs were made, with the value a run made before them trained with: a stored
# config without one trained, and continues, with that value.
OLDER_RUN_VALUES = {"pre_ln": False, "mlm_bias_init": "zeros", "schedule": "cosine", "decay_fraction": 0.2,
                    "nsp_weight": 1.0}


def format_name(kind: str, version: int = VERSION) -> str:
    return f"{FORMAT_PREFIX}{kind}-v{version}"


def parse_format(value) -> tuple[str, int] | None:
    """(kind, version) of a `format` field, or None when it is none of ours."""
    found = _FORMAT.fullmatch(value) if isinstance(value, str) else None
    return (found.group(1), int(found.group(2))) if found else None


def migrate_config(saved: dict) -> dict:
    """A stored run config with the fields added since it was written, at the values it trained with: a run
    from before split_seed split with its seed, one from before eval_mask_rate evaluated at its mask_rate."""
    config = dict(saved)
    if "split_seed" not in config and "seed" in config:
        config["split_seed"] = config["seed"]
    if "eval_mask_rate" not in config and "mask_rate" in config:
        config["eval_mask_rate"] = config["mask_rate"]
    return {**OLDER_RUN_VALUES, **config}


def _model_config_of_checkpoint(state: dict) -> dict:
    """A v1 checkpoint's model shape: its config's fields and the vocabulary its embedding holds."""
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{name: value for name, value in state["config"].items() if name in known})
    return asdict(model_config_for(config, int(state["model"]["embeddings.word.weight"].shape[0])))


def migrate(state: dict) -> dict:
    """`state` brought to the current version. v1 -> v2: the stored config gains the fields added since
    (migrate_config); a checkpoint gains model_config; a model_config without pre_ln is post-LN; metric totals
    from before the per-kind counters are padded with NaN ("unknown": the next log point leaves the kinds
    out); a single-process checkpoint with `rng` alone gains `rng_by_rank`."""
    kind, version = parse_format(state["format"])
    if version < 2:
        state = dict(state)
        if isinstance(state.get("config"), dict):
            state["config"] = migrate_config(state["config"])
        if "model_config" in state:
            state["model_config"] = {"pre_ln": False, **state["model_config"]}
        elif kind == CHECKPOINT and "config" in state and "model" in state:
            state["model_config"] = _model_config_of_checkpoint(state)
        if "totals" in state:
            saved = list(state["totals"])
            state["totals"] = saved + [math.nan] * (len(TOTAL_NAMES) - len(saved))
        if kind == CHECKPOINT and not state.get("rng_by_rank") and "rng" in state:
            state["rng_by_rank"] = [state["rng"]]
        state["format"] = format_name(kind, 2)
    return state


def save_weights(path, state: dict) -> None:
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


def read_state(path: Path):
    """torch.load(weights_only=True), its refusals and failures as BadInputError naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        builds = f": it would build {found.group(1)}" if found else ""
        raise BadInputError(path, f"refused: the file holds pickled objects other than tensors and plain data{builds}; "
                                  f"it was not run") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        detail = _whole_words(str(exc)) or type(exc).__name__
        raise BadInputError(path, f"not a readable checkpoint (truncated or corrupt: {detail})") from None


def load_weights(path, kinds: tuple[str, ...], hint: str) -> dict:
    """One of our weight files of one of `kinds`, migrated to the current version; anything else is refused
    with a BadInputError naming the file (`hint`: the advice after a file that is none of `kinds`)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such checkpoint file")
    what = describe_non_checkpoint(path, hint)
    if what:
        raise BadInputError(path, what)
    state = read_state(path)
    found = parse_format(state.get("format")) if isinstance(state, dict) else None
    if found is None:
        raise BadInputError(path, f"not a {' or '.join(format_name(k) for k in kinds)} file")
    kind, version = found
    if kind not in kinds:
        if kind == FINAL:
            raise BadInputError(path, f"is a finished run's final model (weights only), not a resumable checkpoint; {hint}")
        raise BadInputError(path, f"is a {kind} file, not a {' or '.join(kinds)} file; {hint}")
    if version > VERSION:
        raise BadInputError(path, f"is a {kind} file of version {version}, newer than this code reads ({VERSION})")
    state = migrate(state)
    missing = [key for key in REQUIRED[kind] if key not in state]
    if missing:
        raise BadInputError(path, f"checkpoint lacks {', '.join(missing)}")
    return state


def save_milestone(path, step: int, model_state: dict, model_config: dict, config: dict, vocab_hash: str,
                   heldout: dict | None) -> None:
    """heldout: the eval at this step, or None."""
    save_weights(path, {"format": format_name(MILESTONE), "step": step, "model": model_state,
                        "model_config": model_config, "config": config, "vocab_hash": vocab_hash, "heldout": heldout})


# What a probe says after a file that is no checkpoint (not training's --resume advice).
PROBE_HINT = ("give --checkpoints a milestone_XXXXXX.pth or step_XXXXXX.pth of the run, or leave --checkpoints out "
              "(every milestone in RUN_DIR/checkpoints_100k/)")


def load_milestone(path, hint: str = PROBE_HINT) -> dict:
    """A milestone, or a BadInputError naming the file (missing, truncated, not a milestone)."""
    return load_weights(path, (MILESTONE,), hint)
