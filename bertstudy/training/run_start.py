"""How a training run starts: `resolve_run` settles, once and before anything is built, the config the
run trains with (threads, a resume's own config, the device's batch split) and the start plan (the
checkpoint to resume from, the precision). From then on the TrainConfig is fixed: nothing replaces it.

The run's --out-dir decides whether it starts fresh, resumes, or is refused (nothing is ever lost):

- A new run in a folder that holds another run's checkpoints, history, log or final model is
  refused (exit 2) unless --overwrite is given; nothing is deleted by the refusal.
- --resume continues from a checkpoint (the newest valid one in the folder, or the one named) and
  fails when there is none; --resume-if-possible starts a new run then instead.
- The resumed run takes its config from the checkpoint (config.resume_config).
- A resume cannot shorten a run: --steps below the checkpoint's step is refused (exit 2).
- A finished run (its last checkpoint at its last step, the history's finished_at set, the final
  model written) rerun with --resume or --resume-if-possible says "already complete" and changes
  nothing: no log record, no rewritten finished_at or training time (exit 0).
- A resume line that names the run's preset, where the preset has changed since the run started,
  continues the run as it was and says on stderr which of the preset's values differ.
- A CUDA-graph compile mode with accumulation is refused before any work when the command line (or
  the CPU) fixes the split, and again after a GPU's batch probe chose one (config.check_cuda_graph_split).
- --compile and --save-interval left unset take the device's value (device_defaults) before the start is
  planned, so that refusal already sees whether the run compiles; a resumed run keeps its own save interval.
- Output folders are checked before any work: a folder under a file or one that cannot be written
  is a one-line usage error (exit 2).
Under DDP rank 0 makes this decision and sends it, the checkpoint included, to every rank, so the
ranks need no shared filesystem (only rank 0 writes outputs).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as torch_dist

from bertstudy.base.atomic_io import check_writable_dir, read_json
from bertstudy.base.errors import BadInputError, NothingToDo, StudyError, UsageError
from bertstudy.base.run_files import EXPORT_DIR_NAME, HISTORY_NAME, LOG_NAME
from bertstudy.corpus.corpus_io import load_documents, missing_corpus_hint
from bertstudy.model import BertForPretraining
from bertstudy.pretraining.vocab import build_vocab
from bertstudy.training import checkpoint as ckpt
from bertstudy.training.batch_fit import resolve_batch_split, wants_auto_batch
from bertstudy.training.config import (UNSET_ON_CPU, UNSET_ON_CUDA, TrainConfig, check_cuda_graph_split, preset_drift,
                                       resume_config)
from bertstudy.training.device import Distributed, autocast_context, precision_settings
from bertstudy.training.machine import machine_threads
from bertstudy.training.trainer import model_config_for


@dataclass
class StartPlan:
    """How the run starts, beside its TrainConfig: the checkpoint it continues (if any) and its precision."""

    state: dict | None = None  # the checkpoint resumed from (None: a new run); set_up takes it and drops it
    path: Path | None = None  # its file
    amp_dtype: torch.dtype | None = None  # autocast's dtype (None: full precision), from device.precision_settings
    use_scaler: bool = False  # fp16 needs a GradScaler


def earlier_run_files(out_dir: Path) -> list[str]:
    """The files in out_dir that belong to a run: what a new run would overwrite or make stale."""
    found = [name for name in (HISTORY_NAME, LOG_NAME, ckpt.FINAL_MODEL_NAME, EXPORT_DIR_NAME) if (out_dir / name).exists()]
    checkpoints = ckpt.list_checkpoints(out_dir / ckpt.CHECKPOINT_DIR_NAME)
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint(s) in {ckpt.CHECKPOINT_DIR_NAME}/")
    return found


def check_corpus(path, resuming: bool = False) -> None:
    path = Path(path)
    if not path.exists() and resuming:
        raise BadInputError(path, "no such corpus (the one the run was trained on); give its new place with --corpus")
    if not path.exists():
        raise BadInputError(path, f"no such corpus; {missing_corpus_hint(path, '--corpus ')}")
    if path.is_dir():
        raise BadInputError(path, "is a folder; --corpus takes a corpus file (JSONL, or the original's JSON)")


def _find_checkpoint(config: TrainConfig, resume: str, if_possible: bool):
    """(state, path) to resume from, or None for a new run (if_possible only)."""
    if resume != "auto":
        return ckpt.load_checkpoint(resume), Path(resume)
    folder = Path(config.out_dir) / ckpt.CHECKPOINT_DIR_NAME
    found = ckpt.find_resume_checkpoint(folder)
    if found is None and not if_possible:
        where = "no valid checkpoint in it" if folder.is_dir() else "no such folder"
        raise BadInputError(folder, f"nothing to resume ({where}); start a new run without --resume, "
                                    f"or use --resume-if-possible")
    return found


def finished_at(out_dir: Path) -> float | None:
    """When the run in out_dir finished (its history's meta.finished_at, with the final model present), else None."""
    if not (out_dir / ckpt.FINAL_MODEL_NAME).is_file():
        return None
    try:
        meta = read_json(out_dir / HISTORY_NAME).get("meta")
    except (StudyError, AttributeError):
        return None
    stamp = meta.get("finished_at") if isinstance(meta, dict) else None
    return stamp if isinstance(stamp, (int, float)) else None


def check_resume_length(step: int, config: TrainConfig, path: Path) -> None:
    """Refuse a resume that would shorten the run; say "already complete" (exit 0) for a finished one."""
    if step > config.steps:
        raise UsageError(f"--steps {config.steps} is below the step this run has reached ({step:,}, {path}); a run "
                         f"cannot be shortened: give --steps {step} or more, or start a new run in another --out-dir")
    out_dir = Path(config.out_dir)
    done = finished_at(out_dir) if step == config.steps else None
    if done is not None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(done))
        raise NothingToDo(f"{out_dir}: this run is already complete ({step:,} of {config.steps:,} steps, finished "
                          f"{when}); nothing was changed. To train it longer: --resume --steps N (N > {step}); "
                          f"to start over: --overwrite")


def note_preset_drift(resumed: TrainConfig, given: dict, path: Path) -> None:
    """Say (stderr) where the resumed run differs from the preset this command line names, as defined today."""
    drift = preset_drift(resumed, given)
    if drift:
        fields_said = ", ".join(f"{name} {run} (preset now {today})" for name, run, today in drift)
        print(f"note: {path} was trained with --preset {given['preset']} as it was then; it continues with its own "
              f"values, which differ from today's preset in {fields_said}. For today's recipe train in another "
              f"--out-dir", file=sys.stderr)


def check_fixed_split(config: TrainConfig, device) -> None:
    """Where no batch probe will choose the split (a CPU, or --batch-size N), refuse a CUDA-graph compile
    mode with accumulation now, before anything is read or written."""
    if not wants_auto_batch(config, device):
        check_cuda_graph_split(config)


def _plan_on_this_rank(config: TrainConfig, resume: str | None, given: dict, overwrite: bool, if_possible: bool,
                       world_size: int, device=None) -> tuple[TrainConfig, dict | None, Path | None]:
    out_dir = Path(config.out_dir)
    check_writable_dir(out_dir, "--out-dir")
    found = _find_checkpoint(config, resume, if_possible) if resume else None
    if found is None:
        if device is not None:
            check_fixed_split(config, device)
        earlier = earlier_run_files(out_dir)
        if earlier and not overwrite:
            raise UsageError(f"--out-dir {out_dir} holds another run ({', '.join(earlier)}); continue it with "
                             f"--resume, or replace it with --overwrite (or choose another --out-dir)")
        check_writable_dir(config.cache_dir, "--cache-dir")
        check_corpus(config.corpus)
        return config, None, None
    state, path = found
    resumed = resume_config(state["config"], given, config, str(path))
    if device is not None:
        check_fixed_split(resumed, device)
    note_preset_drift(resumed, given, path)
    check_resume_length(int(state["step"]), resumed, path)
    saved_world = state.get("data_position", {}).get("world_size", 1)
    if saved_world != world_size:
        raise UsageError(f"--resume: {path} was written by {saved_world} process(es) (global batch "
                         f"{resumed.global_batch * saved_world}), this run has {world_size} (global batch "
                         f"{resumed.global_batch * world_size}); resume with torchrun --nproc_per_node {saved_world}"
                         if saved_world > 1 else f"--resume: {path} was written by 1 process (global batch "
                         f"{resumed.global_batch}), this run has {world_size}; resume it without torchrun")
    check_writable_dir(resumed.cache_dir, "--cache-dir")
    check_corpus(resumed.corpus, resuming=True)
    return resumed, state, path


def plan_start(config: TrainConfig, resume: str | None, given: dict, overwrite: bool, if_possible: bool,
               dist: Distributed) -> tuple[TrainConfig, dict | None, Path | None]:
    """(config, checkpoint state or None, its path): decided on rank 0; under DDP sent to every rank."""
    decision, error = None, None
    if dist.is_main:
        try:
            decision = _plan_on_this_rank(config, resume, given or {}, overwrite, if_possible, dist.world_size,
                                          dist.device)
        except StudyError as exc:
            if not dist.enabled:
                raise
            error = (str(exc), exc.exit_code)
    if dist.enabled:
        box = [(decision, error)]
        torch_dist.broadcast_object_list(box, src=0)
        decision, error = box[0]
        if error:
            raise StudyError(error[0], exit_code=error[1])
    return decision


def with_threads(config: TrainConfig, dist: Distributed) -> TrainConfig:
    """--threads chosen from the cores free now when the command line did not give it (machine.py)."""
    if config.threads is not None:
        return config
    threads, why = machine_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if dist.is_main:
        print(why, file=sys.stderr)
    return replace(config, threads=threads)


def device_defaults(config: TrainConfig, device_type: str) -> TrainConfig:
    """The fields left unset (None) that depend on the device, filled in: config.UNSET_ON_CUDA on "cuda",
    config.UNSET_ON_CPU elsewhere; a value the command line or the preset gave stays."""
    # CUDA compiles (torch.compile is well ahead of eager there) and checkpoints rarely (a large_100k
    # checkpoint with AdamW's moments is large against a GPU step); a CPU stays eager (compiling does not
    # pay there) and checkpoints every 2,000 steps. The measurements: docs/PERFORMANCE.md.
    defaults = UNSET_ON_CUDA if device_type == "cuda" else UNSET_ON_CPU
    unset = {name: value for name, value in defaults.items() if getattr(config, name) is None}
    return replace(config, **unset) if unset else config


def with_device_split(config: TrainConfig, dist: Distributed, amp_dtype) -> TrainConfig:
    """The batch split the device takes (batch_fit.py): on CUDA, unless --batch-size N fixed it, the largest
    micro-batch that fits, measured on a model of the run's shape built for the measurement only (its
    random draws forked away: the run's own model is built afterwards from the seed)."""
    if not wants_auto_batch(config, dist.device):
        return config
    documents = load_documents(config.corpus)
    vocab_size = len(build_vocab((s for d in documents for s in d.sentences), config.min_freq))
    with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
        model = BertForPretraining(model_config_for(config, vocab_size)).to(dist.device)
        config = resolve_batch_split(config, model, vocab_size, dist.device,
                                     lambda: autocast_context(dist.device, amp_dtype), verbose=dist.is_main, dist=dist)
    del model
    if dist.device.type == "cuda":
        torch.cuda.empty_cache()
    return config


def resolve_run(config: TrainConfig, resume: str | None, given: dict, overwrite: bool, if_possible: bool,
                dist: Distributed) -> tuple[TrainConfig, StartPlan]:
    """The run's final TrainConfig and its StartPlan, settled before anything is built: threads and the
    device's defaults, then the start (new, resumed with the checkpoint's own config, or refused), then
    the device's batch split and precision. `given`: the fields the command line set (a resume may change
    only some)."""
    # the device's defaults before planning: check_fixed_split (inside it) reads whether the run compiles;
    # a resume takes --compile from this session and the save interval from its checkpoint (or the line)
    config = device_defaults(with_threads(config, dist), dist.device.type)
    config, state, path = plan_start(config, resume, given or {}, overwrite, if_possible, dist)
    config = device_defaults(config, dist.device.type)  # a resumed config: nothing left unset, kept as it is
    amp_dtype, use_scaler = precision_settings(dist.device, config.amp)
    config = with_device_split(config, dist, amp_dtype)
    check_cuda_graph_split(config)  # the measurement may have chosen accumulation (a small card)
    return config, StartPlan(state, path, amp_dtype, use_scaler)
