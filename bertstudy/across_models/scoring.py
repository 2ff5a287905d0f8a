"""One checkpoint of the across-model test scored on the three tasks, at layer 0 and the last layer, with
the controls of probes.py and bootstrap intervals over the test items.

`prepare_tasks` does what no model changes, once per pass: labels, character types, the control task's
labels, and the model-free controls (the identity probes, wide and at the features' width). `score_model`
then needs one forward per task and a few probe fits per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from bertstudy.across_models import probes
from bertstudy.downstream.metrics import TAGS
from bertstudy.downstream.ner import _ALLOWED as NER_ALLOWED, _START as NER_START, LABELS, ner_result
from bertstudy.downstream.probe import _ALLOWED as SEG_ALLOWED, _END as SEG_END, _START as SEG_START
from bertstudy.downstream.probe import mean_layers, review_inputs, segmentation_result, sentence_features
from bertstudy.downstream.tasks import fold_chars, model_text

RESAMPLES = 2000  # bootstrap draws of each test set
WIDTH = 128  # the identity control's projected width: the across-model models' hidden size


@dataclass
class TokenTask:
    name: str
    train: list
    test: list
    labels: tuple  # the label names, index = class
    legal: tuple  # (allowed transitions, first labels[, last labels]) of the decoder
    result: Callable  # (test, predicted) -> a dict with sentence_counts
    draws: np.ndarray = None
    types: probes.CharTypes = None
    y_train: torch.Tensor = None
    y_test: torch.Tensor = None
    ids_train: torch.Tensor = None  # each character's row of the identity table
    ids_test: torch.Tensor = None
    control_train: torch.Tensor = None
    control_test: torch.Tensor = None
    controls: dict = field(default_factory=dict)
    identity_items: np.ndarray = None  # per test sentence counts of the wide identity probe (for paired gains)
    identity_probe: probes.MixedProbe = None  # where the features-with-identity fits start


def _labels_of(task: TokenTask, sentences) -> torch.Tensor:
    field_name = "labels" if task.name == "ner" else "tags"
    return torch.tensor([task.labels.index(x) for s in sentences for x in getattr(s, field_name)], dtype=torch.long)


def _sentence_counts(task: TokenTask, log_probs: torch.Tensor) -> np.ndarray:
    """[right, predicted, gold] per test sentence, decoded with the task's legal transitions."""
    decoded = probes.batch_viterbi(log_probs.numpy(), [len(s.chars) for s in task.test], *task.legal)
    if task.name == "ner":
        predicted = [tuple(task.labels[j] for j in row) for row in decoded]
    else:
        predicted = ["".join(task.labels[j] for j in row) for row in decoded]
    return np.asarray(task.result(task.test, predicted)["sentence_counts"], dtype=np.int64)


def _summary(per_item: np.ndarray, draws: np.ndarray) -> dict:
    score = float(probes.resampled_scores(per_item, np.arange(len(per_item))[None])[0])
    return {"score": score, "score_ci": probes.interval(probes.resampled_scores(per_item, draws))}


def _gain(with_identity: np.ndarray, identity: np.ndarray, draws: np.ndarray) -> dict:
    full = np.arange(len(identity))[None]
    gain = float(probes.resampled_scores(with_identity, full)[0] - probes.resampled_scores(identity, full)[0])
    spread = probes.resampled_scores(with_identity, draws) - probes.resampled_scores(identity, draws)
    return {"context_gain": gain, "context_gain_ci": probes.interval(spread)}


def prepare_token_task(name: str, train: list, test: list) -> TokenTask:
    task = (TokenTask(name, train, test, LABELS, (NER_ALLOWED, NER_START), ner_result) if name == "ner"
            else TokenTask(name, train, test, tuple(TAGS), (SEG_ALLOWED, SEG_START, SEG_END), segmentation_result))
    task.draws = probes.bootstrap_indices(len(test), RESAMPLES)
    task.types = probes.CharTypes(s.chars for s in train)
    task.y_train, task.y_test = _labels_of(task, train), _labels_of(task, test)
    control = probes.control_labels([s.chars for s in train + test],
                                    np.bincount(task.y_train.numpy(), minlength=len(task.labels)).astype(float))
    task.control_train = torch.tensor([control[c] for s in train for c in s.chars], dtype=torch.long)
    task.control_test = torch.tensor([control[c] for s in test for c in s.chars], dtype=torch.long)
    task.ids_train, task.ids_test = task.types.ids(s.chars for s in train), task.types.ids(s.chars for s in test)
    ids_train, ids_test = task.ids_train, task.ids_test
    classes = len(task.labels)
    wide = probes.fit_mixed_probe(None, ids_train, task.y_train, classes, len(task.types))
    task.identity_items = _sentence_counts(task, wide.log_probs(None, ids_test))
    task.identity_probe = wide
    table = probes.projection(len(task.types), WIDTH)
    narrow = probes.fit_mixed_probe(table[ids_train], None, task.y_train, classes)
    narrow_items = _sentence_counts(task, narrow.log_probs(table[ids_test], None))
    task.controls = {"identity_wide": {**_summary(task.identity_items, task.draws), "dimensions": len(task.types)},
                     "identity_projected": {**_summary(narrow_items, task.draws), "dimensions": WIDTH}}
    return task


def score_token_layer(task: TokenTask, train_x: torch.Tensor, test_x: torch.Tensor) -> dict:
    classes = len(task.labels)
    plain = probes.fit_mixed_probe(train_x, None, task.y_train, classes)
    plain_lp = plain.log_probs(test_x, None)
    items = _sentence_counts(task, plain_lp)
    control = probes.fit_mixed_probe(train_x, None, task.control_train, classes)
    both = probes.fit_mixed_probe(train_x, task.ids_train, task.y_train, classes, len(task.types), start=task.identity_probe)
    both_items = _sentence_counts(task, both.log_probs(test_x, task.ids_test))
    char_acc = probes.char_accuracy(plain_lp, task.y_test)
    control_acc = probes.char_accuracy(control.log_probs(test_x, None), task.control_test)
    return {**_summary(items, task.draws), "char_accuracy": char_acc, "control_task_char_accuracy": control_acc,
            "selectivity": char_acc - control_acc,
            "with_identity": _summary(both_items, task.draws)["score"], **_gain(both_items, task.identity_items, task.draws)}


def score_token_task(task: TokenTask, model, vocab, width: int, layers: tuple[int, ...]) -> list[dict]:
    train_x, test_x, _sizes = sentence_features(model, task.train, task.test, vocab, width, all_layers=True)
    return [{"layer": layer, **score_token_layer(task, train_x[layer], test_x[layer])} for layer in layers]


@dataclass
class SentimentTask:
    train: list
    test: list
    width: int  # characters of a review the model reads; the bag of characters reads the same ones
    draws: np.ndarray = None
    y_train: torch.Tensor = None
    y_test: torch.Tensor = None
    bag_train: torch.Tensor = None
    bag_test: torch.Tensor = None
    controls: dict = field(default_factory=dict)
    identity_items: np.ndarray = None


def _review_chars(review, width: int) -> str:
    return fold_chars(model_text(review.text))[:width]


def _bags(reviews, types: probes.CharTypes, width: int) -> torch.Tensor:
    """[reviews, types] the share of each character type in the review's first `width` characters."""
    bag = torch.zeros(len(reviews), len(types), dtype=probes.PROBE_DTYPE)
    for row, review in enumerate(reviews):
        ids = types.ids([_review_chars(review, width)])
        if len(ids):
            bag[row].index_add_(0, ids, torch.full((len(ids),), 1.0 / len(ids), dtype=probes.PROBE_DTYPE))
    return bag


def _accuracy_items(probe, dense: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return (probe.log_probs(dense, None).argmax(-1) == labels).numpy().astype(np.float64)


def prepare_sentiment(train: list, test: list, width: int) -> SentimentTask:
    task = SentimentTask(train, test, width)
    task.draws = probes.bootstrap_indices(len(test), RESAMPLES)
    task.y_train = torch.tensor([r.label for r in train], dtype=torch.long)
    task.y_test = torch.tensor([r.label for r in test], dtype=torch.long)
    types = probes.CharTypes(_review_chars(r, width) for r in train)
    task.bag_train, task.bag_test = _bags(train, types, width), _bags(test, types, width)
    wide = probes.fit_mixed_probe(task.bag_train, None, task.y_train, 2)
    task.identity_items = _accuracy_items(wide, task.bag_test, task.y_test)
    table = probes.projection(len(types), WIDTH)
    narrow = probes.fit_mixed_probe(task.bag_train @ table, None, task.y_train, 2)
    narrow_items = _accuracy_items(narrow, task.bag_test @ table, task.y_test)
    task.controls = {"identity_wide": {**_summary(task.identity_items, task.draws), "dimensions": len(types)},
                     "identity_projected": {**_summary(narrow_items, task.draws), "dimensions": WIDTH}}
    return task


def score_sentiment(task: SentimentTask, model, vocab, layers: tuple[int, ...]) -> list[dict]:
    train_x = mean_layers(model, review_inputs(task.train, vocab, task.width))
    test_x = mean_layers(model, review_inputs(task.test, vocab, task.width))
    out = []
    for layer in layers:
        plain = probes.fit_mixed_probe(train_x[layer], None, task.y_train, 2)
        items = _accuracy_items(plain, test_x[layer], task.y_test)
        both = probes.fit_mixed_probe(torch.cat([train_x[layer], task.bag_train], 1), None, task.y_train, 2)
        both_items = _accuracy_items(both, torch.cat([test_x[layer], task.bag_test], 1), task.y_test)
        out.append({"layer": layer, **_summary(items, task.draws), "with_identity": float(both_items.mean()),
                    **_gain(both_items, task.identity_items, task.draws)})
    return out
