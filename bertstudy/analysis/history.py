"""Read a training history in any of the three forms the study meets, into one validated `History`.

Formats (docs/DESIGN.md):
- "original": the 2025 study's `training_history_100k.json`, an object of parallel lists
  `steps, mlm_acc, nsp_acc, loss, lr` (one point per log interval, accuracies as fractions).
- "ours": the same object plus `mlm_loss, nsp_loss, tokens_per_s, elapsed_s`, the eval lists
  `eval_steps, eval_mlm_acc, eval_nsp_acc, eval_mlm_loss` and `meta` (with `meta.format`); a newer
  one also MLM accuracy by position kind, `mask_acc, random_acc, unchanged_acc` (in `series`)
  and `eval_mask_acc, eval_random_acc, eval_unchanged_acc`, and `meta.shortcut` (`shortcut_levels`).
- "jsonl-log": `training_log_100k.jsonl`, one record per line with `kind` "train" / "eval" /
  "start" / "checkpoint" / "end"; while training runs its last line may be half-written.

Required: `steps` and `mlm_acc`. Every other list is optional and becomes an empty array when
absent (histories written by other tools may lack `lr` or `nsp_acc`); a list that is present must
have one finite number per step. Steps must be integers, strictly increasing. Accuracies must be
fractions in [0, 1] (a percentage would silently distort every fit, so it is refused).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertstudy.base.atomic_io import is_finite_number, iter_jsonl, read_json
from bertstudy.base.errors import BadInputError, UsageError
from bertstudy.base.run_files import HISTORY_FORMAT

REQUIRED_KEYS = ("steps", "mlm_acc")
MAIN_KEYS = ("mlm_acc", "nsp_acc", "loss", "lr")  # parallel to `steps`, named attributes of History
# MLM accuracy at [MASK] positions, at randomly replaced ones and at unchanged ones (the 80/10/10
# recipe's three kinds); `mlm_acc` is the original's figure over all of them
KIND_KEYS = ("mask_acc", "random_acc", "unchanged_acc")
EVAL_KIND_KEYS = tuple("eval_" + key for key in KIND_KEYS)
EVAL_KEYS = ("eval_mlm_acc", "eval_nsp_acc", "eval_mlm_loss", *EVAL_KIND_KEYS)  # parallel to `eval_steps`
ACCURACY_KEYS = ("mlm_acc", "nsp_acc", "eval_mlm_acc", "eval_nsp_acc", *KIND_KEYS, *EVAL_KIND_KEYS)
# JSONL train-record fields copied into `series` (besides the MAIN_KEYS)
LOG_SERIES_KEYS = ("mlm_loss", "nsp_loss", "tokens_per_s", "elapsed_s")
# ... and those a release added later (a resumed older run has them from the resume on only)
LATE_SERIES_KEYS = ("data_wait_s", "skipped_steps", *KIND_KEYS)


@dataclass
class History:
    path: str
    source_format: str  # "original", "ours" (has meta.format) or "jsonl-log"
    steps: np.ndarray  # int64, strictly increasing
    mlm_acc: np.ndarray  # float64, training MLM accuracy, fractions in [0, 1]
    nsp_acc: np.ndarray  # float64, empty when the file has none
    loss: np.ndarray  # float64, empty when the file has none
    lr: np.ndarray  # float64, empty when the file has none
    series: dict[str, np.ndarray] = field(default_factory=dict)  # other per-log lists (mlm_loss, ...)
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_mlm_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_nsp_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_mlm_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_mask_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))  # held-out, at [MASK] positions
    eval_random_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... at randomly replaced ones
    eval_unchanged_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... at unchanged ones
    meta: dict = field(default_factory=dict)  # {} for the original format

    def available_metrics(self) -> list[str]:
        names = [k for k in MAIN_KEYS if len(getattr(self, k))]
        names += sorted(k for k, v in self.series.items() if len(v))
        names += [k for k in EVAL_KEYS if len(getattr(self, k))]
        return names

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric: a training list, a `series` entry or an eval list.

        Raises BadInputError naming the file when the metric is absent or empty.
        """
        if name in MAIN_KEYS:
            steps, values = self.steps, getattr(self, name)
        elif name in EVAL_KEYS:
            steps, values = self.eval_steps, getattr(self, name)
        elif name in self.series:
            steps, values = self.steps, self.series[name]
        else:
            steps, values = self.steps, np.zeros(0)
        if len(values) == 0:
            raise BadInputError(
                self.path, f"has no '{name}' values (available: {', '.join(self.available_metrics()) or 'none'})"
            )
        return steps, values


def _as_steps(path, key: str, raw, line: int | None = None) -> np.ndarray:
    if not isinstance(raw, list):
        raise BadInputError(path, f"'{key}' must be a list of integers, got {type(raw).__name__}", line=line)
    for index, value in enumerate(raw):
        if not is_finite_number(value) or float(value) != math.floor(value):
            raise BadInputError(path, f"'{key}'[{index}] must be an integer step, got {value!r}", line=line)
    steps = np.asarray(raw, dtype=np.int64)
    _check_increasing(path, key, steps, line)
    return steps


def _check_increasing(path, key: str, steps: np.ndarray, line: int | None = None) -> None:
    if len(steps) > 1:
        bad = np.nonzero(np.diff(steps) <= 0)[0]
        if len(bad):
            i = int(bad[0])
            what = "repeated" if steps[i + 1] == steps[i] else "out of order"
            raise BadInputError(
                path, f"'{key}' must be strictly increasing: step {int(steps[i + 1])} at index {i + 1} is {what} "
                f"(after {int(steps[i])})", line=line,
            )


def _as_values(path, key: str, raw, length: int, length_key: str) -> np.ndarray:
    if not isinstance(raw, list):
        raise BadInputError(path, f"'{key}' must be a list of numbers, got {type(raw).__name__}")
    if len(raw) != length:
        raise BadInputError(path, f"'{key}' has {len(raw)} values but '{length_key}' has {length}")
    for index, value in enumerate(raw):
        if not is_finite_number(value):
            raise BadInputError(path, f"'{key}'[{index}] must be a finite number, got {value!r}")
    values = np.asarray(raw, dtype=np.float64)
    _check_accuracy_range(path, key, values)
    return values


def _check_accuracy_range(path, key: str, values: np.ndarray, line: int | None = None) -> None:
    if key in ACCURACY_KEYS and len(values) and (values.min() < 0 or values.max() > 1):
        bad = float(values[(values < 0) | (values > 1)][0])
        raise BadInputError(path, f"'{key}' must be fractions in [0, 1], found {bad!r} (a percentage?)", line=line)


def _from_object(path, obj) -> History:
    if not isinstance(obj, dict):
        raise BadInputError(path, f"expected a JSON object of parallel lists, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise BadInputError(path, f"history lacks required key(s) {', '.join(missing)}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise BadInputError(path, f"'meta' must be an object, got {type(meta).__name__}")
    steps = _as_steps(path, "steps", obj["steps"])
    n = len(steps)
    if n == 0:
        raise BadInputError(path, "'steps' is empty: no logged points")
    main = {k: _as_values(path, k, obj[k], n, "steps") if k in obj else np.zeros(0) for k in MAIN_KEYS}
    eval_steps = _as_steps(path, "eval_steps", obj.get("eval_steps", []))
    evals = {k: _as_values(path, k, obj[k], len(eval_steps), "eval_steps") if k in obj else np.zeros(0)
             for k in EVAL_KEYS}
    skip = {"steps", "eval_steps", "meta", *MAIN_KEYS, *EVAL_KEYS}
    # Other lists the writer added are kept as series when they are parallel to `steps`.
    series = {k: _as_values(path, k, v, n, "steps") for k, v in obj.items() if k not in skip and isinstance(v, list)}
    source_format = "ours" if meta.get("format") else "original"
    return History(path=str(path), source_format=source_format, steps=steps, **main, series=series,
                   eval_steps=eval_steps, **evals, meta=meta)


def _record_number(path, record: dict, key: str, line: int, required: bool):
    if key not in record or record[key] is None:
        if required:
            raise BadInputError(path, f"record lacks '{key}'", line=line)
        return None
    value = record[key]
    if not is_finite_number(value):
        raise BadInputError(path, f"'{key}' must be a finite number, got {value!r}", line=line)
    if key in ACCURACY_KEYS and not 0 <= value <= 1:
        raise BadInputError(path, f"'{key}' must be a fraction in [0, 1], got {value!r}", line=line)
    return float(value)


def _read_log_records(path, allow_partial_last: bool) -> tuple[list, list, dict]:
    """The log's train and eval records as (step, line, record), a resume's re-logged steps replaced,
    and the meta the start and end records give."""
    train: list[tuple[int, int, dict]] = []  # (step, line, record)
    evals: list[tuple[int, int, dict]] = []
    meta: dict = {"format": "jsonl-log"}
    for line, record in iter_jsonl(path, allow_partial_last=allow_partial_last):
        if not isinstance(record, dict) or "kind" not in record:
            raise BadInputError(path, "expected an object with a 'kind' field", line=line)
        kind = record["kind"]
        if kind == "start":
            resumed = record.get("resumed_from")
            if resumed is not None:
                # A resumed run re-logs the steps after its checkpoint; the newer records win.
                train = [t for t in train if t[0] <= resumed]
                evals = [e for e in evals if e[0] <= resumed]
            for key in ("total_steps", "preset", "config"):
                if key in record:
                    meta[key] = record[key]
        elif kind == "end":
            meta["status"] = record.get("status")
        elif kind in ("train", "eval"):
            step = _record_number(path, record, "step", line, required=True)
            if step != math.floor(step):
                raise BadInputError(path, f"'step' must be an integer, got {record['step']!r}", line=line)
            (train if kind == "train" else evals).append((int(step), line, record))
    if not train:
        raise BadInputError(path, "no 'train' records: nothing to analyze yet")
    for rows, what in ((train, "train"), (evals, "eval")):
        for (prev, _, _), (step, line, _) in zip(rows, rows[1:]):
            if step <= prev:
                raise BadInputError(path, f"{what} step {step} does not follow {prev} (repeated or out of order)",
                                    line=line)
    return train, evals, meta


def _column(path, rows, key: str, required: bool, partial_ok: bool = False) -> np.ndarray:
    """One field of every record; empty when no record has it (or, with partial_ok, when some lack it:
    the kind accuracies of a run resumed from a release without them start mid-log)."""
    values = [_record_number(path, rec, key, line, required) for _, line, rec in rows]
    if any(v is None for v in values):
        if required or (any(v is not None for v in values) and not partial_ok):
            first = next(line for (_, line, _), v in zip(rows, values) if v is None)
            raise BadInputError(path, f"record lacks '{key}' that other records have", line=first)
        return np.zeros(0)
    return np.asarray(values, dtype=np.float64)


def _from_jsonl(path, allow_partial_last: bool) -> History:
    train, evals, meta = _read_log_records(path, allow_partial_last)
    series = {k: _column(path, train, k, False) for k in LOG_SERIES_KEYS}
    series.update({k: _column(path, train, k, False, partial_ok=True) for k in LATE_SERIES_KEYS})
    kinds = {"eval_" + k: _column(path, evals, k, False, partial_ok=True) for k in KIND_KEYS}
    return History(
        path=str(path), source_format="jsonl-log",
        steps=np.asarray([t[0] for t in train], dtype=np.int64),
        mlm_acc=_column(path, train, "mlm_acc", True), nsp_acc=_column(path, train, "nsp_acc", False),
        loss=_column(path, train, "loss", False), lr=_column(path, train, "lr", False),
        series={k: v for k, v in series.items() if len(v)},
        eval_steps=np.asarray([e[0] for e in evals], dtype=np.int64),
        eval_mlm_acc=_column(path, evals, "mlm_acc", False),
        eval_nsp_acc=_column(path, evals, "nsp_acc", False),
        eval_mlm_loss=_column(path, evals, "mlm_loss", False),
        **kinds, meta=meta,
    )


SHORTCUT_LEVELS = ("top_char_share", "mask_level", "random_level", "unchanged_level", "overall_level",
                   "overall_level_top_at_random", "context_free_best")


def predicted_shortcut(history: History) -> dict | None:
    """The no-context accuracies the run's training characters predict (`meta.shortcut`, written at the
    run's start by pretraining/shortcut.py): {top_char, top_char_share, mask_level, random_level,
    unchanged_level, overall_level, overall_level_top_at_random, context_free_best, unigram: {argmax,
    sampled}, ...}. `mask_level` is the level to set beside [MASK] accuracy, `overall_level` beside the
    original's all-positions accuracy. None when the history has none (the original's, older runs);
    a malformed one is a BadInputError naming the file."""
    shortcut = history.meta.get("shortcut")
    if shortcut is None:
        return None
    if not isinstance(shortcut, dict) or not isinstance(shortcut.get("top_char"), str):
        raise BadInputError(history.path, "'meta.shortcut' must be an object with a 'top_char'")
    unigram = shortcut.get("unigram")
    values = {key: shortcut.get(key) for key in SHORTCUT_LEVELS}
    if isinstance(unigram, dict):
        values.update({"unigram." + key: unigram.get(key) for key in ("argmax", "sampled")})
    else:
        values["unigram"] = unigram
    for key, value in values.items():
        if not is_finite_number(value) or not 0 <= value <= 1:
            raise BadInputError(history.path, f"'meta.shortcut.{key}' must be a fraction in [0, 1], got {value!r}")
    return shortcut


def load_history(path: str | os.PathLike, *, allow_partial_last: bool = True) -> History:
    """Read and validate a history; every problem is a BadInputError naming the file (and key/line).

    A `.jsonl` file is read as the streamed training log (its half-written last line skipped when
    allow_partial_last); anything else as one JSON object (original or ours).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return _from_jsonl(path, allow_partial_last)
    return _from_object(path, read_json(path))


def check_run_labels(pairs, flag: str = "--compare") -> None:
    """UsageError (exit 2) when a label of LABEL=PATH pairs is used twice: the runs would be mixed up."""
    labels = [label for label, _ in pairs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"{flag}: label(s) used twice: {', '.join(repeated)}")
