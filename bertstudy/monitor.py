"""Progress of the two long jobs, read from the files they write while they run (docs/DESIGN.md):

- the crawl: `data/crawl_progress.json`, rewritten atomically by rare_char_fetch.py;
- training: in the run folder, `training_log_100k.jsonl` (streamed, preferred) or else
  `training_history_100k.json`, plus the checkpoints in `checkpoints_100k/`.

With a reference (analysis/reference.py), the run's held-out [MASK] accuracy is judged against a finished
run's curve and band, and `alert` names the first of: evals below the band, a non-finite loss, a failed run.
Pure in the sense the scripts need: `collect_progress` reads files and returns a dict,
`format_progress` turns that dict into text; printing and refreshing are check_progress.py's job.
Files caught mid-write are expected, not errors: a half-written last JSONL line is skipped, and a
history JSON that fails to read is read once more after a short pause.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bertstudy.base.atomic_io import is_finite_number, iter_jsonl, read_json
from bertstudy.base.errors import BadInputError
from bertstudy.analysis.history import load_history
from bertstudy.analysis.reference import check_same_kind, describe, judge, non_finite_alert, run_identity
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, CHECKPOINT_FILE, FINAL_MODEL_NAME, HISTORY_NAME, LOG_NAME,
                                      numbered_files)

FINISHED = ("done", "interrupted", "failed")  # training statuses after which silence is expected


@dataclass
class MonitorConfig:
    crawl_progress: Path = Path("data/crawl_progress.json")  # rare_char_fetch.py's default progress file
    run_dir: Path = Path(".")  # train_large_100k.py's default --out-dir, as in the original study
    stale_minutes: float = 10.0  # a running job silent this long is probably stuck or dead
    rate_window: int = 10  # recent log points for steps/s: follows slow-downs, smooths eval/checkpoint pauses
    retry_delay_s: float = 0.2  # pause before reading a history JSON a second time (caught mid-rename)
    alert_evals: int = 3  # evals in a row below a reference band: the cpu_study seeds each dip below for one


def _number(path, obj: dict, key: str, *, optional: bool = False, line: int | None = None):
    value = obj.get(key)
    if value is None and optional:
        return None
    if not is_finite_number(value):
        raise BadInputError(path, f"'{key}' must be a finite number, got {value!r}", line=line)
    return value


def crawl_summary(path: Path, now: float, stale_minutes: float) -> dict | None:
    """The crawl's counts, targets, rate and ETA; None when the progress file does not exist."""
    if not path.exists():
        return None
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise BadInputError(path, f"expected a JSON object, got {type(obj).__name__}")
    counts = {key: _number(path, obj, key) for key in ("documents", "sentences", "vocab")}
    targets = {key: _number(path, obj, f"target_{key}", optional=True) for key in ("sentences", "vocab")}
    started, updated = _number(path, obj, "started_at"), _number(path, obj, "updated_at")
    done = bool(obj.get("done", False))
    elapsed = updated - started
    sentences_per_s = counts["sentences"] / elapsed if elapsed > 0 else None
    documents_per_s = counts["documents"] / elapsed if elapsed > 0 else None
    percent = {key: min(100.0, 100.0 * counts[key] / target) if target else None for key, target in targets.items()}
    eta_s = None
    # Only the sentence target gets an ETA: sentences arrive at a steady rate, while new characters
    # get rarer as the crawl goes on, so a linear vocabulary ETA would be optimistic.
    if not done and targets["sentences"] and sentences_per_s:
        eta_s = max(0.0, targets["sentences"] - counts["sentences"]) / sentences_per_s
    age_s = now - path.stat().st_mtime
    return {
        "path": str(path), "source": obj.get("source"), "done": done, **counts,
        "target_sentences": targets["sentences"], "target_vocab": targets["vocab"],
        "sentences_percent": percent["sentences"], "vocab_percent": percent["vocab"],
        "elapsed_s": elapsed, "sentences_per_s": sentences_per_s, "documents_per_s": documents_per_s,
        "eta_s": eta_s, "last_write_age_s": age_s,
        "stale": not done and age_s > stale_minutes * 60,
    }


def _metrics(path, record: dict, keys: tuple[str, ...], line: int | None) -> dict:
    return {key: _number(path, record, key, optional=True, line=line) for key in keys}


def _rate(points: list[tuple[float, float]], window: int) -> float | None:
    """Steps per second between the point `window` back and the newest: (step, seconds) pairs."""
    if len(points) < 2:
        return None
    (step0, t0), (step1, t1) = points[-min(window + 1, len(points))], points[-1]
    return (step1 - step0) / (t1 - t0) if t1 > t0 and step1 > step0 else None


def _average_rate(segments: list[tuple[float, float, float, float]]) -> float | None:
    """Steps per second over the whole run: each process's (step, time) at its start and last record."""
    steps = sum(step1 - step0 for step0, t0, step1, t1 in segments if t1 > t0)
    seconds = sum(t1 - t0 for step0, t0, step1, t1 in segments if t1 > t0)
    return steps / seconds if seconds > 0 and steps > 0 else None


def _summary_from_log(path: Path, window: int) -> dict:
    """Read the streamed JSONL log; the recent rate counts the records since the last `start` only."""
    start: dict | None = None
    train = evaluation = end = early = saved = None
    points: list[tuple[float, float]] = []  # (step, wall time) of this process's train and speed records
    segments: list[tuple[float, float, float, float]] = []  # per process: start (step, time), last (step, time)
    skipped = 0  # updates the trainer skipped (non-finite loss or gradients, fp16 overflow), whole run
    skips: list[tuple[int, int, int]] = []  # (step, updates skipped, steps covered) of each train record
    evals: dict[int, float | None] = {}  # held-out [MASK] accuracy by step, for --reference
    for line, record in iter_jsonl(path, allow_partial_last=True):
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise BadInputError(path, "expected an object with a 'kind' field", line=line)
        kind = record["kind"]
        step = _number(path, record, "step", optional=kind not in ("train", "eval", "speed"), line=line)
        stamp = _number(path, record, "time", optional=True, line=line)
        if kind == "start":
            start, end, early = record, None, None
            resumed = _number(path, record, "resumed_from", optional=True, line=line) or 0
            points = [(resumed, stamp)] if stamp is not None else []
            segments.append((resumed, stamp, resumed, stamp) if stamp is not None else (0, 0, 0, 0))
            continue
        if segments and step is not None and stamp is not None and segments[-1][1]:
            segments[-1] = (*segments[-1][:2], step, stamp)
        if kind == "train":
            train = {"step": int(step), **_metrics(path, record, ("mask_acc", "mlm_acc", "nsp_acc", "loss", "lr", "tokens_per_s"), line)}
            if stamp is not None:
                points.append((step, stamp))
            count = int(_number(path, record, "skipped_steps", optional=True, line=line) or 0)
            skips.append((int(step), count, int(step - points[-2][0]) if len(points) > 1 else int(step)))
            skipped += count
        elif kind == "eval":
            evaluation = {"step": int(step), **_metrics(path, record, ("mask_acc", "mlm_acc", "nsp_acc", "mlm_loss"), line)}
            evals[int(step)] = evaluation["mask_acc"]
        elif kind == "speed":  # the first steps' speed, before the first train record (training/machine.py)
            early = int(step)
            if stamp is not None:
                points.append((step, stamp))
        elif kind == "checkpoint":
            saved = int(step)
        elif kind == "end":
            end = record
    summary = _log_summary(path, start, train, evaluation, end, early, _rate(points, window), saved)
    if summary["status"] in FINISHED:
        summary["steps_per_s"] = _average_rate(segments)
    return {**summary, "skipped_steps": skipped, "_evals": sorted(evals.items()), "_skips": skips}


def _log_summary(path: Path, start, train, evaluation, end, early, steps_per_s, saved=None) -> dict:
    total = start.get("total_steps") if start else None
    if end is not None:
        status = end.get("status") if end.get("status") in FINISHED else "failed"
    else:
        status = "running" if train or early else "starting"
    # a speed record, or the checkpoint an interrupted run saved (its end), can be newer than any train record
    ended = int(end["step"]) if end and is_finite_number(end.get("step")) else None
    step = max((s for s in (train and train["step"], early, saved, ended) if s is not None), default=None)
    return {
        "source": str(path), "source_format": "jsonl-log", "status": status,
        "step": step,
        "total_steps": int(total) if is_finite_number(total) else None,
        "preset": start.get("preset") if start else None,
        "resumed_from": start.get("resumed_from") if start else None,
        "steps_per_s": steps_per_s,
        "tokens_per_s": train.pop("tokens_per_s") if train else None,
        "train": train, "eval": evaluation,
    }


def _load_history_retrying(path: Path, delay_s: float):
    """load_history, read a second time after `delay_s` when the first read fails (mid-rename)."""
    try:
        return load_history(path)
    except BadInputError:
        time.sleep(delay_s)
    try:
        return load_history(path)
    except BadInputError:
        raw = read_json(path)
        if isinstance(raw, dict) and raw.get("steps") == []:
            return raw  # the trainer's first write: only the step-0 eval, no train point yet
        raise


def _last(values, index: int = -1):
    return float(values[index]) if len(values) else None


def _starting(path: Path, source_format: str, total=None, preset=None) -> dict:
    """A run whose files exist but hold no train point yet."""
    return {"source": str(path), "source_format": source_format, "status": "starting", "step": None,
            "total_steps": int(total) if is_finite_number(total) else None, "preset": preset,
            "resumed_from": None, "steps_per_s": None, "tokens_per_s": None, "train": None, "eval": None,
            "_evals": [], "_skips": []}


def _summary_from_history(path: Path, window: int, delay_s: float) -> dict:
    history = _load_history_retrying(path, delay_s)
    if isinstance(history, dict):  # no train point yet
        meta = history.get("meta") if isinstance(history.get("meta"), dict) else {}
        return _starting(path, "ours", meta.get("total_steps"), meta.get("preset"))
    meta = history.meta
    total = meta.get("total_steps")
    total = int(total) if is_finite_number(total) else None
    step = int(history.steps[-1])
    if meta.get("finished_at") is not None or (total is not None and step >= total):
        status = "done"
    else:
        status = "running" if history.source_format == "ours" else "unknown"  # the original's has no meta
    elapsed = history.series.get("elapsed_s", [])
    points = [(0, 0.0)] + list(zip(history.steps.tolist(), list(elapsed))) if len(elapsed) else []
    tokens = history.series.get("tokens_per_s", [])
    evaluation = None
    if len(history.eval_steps):
        evaluation = {"step": int(history.eval_steps[-1]), "mask_acc": _last(history.eval_mask_acc),
                      "mlm_acc": _last(history.eval_mlm_acc),
                      "nsp_acc": _last(history.eval_nsp_acc), "mlm_loss": _last(history.eval_mlm_loss)}
    rate = _rate(points, window)
    if status == "done" and len(elapsed) and elapsed[-1] > 0:
        rate = step / float(elapsed[-1])  # the whole run's average, not its last points'
    evals = list(zip(history.eval_steps.tolist(), history.eval_mask_acc.tolist())) if len(history.eval_mask_acc) else []
    return {
        "source": str(path), "source_format": history.source_format, "status": status, "step": step,
        "total_steps": total, "preset": meta.get("preset"), "resumed_from": None, "_evals": evals, "_skips": [],
        "steps_per_s": rate, "tokens_per_s": _last(tokens),
        "train": {"step": step, "mask_acc": _last(history.series.get("mask_acc", [])),
                  "mlm_acc": _last(history.mlm_acc), "nsp_acc": _last(history.nsp_acc),
                  "loss": _last(history.loss), "lr": _last(history.lr)},
        "eval": evaluation,
    }


def _stat(path: Path) -> os.stat_result | None:
    """os.stat, or None when the file is absent (or was removed a moment ago by its writer)."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def newest_checkpoint(run_dir: Path, now: float) -> dict | None:
    found = numbered_files(run_dir / CHECKPOINT_DIR_NAME, CHECKPOINT_FILE)
    if not found:
        return None
    step, path = found[-1]
    stat = _stat(path)
    if stat is None:  # pruned between listing and stat
        return None
    return {"path": str(path), "step": step, "age_s": now - stat.st_mtime, "count": len(found)}


def training_summary(run_dir: Path, now: float, config: MonitorConfig) -> dict | None:
    """Step, speed, ETA, latest metrics, newest checkpoint, staleness; None when there is no run."""
    log_path, history_path = run_dir / LOG_NAME, run_dir / HISTORY_NAME
    log_stat, summary = _stat(log_path), None
    if log_stat and log_stat.st_size > 0:
        try:
            summary = _summary_from_log(log_path, config.rate_window)
        except BadInputError:
            if log_path.exists():
                raise
            log_stat = None  # removed while we read: a fresh run replaces the old log
    if summary is None and history_path.exists():
        summary = _summary_from_history(history_path, config.rate_window, config.retry_delay_s)
    if summary is None and log_stat:  # created, nothing written yet
        summary = _starting(log_path, "jsonl-log")
    if summary is None:
        return None
    step, total = summary["step"], summary["total_steps"]
    summary["percent"] = 100.0 * step / total if step is not None and total else None
    rate = summary["steps_per_s"]
    running = summary["status"] in ("running", "starting")
    summary["eta_s"] = (total - step) / rate if running and rate and total and step is not None else None
    summary["checkpoint"] = newest_checkpoint(run_dir, now)
    final = run_dir / FINAL_MODEL_NAME
    summary["final_model"] = str(final) if final.is_file() else None
    mtimes = [st.st_mtime for st in map(_stat, (log_path, history_path)) if st]
    if summary["checkpoint"]:
        mtimes.append(now - summary["checkpoint"]["age_s"])
    summary["last_write_age_s"] = now - max(mtimes) if mtimes else None  # None: removed while we looked
    summary["stale"] = bool(running and mtimes) and summary["last_write_age_s"] > config.stale_minutes * 60
    return summary


def training_alert(training: dict, reference: dict | None, config: MonitorConfig) -> dict | None:
    """The first alert or None: a non-finite loss, a failed run, or `alert_evals` evals in a row below the
    reference band (`training["reference"]`: the run against it); drops the summary's private lists."""
    evals, skips, judged = training.pop("_evals"), training.pop("_skips"), None
    if reference:
        check_same_kind(reference, training["preset"], *run_identity(Path(config.run_dir)))
        judged = judge(reference, [s for s, _ in evals], [v for _, v in evals], config.alert_evals)
    training["reference"] = judged
    alert = non_finite_alert(skips, config.alert_evals)
    if alert is None and training["status"] == "failed":
        alert = {"kind": "failed", "step": training["step"], "message": "the run ended with status failed "
                 "(its stderr says why; a run stops after --max-nonfinite non-finite losses in a row)"}
    return alert or (judged or {}).get("alert")


def collect_progress(config: MonitorConfig, now: float | None = None, reference: dict | None = None) -> dict:
    """Everything check_progress.py shows, as one dict; `nothing_to_watch` when no file exists.
    `reference`: analysis.reference.load_reference of config.reference, read once by the caller."""
    now = time.time() if now is None else now
    crawl = crawl_summary(Path(config.crawl_progress), now, config.stale_minutes)
    training = training_summary(Path(config.run_dir), now, config)
    alert = training_alert(training, reference, config) if training else None
    warnings = []
    if crawl and crawl["stale"]:
        warnings.append(f"crawl: {crawl['path']} not updated for {format_duration(crawl['last_write_age_s'])} "
                        f"(--stale-minutes {config.stale_minutes:g}); is rare_char_fetch.py still running?")
    if training and training["stale"]:
        warnings.append(f"training: nothing written in {config.run_dir} for "
                        f"{format_duration(training['last_write_age_s'])} (--stale-minutes {config.stale_minutes:g}); "
                        "is train_large_100k.py still running?")
    return {"time": now, "crawl": crawl, "training": training, "warnings": warnings, "alert": alert,
            "nothing_to_watch": crawl is None and training is None}


def nothing_to_watch_hint(config: MonitorConfig) -> str:
    run_dir = Path(config.run_dir)
    return (f"nothing to watch: no {config.crawl_progress} (written by `python rare_char_fetch.py`, beside its "
            f"--out) and no {run_dir / LOG_NAME} or {run_dir / HISTORY_NAME} (written by "
            f"`python train_large_100k.py --out-dir {run_dir}`); point --crawl-progress / --run-dir at them")


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _of(value, target, percent) -> str:
    text = f"{value:,}"
    return text + (f" / {target:,} ({percent:.1f}%)" if target else "")


def _metric_line(values: dict, keys: tuple[str, ...]) -> str:
    parts = []
    for key in keys:
        value = values.get(key)
        if value is not None:
            parts.append(f"{key} {value:.2e}" if key == "lr" else f"{key} {value:.4f}")
    return "  ".join(parts) + f"  (step {values['step']:,})"


def _format_crawl(crawl: dict) -> list[tuple[str, str]]:
    rows = [("documents", f"{crawl['documents']:,}"),
            ("sentences", _of(crawl["sentences"], crawl["target_sentences"], crawl["sentences_percent"])),
            ("vocab", _of(crawl["vocab"], crawl["target_vocab"], crawl["vocab_percent"]))]
    if crawl["sentences_per_s"] is not None:
        rows.append(("rate", f"{crawl['sentences_per_s']:,.1f} sentences/s, {crawl['documents_per_s']:,.2f} documents/s"))
    if crawl["eta_s"] is not None:
        rows.append(("ETA", f"{format_duration(crawl['eta_s'])} (sentence target)"))
    rows.append(("elapsed", format_duration(crawl["elapsed_s"])))
    rows.append(("last update", f"{format_duration(crawl['last_write_age_s'])} ago"))
    return rows


def _format_training(run: dict) -> list[tuple[str, str]]:
    step = "-" if run["step"] is None else f"{run['step']:,}"
    if run["total_steps"]:
        step += f" / {run['total_steps']:,}" + (f" ({run['percent']:.1f}%)" if run["percent"] is not None else "")
    rows = [("step", step)]
    speed = []
    if run["steps_per_s"] is not None:
        speed.append(f"{run['steps_per_s']:.3g} steps/s")
    if run["tokens_per_s"] is not None:
        speed.append(f"{run['tokens_per_s']:,.0f} tokens/s")
    if speed:
        average = " (average over the run)" if run["status"] in FINISHED and run["steps_per_s"] is not None else ""
        rows.append(("speed", ", ".join(speed) + average))
    if run["eta_s"] is not None:
        rows.append(("ETA", format_duration(run["eta_s"])))
    if run["train"]:
        # [MASK] accuracy beside mlm_acc, the original's figure over all predicted positions
        rows.append(("train", _metric_line(run["train"], ("mask_acc", "mlm_acc", "nsp_acc", "loss", "lr"))))
    if run.get("skipped_steps"):
        rows.append(("skipped", f"{run['skipped_steps']:,} update(s) (non-finite loss or fp16 overflow)"))
    if run["eval"]:
        rows.append(("held-out", _metric_line(run["eval"], ("mask_acc", "mlm_acc", "nsp_acc", "mlm_loss"))))
    if run.get("reference"):
        rows.append(("reference", describe(run["reference"])))
    ckpt = run["checkpoint"]
    rows.append(("checkpoint", f"{ckpt['path']} (step {ckpt['step']:,}, {format_duration(ckpt['age_s'])} ago)"
                 if ckpt else "none yet"))
    if run["final_model"]:
        rows.append(("final model", run["final_model"]))
    rows.append(("last write", f"{format_duration(run['last_write_age_s'])} ago"))
    return rows


def format_progress(summary: dict) -> str:
    """Aligned text: a header line per job, then label/value rows, then warnings."""
    blocks = []
    if summary["crawl"]:
        crawl = summary["crawl"]
        state = "done" if crawl["done"] else "running"
        blocks.append((f"crawl  {crawl['path']}  ({crawl['source']}, {state})", _format_crawl(crawl)))
    if summary["training"]:
        run = summary["training"]
        extra = "".join(f", {k} {run[k]}" for k in ("preset", "resumed_from") if run[k] is not None)
        blocks.append((f"training  {run['source']}  ({run['status']}{extra})", _format_training(run)))
    width = max((len(label) for _, rows in blocks for label, _ in rows), default=0)
    lines = []
    for header, rows in blocks:
        lines.append(header)
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines += [f"warning: {text}" for text in summary["warnings"]]
    if summary.get("alert"):
        lines.append(f"ALERT: {summary['alert']['message']}")
    return "\n".join(lines)
