"""Named entities from tag/199801.txt: the corpus's conventions on hand-made lines,
BIO round trips, entity F1 worked by hand, the legal-transition decoder, the reader on the real
files' first lines, and the probe on a toy model whose characters decide the entities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertstudy.downstream.ner import (LABELS, NerSentence, entity_f1, entity_spans, identity_ner, labels_from_spans,
                                      parse_tagged_words, probe_ner, read_entities, spans_from_labels, viterbi_bio)
from bertstudy.downstream.tasks import LeakageGuard, split_for_run
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.vocab import build_vocab
from tests.downstream_helpers import write_task_data


def _entities(line: str) -> list[tuple[str, str]]:
    words = parse_tagged_words(line)
    text = "".join(w for w, _, _ in words)
    return [(text[a:b], kind) for a, b, kind in entity_spans(words)]


def test_the_corpus_conventions_on_hand_made_lines():
    # surname + given name are one person; a lone nr is a person; other words are not entities
    assert _entities("中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr") == [("中共中央", "ORG"), ("江泽民", "PER")]
    # adjacent places stay two places; a person right after a place is a new entity
    assert _entities("中国/ns  北京/ns  兰/nr  红光/nr  摄/Vg") == [("中国", "LOC"), ("北京", "LOC"), ("兰红光", "PER")]
    # two persons separated by a word stay two
    assert _entities("邓/nr  小平/nr  和/c  李鹏/nr") == [("邓小平", "PER"), ("李鹏", "PER")]
    # a bracketed compound tagged nt is one organisation; the place inside it is not an entity of its own
    assert _entities("[中国/ns  政府/n]nt  表示/v") == [("中国政府", "ORG")]
    # a bracketed compound with another tag (a noun phrase) leaves no entity of its own, nor inside
    assert _entities("[香港/ns  特别/a  行政区/n]ns  [很/d  好/a]a") == [("香港特别行政区", "LOC")]


def test_bio_round_trip_and_ill_formed_labels():
    spans = [(0, 2, "ORG"), (4, 7, "PER"), (7, 8, "LOC")]
    labels = labels_from_spans(9, spans)
    assert labels == ("B-ORG", "I-ORG", "O", "O", "B-PER", "I-PER", "I-PER", "B-LOC", "O")
    assert spans_from_labels(labels) == spans
    # an I- that continues nothing starts an entity; an I- of another type too
    assert spans_from_labels(("I-PER", "I-PER", "I-LOC", "O")) == [(0, 2, "PER"), (2, 3, "LOC")]


def test_entity_f1_worked_by_hand():
    gold = [("B-PER", "I-PER", "O", "B-LOC"), ("B-ORG", "I-ORG")]
    # sentence 1: the person right, the place predicted as an organisation; sentence 2: the organisation
    # cut short (one character): exact match only, so wrong
    predicted = [("B-PER", "I-PER", "O", "B-ORG"), ("B-ORG", "O")]
    result = entity_f1(gold, predicted)
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["score"] == pytest.approx(1 / 3) and result["gold_entities"] == 3
    assert result["by_type"]["PER"]["score"] == 1.0 and result["by_type"]["LOC"]["recall"] == 0.0
    assert entity_f1(gold, gold)["score"] == 1.0
    with pytest.raises(ValueError):
        entity_f1(gold, gold[:1])


def test_viterbi_keeps_bio_legal():
    n = len(LABELS)
    logp = np.full((3, n), -5.0)
    logp[0, LABELS.index("I-PER")] = 0.0  # the best single label is illegal at the start
    logp[0, LABELS.index("B-PER")] = -0.5
    logp[1, LABELS.index("I-LOC")] = 0.0  # illegal after a person
    logp[1, LABELS.index("I-PER")] = -0.4
    logp[2, LABELS.index("O")] = 0.0
    assert viterbi_bio(logp) == ("B-PER", "I-PER", "O")
    assert viterbi_bio(np.zeros((0, n))) == ()


def test_read_entities_on_the_real_files_first_lines(tmp_path):
    folder = write_task_data(tmp_path)
    items = read_entities(folder)
    assert items and all(len(s.labels) == len(s.chars) for s in items)
    first = next(s for s in items if s.chars.startswith("中共中央总书记"))
    assert [(first.chars[a:b], k) for a, b, k in spans_from_labels(first.labels)] == [("中共中央", "ORG"), ("江泽民", "PER")]
    assert first.doc_id.startswith("pd-") and first.line == 2
    # the same held-out split as segmentation: items of held-out documents, unseen text, go to test
    heldout = {first.doc_id}
    split = split_for_run(items, heldout, LeakageGuard([]), None, seed=0)
    assert split.test and all(s.doc_id in heldout for s in split.test)
    assert all(s.doc_id not in heldout for s in split.train)


def _toy_sentences(rng, n: int) -> list[NerSentence]:
    """Characters decide the entities: 甲乙 is always a person, 丙 a place, the rest O."""
    out = []
    for i in range(n):
        parts, spans, at = [], [], 0
        for _ in range(rng.integers(2, 6)):
            choice = rng.integers(0, 3)
            piece, kind = (("甲乙", "PER"), ("丙", "LOC"), ("的", None))[choice]
            if kind:
                spans.append((at, at + len(piece), kind))
            parts.append(piece)
            at += len(piece)
        text = "".join(parts)
        out.append(NerSentence("pd-x", i + 1, text, labels_from_spans(len(text), spans)))
    return out


def test_probe_learns_entities_its_characters_decide():
    rng = np.random.default_rng(0)
    train, test = _toy_sentences(rng, 60), _toy_sentences(rng, 20)
    vocab = build_vocab(["甲乙丙的"], min_freq=1)
    torch.manual_seed(0)
    model = BertForPretraining(BertConfig(vocab_size=len(vocab), hidden_size=32, num_layers=1, num_heads=2,
                                          intermediate_size=64, max_position=32)).eval()
    result = probe_ner(model, train, test, vocab, width=30)
    assert result["score"] == 1.0 and result["gold_entities"] == sum(len(spans_from_labels(s.labels)) for s in test)
    assert result["sentence_counts"] == [[len(spans_from_labels(s.labels))] * 3 for s in test]
    layers = probe_ner(model, train, test, vocab, width=30, all_layers=True)
    assert [entry["layer"] for entry in layers["layers"]] == [0, 1] and layers["score"] == result["score"]
    # the identity control needs no model: here the characters decide everything, so it is perfect too
    control = identity_ner(train, test)
    assert control["score"] == 1.0 and control["kind"] == "identity_control"


def test_the_identity_control_cannot_see_context():
    """乙 is a person's second character after 甲 and a lone place elsewhere: only context tells."""
    rng = np.random.default_rng(1)

    def sentences(n):
        out = []
        for i in range(n):
            person = bool(rng.integers(0, 2))
            text, spans = ("甲乙的", [(0, 2, "PER")]) if person else ("的乙的", [(1, 2, "LOC")])
            out.append(NerSentence("pd-x", i + 1, text, labels_from_spans(3, spans)))
        return out

    assert identity_ner(sentences(80), sentences(40))["score"] < 0.8
