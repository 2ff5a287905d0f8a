"""Which run an output was made from: a fingerprint of a history's numbers, the check that an
analysis belongs to the history it is drawn with, and the charts' record of their history (a PNG
text chunk) so that visualize_results.py never replaces another run's charts without --overwrite.

A fingerprint hashes the numbers, not the file: the JSONL log and the history JSON of one run hold
the same values and get the same fingerprint, while two runs of the same length do not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from bertstudy.base.errors import BadInputError, UsageError
from bertstudy.analysis.history import History

CHART_HISTORY_KEY = "cbc-history-sha256"  # PNG text chunk: fingerprint of the history a chart shows
CHART_HISTORY_PATH_KEY = "cbc-history"  # PNG text chunk: that history's path, for the message


def series_fingerprint(*series: np.ndarray) -> str:
    """sha256 of the given number lists (steps, values...), independent of the file they came from."""
    payload = json.dumps([np.asarray(s, float).tolist() for s in series], separators=(",", ":"))
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def history_fingerprint(history: History) -> str:
    """The fingerprint of what the charts draw first of all: training steps, MLM accuracy and loss."""
    return series_fingerprint(history.steps, history.mlm_acc, history.loss)


def _describe(steps: int, points: int, metric: str) -> str:
    return f"{steps:,} steps, {points} points of {metric}"


def check_analysis_matches(analysis, analysis_path, history: History) -> None:
    """Raise BadInputError (exit 3) unless `analysis` is an analyze_100k.py result of `history`.

    Checked: it is an analysis at all (not, e.g., a history), the analysed metric exists in the
    history, the last step and point count agree, and where the analysis records the fingerprint of
    its numbers (`source.data_sha256`, written since this check exists) that it is the same."""
    if not isinstance(analysis, dict):
        raise BadInputError(analysis_path, f"expected a JSON object, got {type(analysis).__name__}")
    if isinstance(analysis.get("steps"), list) and "pearson_correlation" not in analysis:
        raise BadInputError(analysis_path, "is a training history, not an analysis; give --analysis the JSON "
                            "that analyze_100k.py wrote")
    missing = [k for k in ("total_steps", "data_points", "pearson_correlation") if k not in analysis]
    if missing:
        raise BadInputError(analysis_path, f"is not an analyze_100k.py result (no {', '.join(missing)})")
    metric = analysis.get("metric")
    metric = metric.get("name") if isinstance(metric, dict) else "mlm_acc"
    metric = metric if isinstance(metric, str) else "mlm_acc"
    advice = f"analyze this history (python analyze_100k.py {history.path}) or leave out --analysis"
    if metric not in history.available_metrics():
        raise BadInputError(analysis_path, f"analyses '{metric}', which {history.path} does not have; {advice}")
    steps, values = history.metric(metric)
    ours = (int(steps[-1]), len(steps))
    theirs = (analysis["total_steps"], analysis["data_points"])
    source = analysis.get("source") if isinstance(analysis.get("source"), dict) else {}
    recorded = source.get("data_sha256")
    if theirs != ours or (recorded is not None and recorded != series_fingerprint(steps, values)):
        of = f" of {source['path']}" if isinstance(source.get("path"), str) else ""
        same_shape = " (same length, different numbers)" if theirs == ours else ""
        theirs_text = (_describe(*theirs, metric) if all(isinstance(v, int) for v in theirs)
                       else f"total_steps {theirs[0]!r}, data_points {theirs[1]!r}")
        raise BadInputError(analysis_path, f"is the analysis of another run{of}{same_shape}: {theirs_text}, "
                            f"but {history.path} has {_describe(*ours, metric)}; {advice}")


def chart_origin(path: Path) -> str | None:
    """The history fingerprint a chart records, or None (not ours, older, or unreadable)."""
    try:
        from PIL import Image  # matplotlib's own dependency

        with Image.open(path) as image:
            return image.text.get(CHART_HISTORY_KEY)
    except Exception:  # noqa: BLE001 - any unreadable file is "of unknown origin", which refuses
        return None


def check_chart_folder(out_dir: Path, names: Iterable[str], fingerprint: str, overwrite: bool) -> None:
    """Refuse (UsageError, exit 2) to replace charts in `out_dir` that were drawn from another history
    or whose origin is unknown (e.g. the committed study charts), unless `overwrite` is given.
    Charts of the same history are redrawn freely: nothing of another run is lost."""
    if overwrite:
        return
    foreign = [name for name in names if (out_dir / name).exists() and chart_origin(out_dir / name) != fingerprint]
    if foreign:
        shown = ", ".join(foreign[:2]) + (f" and {len(foreign) - 2} more" if len(foreign) > 2 else "")
        raise UsageError(f"--out-dir {out_dir} holds charts of another run or of unknown origin ({shown}); "
                         "nothing was written: choose another --out-dir, or add --overwrite to replace them")


def analysis_origin(path: Path) -> str | None:
    """The `source.data_sha256` an analysis JSON records, or None (not ours, older, or unreadable)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = obj.get("source") if isinstance(obj, dict) else None
    return source.get("data_sha256") if isinstance(source, dict) else None


def check_analysis_out(path: Path, fingerprint: str, overwrite: bool) -> None:
    """Refuse (UsageError, exit 2) to replace an existing file at `path` unless it is an analysis of the
    same numbers (same history and metric: it is only redone) or `overwrite` is given."""
    path = Path(path)
    if overwrite or not path.exists() or analysis_origin(path) == fingerprint:
        return
    raise UsageError(f"--out {path} holds an analysis of another history or metric, or a file of unknown origin; "
                     "nothing was written: choose another --out, or add --overwrite to replace it")
