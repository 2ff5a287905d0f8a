"""Milestone checkpoints: model weights kept at chosen steps for probing, never pruned.

Learning-dynamics studies (Pythia, MultiBERTs, "Probing Across Time") probe a model at log-spaced
steps: 0 (the untrained model), then 1, 2, 5, 10, 20, 50, ... up to the end, so the fast early
change and the slow late change are both sampled. `--milestones log` picks those steps,
`--milestones 100,500,log` adds listed steps to them. A milestone file holds only what a probe
needs (weights, model config, vocab hash, the run's config and the held-out eval at that step),
not the optimizer: about a third of a resumable checkpoint. They live beside the resumable
checkpoints as `milestone_XXXXXX.pth`, a name `checkpoint.prune_checkpoints` and `--resume` never
match, so pruning cannot remove them. The file itself is written and read by weights.py.
"""

from __future__ import annotations

from pathlib import Path

from bertstudy.base.errors import UsageError
from bertstudy.base.run_files import MILESTONE_FILE, milestone_path, numbered_files  # noqa: F401

_MANTISSAS = (1, 2, 5)  # Pythia-style 1-2-5 steps per decade


def log_spaced_steps(total_steps: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... below total_steps, and total_steps itself."""
    steps, decade = [0], 1
    while decade < total_steps:
        steps += [m * decade for m in _MANTISSAS if m * decade < total_steps]
        decade *= 10
    return sorted(set(steps + [total_steps]))


def milestone_steps(spec: str, total_steps: int) -> list[int]:
    """Parse --milestones: "none" (or ""), "log", or a comma list of steps and/or "log".

    Step 0 is always included when there are milestones: the untrained model is every probe's floor.
    Steps past total_steps are refused, so a typo does not silently drop a milestone.
    """
    spec = (spec or "").strip().lower()
    if spec in ("", "none"):
        return []
    steps = {0}
    for item in (part.strip() for part in spec.split(",")):
        if item == "log":
            steps.update(log_spaced_steps(total_steps))
        elif item.isdigit():
            step = int(item)
            if step > total_steps:
                raise UsageError(f"--milestones: step {step} is past the run's last step {total_steps}")
            steps.add(step)
        else:
            raise UsageError(f"--milestones: {item!r} is neither 'log', 'none' nor a step number")
    return sorted(steps)


def list_milestones(folder) -> list[tuple[int, Path]]:
    return numbered_files(folder, MILESTONE_FILE)
