"""Scores: SIGHAN word-segmentation F1 over b/m/e/s tag strings, and accuracy.

SIGHAN scoring counts a predicted word as correct when both of its boundaries match a gold word,
i.e. the two segmentations share that (start, end) span. Precision, recall and F1 are summed over
the whole test set (micro), as the SIGHAN bakeoff's score script does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

TAGS = "bmes"  # begin, middle, end of a multi-character word; single-character word


def spans_from_tags(tags: str) -> list[tuple[int, int]]:
    """Word spans [start, end) of a b/m/e/s string. A word starts at b or s, or after e or s, so an
    ill-formed sequence (b b, m at the start) still splits the text into words instead of failing."""
    spans, start = [], 0
    for i, tag in enumerate(tags):
        if i > start and (tag in "bs" or tags[i - 1] in "es"):
            spans.append((start, i))
            start = i
    if tags:
        spans.append((start, len(tags)))
    return spans


def spans_from_words(words: Sequence[str]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word)
    return spans


def tags_from_words(words: Sequence[str]) -> str:
    return "".join("s" if len(w) == 1 else "b" + "m" * (len(w) - 2) + "e" for w in words if w)


@dataclass
class SegCounts:
    gold: int = 0  # gold words
    predicted: int = 0  # predicted words
    correct: int = 0  # predicted words with both boundaries right

    def add(self, gold_spans: Iterable[tuple[int, int]], predicted_spans: Iterable[tuple[int, int]]) -> None:
        gold, predicted = set(gold_spans), set(predicted_spans)
        self.gold += len(gold)
        self.predicted += len(predicted)
        self.correct += len(gold & predicted)

    def scores(self) -> dict:
        precision = self.correct / self.predicted if self.predicted else 0.0
        recall = self.correct / self.gold if self.gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"score": f1, "precision": precision, "recall": recall, "gold_words": self.gold}


def segmentation_f1(gold_tags: Sequence[str], predicted: Sequence[str | list[tuple[int, int]]]) -> dict:
    """Micro SIGHAN P/R/F1; predicted items are tag strings or span lists, one per gold sentence."""
    if len(gold_tags) != len(predicted):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(predicted)} predictions")
    counts = SegCounts()
    for gold, pred in zip(gold_tags, predicted):
        pred_spans = spans_from_tags(pred) if isinstance(pred, str) else pred
        counts.add(spans_from_tags(gold), pred_spans)
    return counts.scores()


def accuracy(labels: Sequence[int], predicted: Sequence[int]) -> dict:
    if len(labels) != len(predicted) or not labels:
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions")
    correct = sum(int(a == b) for a, b in zip(labels, predicted))
    return {"score": correct / len(labels), "correct": correct, "n": len(labels)}
