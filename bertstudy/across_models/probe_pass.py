"""`across_models.py probe`: every planned run's milestones scored (scoring.py), one JSON per run.

RUNS_DIR/<run>/across_probes.json holds the run's points, rewritten atomically after each checkpoint, so
a rerun continues where it stopped; RUNS_DIR/probe_controls.json holds the model-free controls and the
test sets' counts and hashes, the same for every run. A run is probed once its training has finished.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bertstudy.across_models import scoring
from bertstudy.across_models.plan import PlannedRun, planned_runs, shard
from bertstudy.across_models.test_sets import build_tasks
from bertstudy.base.atomic_io import atomic_write_json, read_json
from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import FINAL_MODEL_NAME, VOCAB_NAME
from bertstudy.recipe_search.recipes import read_results
from bertstudy.training.milestones import milestone_path

PROBES_FORMAT = "chinese-bert-correlation/across-probes-v1"
PROBES_NAME, CONTROLS_NAME = "across_probes.json", "probe_controls.json"
WIDTH = 62  # characters a window holds: the quick shape's 64 positions less [CLS] and [SEP]


def run_folders(runs_dir: Path) -> dict[tuple[str, int], Path]:
    """(recipe, seed) -> its folder, from the shards' results lines of finished runs."""
    found = {}
    for results in sorted(runs_dir.glob("runs_shard*.jsonl")):
        for record in read_results(results):
            if record.get("status") == "done":
                found[(record["name"], int(record["seed"]))] = Path(record["run_dir"]).name
    return {key: runs_dir / name for key, name in found.items()}


class ProbePass:
    def __init__(self, data_dir: Path, runs_dir: Path, width: int = WIDTH, task_data=None, msra_root=None):
        tasks, self.data = build_tasks(data_dir, task_data, msra_root)
        self.runs_dir = runs_dir
        self.ner = scoring.prepare_token_task("ner", tasks["ner"].train, tasks["ner"].test)
        self.segmentation = scoring.prepare_token_task("segmentation", tasks["segmentation"].train,
                                                       tasks["segmentation"].test)
        self.sentiment = scoring.prepare_sentiment(tasks["sentiment"].train, tasks["sentiment"].test, width)
        self.width = width
        atomic_write_json(runs_dir / CONTROLS_NAME, {
            "format": PROBES_FORMAT, "data": self.data, "resamples": scoring.RESAMPLES,
            "controls": {name: getattr(self, name).controls for name in ("ner", "segmentation", "sentiment")}})

    def score_checkpoint(self, path: Path, vocab) -> dict:
        from bertstudy.downstream.probe import load_model

        loaded = load_model(path, vocab)
        if loaded.model.config.max_position - 2 < self.width:
            raise BadInputError(path, f"reads fewer than {self.width} characters; the pass reads that many")
        layers = (0, loaded.model.config.num_layers)
        heldout = loaded.heldout or {}
        started = time.time()
        tasks = {"ner": scoring.score_token_task(self.ner, loaded.model, vocab, self.width, layers),
                 "segmentation": scoring.score_token_task(self.segmentation, loaded.model, vocab, self.width, layers),
                 "sentiment": scoring.score_sentiment(self.sentiment, loaded.model, vocab, layers)}
        return {"step": loaded.step, "heldout_mask_acc": heldout.get("mask_acc"),
                "heldout_mlm_acc": heldout.get("mlm_acc"), "probe_seconds": round(time.time() - started, 1),
                "tasks": tasks}

    def probe_point(self, run: PlannedRun, folder: Path, step: int) -> bool:
        """Score one milestone of the run unless its file has it; True when scored now."""
        from bertstudy.pretraining.vocab import load_vocab

        out = folder / PROBES_NAME
        doc = read_json(out) if out.exists() else {"format": PROBES_FORMAT, "recipe": run.recipe, "seed": run.seed,
                                                   "run_dir": folder.name, "points": []}
        if any(point["step"] == step for point in doc["points"]):
            return False
        point = self.score_checkpoint(milestone_path(folder / "checkpoints_100k", step), load_vocab(folder / VOCAB_NAME))
        doc["points"] = sorted(doc["points"] + [point], key=lambda p: p["step"])
        atomic_write_json(out, doc)
        print(f"{run.recipe} seed {run.seed} step {step}: held-out [MASK] {point['heldout_mask_acc']:.4f}, NER context "
              f"gain {point['tasks']['ner'][-1]['context_gain']:+.4f} ({point['probe_seconds']} s)", file=sys.stderr, flush=True)
        return True


# The primary endpoint's step first, then the pooled analysis' other step, then the quick seeds' extra steps:
# a pass cut short has what the analysis needs most.
STEP_ORDER = (1000, 500, 0, 300, 700)


def _ready(runs_dir: Path, shard_of: tuple[int, int]) -> tuple[list[tuple[PlannedRun, Path]], int]:
    folders = run_folders(runs_dir)
    mine = shard(planned_runs(), *shard_of)
    ready = [(run, folders[(run.recipe, run.seed)]) for run in mine if (run.recipe, run.seed) in folders
             and (folders[(run.recipe, run.seed)] / FINAL_MODEL_NAME).exists()]
    return ready, len(mine) - len(ready)


def probed_steps(folder: Path) -> set[int]:
    out = folder / PROBES_NAME
    return {point["step"] for point in read_json(out)["points"]} if out.exists() else set()


def next_point(ready: list[tuple[PlannedRun, Path]]) -> tuple[PlannedRun, Path, int] | None:
    """The first (run, folder, step) not yet probed, by STEP_ORDER, then plan order: a run that finishes late
    still has its primary step probed before the earlier runs' other steps."""
    for step in STEP_ORDER:
        for run, folder in ready:
            if step in run.probe_steps and step not in probed_steps(folder):
                return run, folder, step
    return None


def probe_all(data_dir: Path, runs_dir: Path, follow_seconds: float = 0, shard_of: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Probe every finished planned run of the shard (plan.shard); returns (checkpoints scored now, its runs not
    finished yet). follow_seconds > 0: keep looking that often for runs that finish, until all are probed."""
    ready, waiting = _ready(runs_dir, shard_of)
    if not ready and not follow_seconds:
        return 0, waiting
    probe_pass, scored = ProbePass(data_dir, runs_dir), 0
    while True:
        todo = next_point(ready)
        if todo is not None:
            scored += probe_pass.probe_point(*todo)
        elif not follow_seconds or not waiting:
            return scored, waiting
        else:
            time.sleep(follow_seconds)
        ready, waiting = _ready(runs_dir, shard_of)


def read_probes(runs_dir: Path) -> list[dict]:
    """Every planned run's probe file that exists, in plan order."""
    folders = run_folders(runs_dir)
    docs = []
    for run in planned_runs():
        folder = folders.get((run.recipe, run.seed))
        if folder is not None and (folder / PROBES_NAME).exists():
            docs.append(read_json(folder / PROBES_NAME))
    return docs
