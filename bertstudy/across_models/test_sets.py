"""The three probe tasks of the across-model test, built from the split that `prepare` wrote, the
pretraining corpus and the MSRA files (docs/ACROSS_MODELS_PLAN.md, "The tasks and test sets").

Test items are text pretraining never saw: the segmentation lines of the test articles and the test
reviews (both left out of the pretraining corpus), less any whose text still occurs in a pretraining
document (tasks.LeakageGuard), and MSRA's test sentences less those that share OVERLAP_CHARS characters
with a pretraining document. Probe-training items are seeded samples of the rest. Every run is probed on
the same items, so the figures compare models, not test sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import BadInputError
from bertstudy.base.hashing import file_sha256
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.downstream import msra
from bertstudy.downstream.tasks import LeakageGuard, read_reviews, read_segmentation

SAMPLE_SEED = 0  # the probe-training samples
NER_TRAIN, SEG_TRAIN, SENTIMENT_TRAIN = 3000, 2000, 3000  # probe-training items per task


@dataclass
class TaskData:
    train: list
    test: list
    counts: dict = field(default_factory=dict)


def sample(items: list, size: int, salt: int) -> list:
    """A seeded sample of `size` items in their original order (all of them when there are fewer)."""
    if len(items) <= size:
        return list(items)
    keep = np.sort(np.random.default_rng([SAMPLE_SEED, salt]).choice(len(items), size=size, replace=False))
    return [items[i] for i in keep]


def _unseen(items: list, guard: LeakageGuard, text) -> tuple[list, int]:
    kept = [item for item in items if not guard.seen(text(item))]
    return kept, len(items) - len(kept)


def read_split(data_dir: Path) -> dict:
    path = data_dir / "split.json"
    if not path.is_file():
        raise BadInputError(path, "no such split file (run `across_models.py prepare` first)")
    split = read_json(path)
    if not isinstance(split, dict) or "segmentation_test_articles" not in split:
        raise BadInputError(path, "not a split file of across_models.py prepare")
    return split


def build_tasks(data_dir: Path, task_data=None, msra_root: Path | None = None) -> tuple[dict[str, TaskData], dict]:
    """{"ner", "segmentation", "sentiment"} -> TaskData, and what the results record about the data."""
    split = read_split(data_dir)
    documents = load_documents(data_dir / "corpus.jsonl")
    guard = LeakageGuard(documents)
    test_articles, test_reviews = set(split["segmentation_test_articles"]), set(split["test_reviews"])

    lines = read_segmentation(task_data)
    seg_test, seg_seen = _unseen([s for s in lines if s.doc_id in test_articles], guard, lambda s: s.chars)
    seg_train = sample([s for s in lines if s.doc_id not in test_articles], SEG_TRAIN, 1)
    reviews = read_reviews(task_data)
    rev_test, rev_seen = _unseen([r for r in reviews if r.doc_ids[0] in test_reviews], guard, lambda r: r.text)
    rev_train = sample([r for r in reviews if r.doc_ids[0] not in test_reviews], SENTIMENT_TRAIN, 2)

    index = msra.SharedStringIndex("".join(doc.sentences) for doc in documents)
    ner_test, ner_dropped = msra.drop_shared(msra.read_msra("test", msra_root), index)
    ner_train = sample(msra.read_msra("train", msra_root), NER_TRAIN, 3)
    root = msra_root or msra.package_dir()
    tasks = {
        "ner": TaskData(ner_train, ner_test, {"train": len(ner_train), "test": len(ner_test),
                                              "test_dropped_shared_string": ner_dropped}),
        "segmentation": TaskData(seg_train, seg_test, {"train": len(seg_train), "test": len(seg_test),
                                                       "test_dropped_seen": seg_seen}),
        "sentiment": TaskData(rev_train, rev_test, {"train": len(rev_train), "test": len(rev_test),
                                                    "test_dropped_seen": rev_seen}),
    }
    data = {"split_key": split.get("split_key"), "corpus_sha256": split.get("corpus_sha256"),
            "msra": {"package": f"{msra.PACKAGE}=={msra.VERSION}", "overlap_chars": msra.OVERLAP_CHARS,
                     **{f"{name}_sha256": file_sha256(msra.msra_path(name, root)) for name in msra.FILES}},
            "counts": {name: task.counts for name, task in tasks.items()}}
    return tasks, data
