"""The shortcut's level, predicted from character counts and the 80/10/10 recipe:
a toy corpus whose answer is worked out by hand, and a simulation of the shortcut on real masking."""

from __future__ import annotations

import numpy as np
import pytest

from bertstudy.corpus.corpus_io import Document
from bertstudy.pretraining.masking import IGNORE_INDEX, KIND_MASK, create_masked_lm_predictions
from bertstudy.pretraining.token_cache import tokenize_documents
from bertstudy.pretraining.shortcut import corpus_shortcut, shortcut_levels, training_char_counts
from bertstudy.pretraining.vocab import CLS_ID, MASK_ID, NUM_SPECIAL, SEP_ID, build_vocab


def test_levels_of_a_toy_count_by_hand():
    # a 6, b 3, c 1 in the training text; 4 ids a random token is drawn from (d never occurs)
    levels = shortcut_levels({"a": 6, "b": 3, "c": 1}, random_ids=4)
    assert levels["top_char"] == "a" and levels["top_char_share"] == pytest.approx(0.6)
    assert (levels["mask_level"], levels["random_level"], levels["unchanged_level"]) == (pytest.approx(0.6), 0.25, 1.0)
    # [MASK] 0.8 x 0.6, random 0.1 x 1/4 (the draw hit the original), unchanged 0.1 x 1
    assert levels["overall_level"] == pytest.approx(0.48 + 0.025 + 0.1)
    assert levels["overall_level_top_at_random"] == pytest.approx(0.9 * 0.6 + 0.1)
    # seeing c (0.1 x 0.1 + 0.1 x 0.1 / 4 = 0.0125) or d (0) the top character's 0.1 x 0.6 / 4 = 0.015 is the
    # better answer; seeing a or b, copying: 0.48 + 0.075 + 0.0375 + 0.015 + 0.015
    assert levels["context_free_best"] == pytest.approx(0.6225)
    assert levels["unigram"] == {"argmax": pytest.approx(0.6), "sampled": pytest.approx(0.36 + 0.09 + 0.01)}
    assert levels["characters"] == 10 and levels["distinct_characters"] == 3


def test_the_13_69_percent_shortcut_arithmetic_and_ties():
    # "，" at 4.61% of the characters and a large vocabulary: 0.8 x 4.61% + 10% = 13.69%
    rest = {chr(0x4E00 + i): 1 for i in range(9539)}  # 9,539 other characters once each
    levels = shortcut_levels({"，": 461, **rest}, random_ids=10000)
    assert levels["top_char"] == "，"
    assert levels["overall_level"] == pytest.approx(0.8 * 0.0461 + 0.1 + 0.1 / 10000)
    assert round(levels["overall_level"], 4) == 0.1369
    assert shortcut_levels({"b": 2, "a": 2}, 5)["top_char"] == "a"  # a tie goes to the lower code point
    with pytest.raises(ValueError, match="only 1 ids"):
        shortcut_levels({"a": 1, "b": 1}, 1)
    with pytest.raises(ValueError, match="nothing is ever predicted"):
        shortcut_levels({"a": 0}, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        shortcut_levels({"a": 1}, 3, {"mask": 0.8, "random": 0.1, "unchanged": 0.2})


def _toy_corpus():
    documents = [Document(id="d0", sentences=["aaab", "ab"], title="", source="test", domain="test"),
                 Document(id="d1", sentences=["cccccc"], title="", source="test", domain="test"),
                 Document(id="d2", sentences=["ab c", "a"], title="", source="test", domain="test")]
    vocab = build_vocab(s for d in documents for s in d.sentences)
    return documents, vocab, tokenize_documents(documents, vocab)


def test_training_counts_leave_the_heldout_documents_out():
    documents, vocab, corpus = _toy_corpus()
    # d1 held out: a 3 + 1 + 1 + 1 = 6, b 1 + 1 + 1 = 3, c 1 (whitespace dropped)
    assert training_char_counts(corpus, np.array([0, 2]), vocab) == {"a": 6, "b": 3, "c": 1}
    assert training_char_counts(corpus, np.array([1]), vocab) == {"c": 6}
    shortcut = corpus_shortcut(corpus, np.array([0, 2]), vocab)
    assert shortcut["top_char"] == "a" and shortcut["top_char_share"] == pytest.approx(6 / 10)
    assert shortcut["random_ids"] == len(vocab) - NUM_SPECIAL == 3 and shortcut["documents"] == 2


def test_the_predicted_level_is_what_the_shortcut_scores_on_real_masking():
    """Mask many instances of a skewed character stream with the run's masking function, answer with the
    top character at [MASK] and copy the visible token elsewhere: the score is overall_level."""
    rng = np.random.default_rng(3)
    vocab_size = NUM_SPECIAL + 20
    probs = np.arange(20, 0, -1) / np.arange(20, 0, -1).sum()  # id 5 the most frequent
    right = total = 0
    counts = np.zeros(vocab_size, dtype=np.int64)
    for _ in range(3000):
        text = rng.choice(np.arange(NUM_SPECIAL, vocab_size), size=40, p=probs)
        counts += np.bincount(text, minlength=vocab_size)
        ids = np.r_[CLS_ID, text, SEP_ID]
        masked, labels, kinds = create_masked_lm_predictions(ids, len(ids), None, rng, 0.15, 100, vocab_size)
        picked = labels != IGNORE_INDEX
        answer = np.where(kinds == KIND_MASK, NUM_SPECIAL, masked)
        right += int((answer[picked] == labels[picked]).sum())
        total += int(picked.sum())
    assert (masked[kinds == KIND_MASK] == MASK_ID).all()
    levels = shortcut_levels({str(i): int(n) for i, n in enumerate(counts) if n}, vocab_size - NUM_SPECIAL)
    assert right / total == pytest.approx(levels["overall_level"], abs=0.01)
    assert levels["context_free_best"] >= levels["overall_level"]
