"""MLM masking statistics, NSP pairing, held-out split, token cache and deterministic batches."""

from __future__ import annotations

import numpy as np
import pytest

from bertstudy.corpus.corpus_io import Document
from bertstudy.pretraining.heldout_split import split_documents
from bertstudy.pretraining.instances import (IS_NEXT, NOT_NEXT, InstanceSampler, Segment, fixed_eval_instances,
                                             training_instances, truncate_seq_pair)
from bertstudy.pretraining.masking import (IGNORE_INDEX, KIND_MASK, KIND_RANDOM, KIND_UNCHANGED, NO_KIND,
                                           create_masked_lm_predictions)
from bertstudy.pretraining.token_cache import load_or_build_cache, tokenize_documents
from bertstudy.pretraining.vocab import CLS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID, build_vocab
from tests.train_helpers import CHARS, tiny_documents, write_tiny_corpus


def _sampler(documents, max_seq_len=64, wwm=False, pool=None, short_seq_prob=0.1):
    vocab = build_vocab(s for d in documents for s in d.sentences)
    corpus = tokenize_documents(documents, vocab, wwm=wwm)
    pool = np.arange(corpus.num_documents) if pool is None else pool
    return InstanceSampler(corpus, pool, len(vocab), max_seq_len, 0.15, 20, short_seq_prob, wwm), vocab


# ---------------------------------------------------------------- masking
def test_masking_rates_80_10_10_and_specials_never_touched():
    rng = np.random.default_rng(0)
    vocab_size, length = 2000, 100
    chosen = masked_as_mask = unchanged = randomised = candidates_total = 0
    kind_counts = np.zeros(3, dtype=np.int64)
    for _ in range(1500):
        ids = np.full(128, PAD_ID)
        ids[:length] = rng.integers(NUM_SPECIAL, vocab_size, size=length)
        ids[0], ids[40], ids[length - 1] = CLS_ID, SEP_ID, SEP_ID
        masked, labels, kinds = create_masked_lm_predictions(ids, length, None, rng, 0.15, 1000, vocab_size)
        picked = labels != IGNORE_INDEX
        # each predicted position's kind says what was done to it; the others have none
        assert ((kinds != NO_KIND) == picked).all()
        assert (masked[kinds == KIND_MASK] == MASK_ID).all()
        assert (masked[kinds == KIND_UNCHANGED] == ids[kinds == KIND_UNCHANGED]).all()
        assert (masked[kinds == KIND_RANDOM] >= NUM_SPECIAL).all()
        kind_counts += np.bincount(kinds[picked], minlength=3)
        assert not picked[[0, 40]].any() and not picked[length - 1:].any()  # [CLS], [SEP], [PAD] never predicted
        assert (masked[~picked] == ids[~picked]).all()  # only chosen positions change
        assert (labels[picked] == ids[picked]).all()
        candidates_total += length - 3
        chosen += picked.sum()
        masked_as_mask += (masked[picked] == MASK_ID).sum()
        same = masked[picked] == ids[picked]
        unchanged += same.sum()
        randomised += (~same & (masked[picked] != MASK_ID)).sum()
        assert (masked[picked & (masked != MASK_ID)] >= NUM_SPECIAL).all()  # random tokens are real characters
    assert chosen / candidates_total == pytest.approx(0.15, abs=0.005)
    assert masked_as_mask / chosen == pytest.approx(0.8, abs=0.015)
    assert randomised / chosen == pytest.approx(0.1, abs=0.01)
    assert unchanged / chosen == pytest.approx(0.1, abs=0.01)
    assert kind_counts / chosen == pytest.approx([0.8, 0.1, 0.1], abs=0.015)
    # a random draw equal to the original is still a random position: kinds count it there, not as unchanged
    assert kind_counts[KIND_RANDOM] >= randomised and kind_counts[KIND_UNCHANGED] <= unchanged


def test_max_predictions_caps_and_nothing_to_mask_is_fine():
    rng = np.random.default_rng(1)
    ids = np.r_[CLS_ID, np.arange(NUM_SPECIAL, NUM_SPECIAL + 200), SEP_ID]
    _, labels, _ = create_masked_lm_predictions(ids, len(ids), None, rng, 0.15, 20, 300)
    assert (labels != IGNORE_INDEX).sum() == 20
    only_specials = np.array([CLS_ID, SEP_ID, SEP_ID, PAD_ID])
    masked, labels, kinds = create_masked_lm_predictions(only_specials, 3, None, rng, 0.15, 20, 300)
    assert (labels == IGNORE_INDEX).all() and (masked == only_specials).all() and (kinds == NO_KIND).all()


def test_whole_word_masking_masks_whole_words():
    rng = np.random.default_rng(2)
    ids = np.r_[CLS_ID, np.arange(NUM_SPECIAL, NUM_SPECIAL + 60), SEP_ID]
    starts = np.ones(len(ids), dtype=bool)
    starts[2::3] = False  # words of 2-3 characters
    starts[3::3] = False
    starts[1] = True
    for _ in range(200):
        _, labels, _ = create_masked_lm_predictions(ids, len(ids), starts, rng, 0.15, 20, 100)
        picked = labels != IGNORE_INDEX
        word_id = np.cumsum(starts)
        for word in np.unique(word_id[picked]):
            members = (word_id == word) & (ids >= NUM_SPECIAL)
            assert picked[members].all(), "a word was masked only in part"


def test_jieba_word_starts_for_wwm():
    docs = [Document("a", ["我们喜欢自然语言处理"]), Document("b", ["今天天气很好"])]
    vocab = build_vocab(s for d in docs for s in d.sentences)
    corpus = tokenize_documents(docs, vocab, wwm=True)
    assert corpus.word_starts is not None and corpus.word_starts[0]
    assert 1 < corpus.word_starts[:10].sum() < 10  # some multi-character words


# ---------------------------------------------------------------- NSP pairs
def _offset(sampler, segment):
    return (segment.tokens.ctypes.data - sampler.tokens.ctypes.data) // sampler.tokens.itemsize


def _document_of(sampler, token_offset):
    sentence = np.searchsorted(sampler.sent_off, token_offset, side="right") - 1
    return int(np.searchsorted(sampler.doc_off, sentence, side="right") - 1)


def test_nsp_pairs_come_from_the_right_documents():
    sampler, _ = _sampler(tiny_documents(30), max_seq_len=256, short_seq_prob=0.0)
    rng = np.random.default_rng(3)
    labels = []
    for _ in range(600):
        a, b, label = sampler.draw_pair(rng)
        labels.append(label)
        a_lo, b_lo = _offset(sampler, a), _offset(sampler, b)
        a_hi, b_hi = a_lo + len(a.tokens), b_lo + len(b.tokens)
        assert len(a.tokens) and len(b.tokens)
        doc_a, doc_b = _document_of(sampler, a_lo), _document_of(sampler, b_lo)
        assert doc_a == _document_of(sampler, a_hi - 1) and doc_b == _document_of(sampler, b_hi - 1)
        if label == IS_NEXT:
            assert doc_a == doc_b and b_lo == a_hi  # B is exactly what follows A (nothing truncated at length 256)
        else:
            assert doc_a != doc_b
    assert np.mean(labels) == pytest.approx(0.5, abs=0.06)  # label honoured even on one-sentence documents


def test_truncate_seq_pair_trims_the_longer_segment():
    rng = np.random.default_rng(4)
    a = Segment(np.arange(30), np.ones(30, bool))
    b = Segment(np.arange(100, 105), np.ones(5, bool))
    ta, tb = truncate_seq_pair(a, b, 20, rng)
    assert len(ta.tokens) == 15 and (tb.tokens == b.tokens).all()
    assert set(ta.tokens) <= set(a.tokens) and np.all(np.diff(ta.tokens) == 1)  # a contiguous piece of A


def test_instances_are_well_formed():
    sampler, _ = _sampler(tiny_documents(20), max_seq_len=32)
    rng = np.random.default_rng(5)
    for _ in range(200):
        inst = sampler.draw_instance(rng)
        ids, types, attention = inst["input_ids"], inst["token_type_ids"], inst["attention_mask"]
        n = int(attention.sum())
        assert ids.shape == (32,) and ids[0] == CLS_ID and (ids[n:] == PAD_ID).all() and (attention[:n] == 1).all()
        labels = inst["mlm_labels"]
        original = np.where(labels != IGNORE_INDEX, labels, ids)
        seps = np.flatnonzero(original[:n] == SEP_ID)
        assert len(seps) == 2 and seps[1] == n - 1
        assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:n] == 1).all() and (types[n:] == 0).all()
        assert inst["nsp_labels"] in (IS_NEXT, NOT_NEXT)


# ---------------------------------------------------------------- split, batches, cache
def test_heldout_split_is_disjoint_seeded_and_never_sampled_for_training():
    sampler, vocab = _sampler(tiny_documents(50))
    train, heldout = split_documents(sampler.corpus, 0.1, seed=7)
    assert len(heldout) == 5 and not set(train) & set(heldout) and len(train) + len(heldout) == 50
    again = split_documents(sampler.corpus, 0.1, seed=7)
    assert (again[0] == train).all() and (split_documents(sampler.corpus, 0.1, seed=8)[1] != heldout).any()
    train_sampler = InstanceSampler(sampler.corpus, train, len(vocab), 64, 0.15, 20, 0.1, False)
    rng = np.random.default_rng(6)
    for _ in range(300):
        a, b, label = train_sampler.draw_pair(rng)
        assert _document_of(train_sampler, _offset(train_sampler, a)) in set(train)
        assert _document_of(train_sampler, _offset(train_sampler, b)) in set(train)


def test_instances_are_pure_functions_of_step_and_global_index():
    sampler, _ = _sampler(tiny_documents(20), max_seq_len=32)
    one = training_instances(sampler, 1, step=5, first=0, count=8)
    again = training_instances(sampler, 1, step=5, first=0, count=8)
    second_half = training_instances(sampler, 1, step=5, first=4, count=4)  # e.g. rank 1 of 2
    other_step = training_instances(sampler, 1, step=6, first=0, count=8)
    for a, b in zip(one, again):
        assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]
    for a, b in zip(one[4:], second_half):
        assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]
    assert any(len(a[0]) != len(b[0]) or (a[0] != b[0]).any() for a, b in zip(one, other_step))
    evals = fixed_eval_instances(sampler, 1, 10)
    assert len(evals) == 10
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(evals, fixed_eval_instances(sampler, 1, 10)))


def test_token_cache_is_built_once_and_keyed_by_corpus_and_vocab(tmp_path):
    corpus_path = write_tiny_corpus(tmp_path, 12)
    docs = tiny_documents(12)
    vocab = build_vocab(s for d in docs for s in d.sentences)
    built, folder, built_now = load_or_build_cache(docs, corpus_path, vocab, tmp_path / "cache")
    cached, folder2, built_again = load_or_build_cache(docs, corpus_path, vocab, tmp_path / "cache")
    assert built_now and not built_again and folder == folder2 and (folder / "manifest.json").exists()
    assert (np.asarray(cached.tokens) == built.tokens).all()
    assert (np.asarray(cached.document_offsets) == built.document_offsets).all()
    smaller = build_vocab(CHARS[:50])
    _, folder3, built_third = load_or_build_cache(docs, corpus_path, smaller, tmp_path / "cache")
    assert built_third and folder3 != folder
    (folder / "manifest.json").write_text("{broken", encoding="utf-8")
    _, _, rebuilt = load_or_build_cache(docs, corpus_path, vocab, tmp_path / "cache")
    assert rebuilt


def test_split_needs_two_documents():
    sampler, _ = _sampler([Document("only", ["一二三四五六"]), Document("empty", [""])])
    with pytest.raises(Exception, match="at least 2"):
        split_documents(sampler.corpus, 0.5, 0)
