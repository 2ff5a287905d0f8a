"""The two records of a training run (formats in docs/DESIGN.md):

- training_log_100k.jsonl: one JSON object per event, appended and flushed as it happens, so
  check_progress.py can follow a live run and a crash loses at most a half-written last line;
- training_history_100k.json: the original study's parallel lists (steps, mlm_acc, nsp_acc, loss,
  lr) plus ours, rewritten whole and atomically; durably (fsynced) only with each checkpoint and at the
  end, in between at most every HISTORY_REFRESH_S seconds without fsync (HistoryFile). Rewriting and
  fsyncing it at each of a GPU run's 1,000 log points cost a few percent of the run; every point is in
  the log the moment it happens, and the checkpoint holds the history a resume continues from.

On --resume both are cut back to the checkpoint's step, so the finished files equal those of an
uninterrupted run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bertstudy.base.atomic_io import atomic_write_json, atomic_writer, iter_jsonl
from bertstudy.base.run_files import HISTORY_FORMAT, HISTORY_NAME, LOG_NAME  # noqa: F401  (the names this module writes)

TRAIN_LISTS = {  # history list -> key of the "train" log record
    "steps": "step", "mlm_acc": "mlm_acc", "nsp_acc": "nsp_acc", "loss": "loss", "lr": "lr",
    "mlm_loss": "mlm_loss", "nsp_loss": "nsp_loss", "tokens_per_s": "tokens_per_s", "elapsed_s": "elapsed_s",
    "data_wait_s": "data_wait_s",  # seconds the loop waited for batches since the previous point
    "skipped_steps": "skipped_steps",  # updates skipped since the previous point (non-finite, fp16 overflow)
}
# MLM accuracy by what the 80/10/10 recipe did to the position: [MASK], a random token, left unchanged
# (trainer.KIND_ACC_KEYS); mlm_acc stays the original's all-positions figure
KIND_LISTS = {"mask_acc": "mask_acc", "random_acc": "random_acc", "unchanged_acc": "unchanged_acc"}
TRAIN_LISTS.update(KIND_LISTS)
EVAL_LISTS = {"eval_steps": "step", "eval_mlm_acc": "mlm_acc", "eval_nsp_acc": "nsp_acc", "eval_mlm_loss": "mlm_loss",
              **{"eval_" + name: key for name, key in KIND_LISTS.items()}}
# lists a history may lack: kept only while every point has them (see _append_optional)
OPTIONAL_TRAIN_KEYS = ("data_wait_s", "skipped_steps", *KIND_LISTS.values())
OPTIONAL_EVAL_KEYS = tuple(KIND_LISTS.values())
TIMING_LISTS = ("tokens_per_s", "elapsed_s", "data_wait_s")  # differ between runs of identical content


def new_history(meta: dict) -> dict:
    history = {name: [] for name in [*TRAIN_LISTS, *EVAL_LISTS]}
    history["meta"] = {"format": HISTORY_FORMAT, **meta}
    return history


def _append_optional(history: dict, name: str, record: dict, key: str, steps_name: str) -> None:
    """An optional list is kept only while every point has it (a history begun by an older release, or
    a record from another writer, goes without it): the lists stay parallel and all numbers."""
    if key in record and len(history.get(name, ())) == len(history[steps_name]) - 1:
        history.setdefault(name, []).append(record[key])
    else:
        history.pop(name, None)


def _add_point(history: dict, record: dict, lists: dict, optional, steps_name: str) -> None:
    for name, key in lists.items():
        if key in optional:
            _append_optional(history, name, record, key, steps_name)
        else:
            history[name].append(record[key])


def add_train_point(history: dict, record: dict) -> None:
    _add_point(history, record, TRAIN_LISTS, OPTIONAL_TRAIN_KEYS, "steps")


def add_eval_point(history: dict, record: dict) -> None:
    _add_point(history, record, EVAL_LISTS, OPTIONAL_EVAL_KEYS, "eval_steps")


def truncate_history(history: dict, step: int) -> dict:
    """Drop every point after `step` (the resumed checkpoint's)."""
    keep = sum(1 for s in history["steps"] if s <= step)
    keep_eval = sum(1 for s in history["eval_steps"] if s <= step)
    for name in TRAIN_LISTS:
        if name in history:
            del history[name][keep:]
    for name in EVAL_LISTS:
        if name in history:
            del history[name][keep_eval:]
    return history


def write_history(path, history: dict, durable: bool = True) -> None:
    atomic_write_json(path, history, fsync=durable)


HISTORY_REFRESH_S = 60.0  # between checkpoints a live reader's copy is at most this old (plus a log interval)


class HistoryFile:
    """When the history file is rewritten: `point` after a log or eval point (at most every refresh_s
    seconds, not fsynced), `save` with a checkpoint and at the end (always, fsynced)."""

    def __init__(self, path, refresh_s: float = HISTORY_REFRESH_S, clock=time.monotonic):
        self.path, self.refresh_s, self.clock = Path(path), refresh_s, clock
        self.written = None  # clock() at the last write; None: not yet written by this session

    def point(self, history: dict) -> None:
        now = self.clock()
        if self.written is None or now - self.written >= self.refresh_s:
            write_history(self.path, history, durable=False)
            self.written = now

    def save(self, history: dict) -> None:
        write_history(self.path, history, durable=True)
        self.written = self.clock()


class RunLog:
    """Appends one JSON line per event and flushes it at once."""

    def __init__(self, path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists() and self.path.stat().st_size:
            self._cut_back(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run starts a fresh log
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", encoding="utf-8")

    def _cut_back(self, step: int) -> None:
        """Keep the records up to the resumed step; a half-written last line (SIGKILL) is dropped."""
        kept = [obj for _, obj in iter_jsonl(self.path, allow_partial_last=True)
                if not isinstance(obj.get("step"), int) or obj.get("kind") == "start" or obj["step"] <= step]
        with atomic_writer(self.path) as handle:
            for obj in kept:
                handle.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def write(self, kind: str, **fields) -> dict:
        record = {"kind": kind, **fields, "time": time.time()}
        self.handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        self.handle.flush()
        return record

    def close(self) -> None:
        self.handle.close()
