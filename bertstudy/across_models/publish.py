"""`across_models.py publish`: what results/across_models/ keeps of the runs, so that every figure of the
analysis can be recomputed without the weights: each run's history, resolved config, held-out ids and
probe file, the model-free controls, and the runs' result lines. Weights stay in the runs folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from bertstudy.across_models.probe_pass import CONTROLS_NAME, PROBES_NAME, run_folders
from bertstudy.base.atomic_io import atomic_write_text, read_text_utf8
from bertstudy.base.errors import UsageError
from bertstudy.base.run_files import HISTORY_NAME

RUN_FILES = (HISTORY_NAME, "resolved_config.json", "heldout_documents.json", PROBES_NAME)


def published_files(runs_dir: Path) -> dict[Path, Path]:
    """Destination (relative to the results folder) -> source, for every finished run's files that exist."""
    files = {Path(CONTROLS_NAME): runs_dir / CONTROLS_NAME}
    for results in sorted(runs_dir.glob("runs_shard*.jsonl")):
        files[Path(results.name)] = results
    for folder in sorted(run_folders(runs_dir).values()):
        for name in RUN_FILES:
            files[Path("runs") / folder.name / name] = folder / name
    return {dest: src for dest, src in files.items() if src.exists()}


def publish(runs_dir: Path, out_dir: Path, overwrite: bool = False) -> int:
    """Copy the files (each written atomically); a different file already there is kept unless `overwrite`."""
    files = published_files(runs_dir)
    clashes = [out_dir / dest for dest, src in files.items()
               if (out_dir / dest).exists() and (out_dir / dest).read_bytes() != src.read_bytes()]
    if clashes and not overwrite:
        raise UsageError(f"{clashes[0]} (and {len(clashes) - 1} more) differ from the runs' files; give --overwrite "
                         "to replace the published results")
    for dest, src in files.items():
        target = out_dir / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in (".json", ".jsonl"):
            atomic_write_text(target, read_text_utf8(src))
        else:
            shutil.copyfile(src, target)
    return len(files)
