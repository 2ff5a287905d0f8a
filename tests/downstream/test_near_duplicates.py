"""Near-copies out of the test sets: a planted near-copy in the probe's training
items and one in the trained-on text are dropped, an exact guard's miss is caught, unrelated and short
sentences are kept, and the counts say how many went."""

from __future__ import annotations

from bertstudy.downstream.near_duplicates import MIN_CHARS, NearCopyIndex, drop_near_copies, sentences_of
from bertstudy.downstream.tasks import LeakageGuard, Review, TaskSplit, split_for_run

ORIGINAL = "这家酒店的服务非常周到，房间干净整洁，下次出差还会再来住。"
NEAR = "这家酒店的服务非常周到，房间干净整洁，下次出差还会再来住的。"  # one character more: Jaccard ~0.9
OTHER = "物流太慢了，等了整整一个星期才收到货，包装也破损了。"
SHORT = "很好！"


def test_sentences_of_folds_and_keeps_the_long_ones():
    parts = sentences_of("ＡＢＣ 好。" + ORIGINAL)
    assert all(len(s) >= MIN_CHARS for s in parts) and "ABC好。" not in parts
    assert sentences_of(SHORT) == []


def test_index_finds_a_near_copy_and_not_an_unrelated_sentence():
    index = NearCopyIndex(sentences_of(ORIGINAL))
    assert index.has_near_copy(NEAR) and index.has_near_copy(ORIGINAL)
    assert not index.has_near_copy(OTHER) and not index.has_near_copy(SHORT + SHORT)


def _review(n: int, text: str, label: int = 1) -> Review:
    return Review((f"review-pos-{n:05d}",), text, label)


def test_drop_near_copies_of_probe_training_items_and_of_trained_on_text():
    heldout = {"review-pos-00001", "review-pos-00002", "review-pos-00003", "review-pos-00004"}
    items = [_review(1, NEAR), _review(2, OTHER), _review(3, SHORT),
             _review(4, "质量不错。这款手机的屏幕显示效果很好，电池也耐用，运行速度快，推荐大家购买。"),
             _review(10, ORIGINAL)]  # a probe-training item: not held out
    # a near copy (Jaccard 0.8) of item 4's second sentence in a trained-on document
    trained_on = sentences_of("这款手机的屏幕显示效果很好，电池也很耐用，运行速度快，推荐大家购买！")
    split = split_for_run(items, heldout, LeakageGuard([]), None, seed=0)
    assert [r.doc_ids[0] for r in split.test] == sorted(heldout) and split.counts["test"] == 4
    cleaned = drop_near_copies(split, trained_on, heldout)
    assert [r.text for r in cleaned.test] == [OTHER, SHORT]
    assert cleaned.counts["near_copy_dropped"] == 2 and cleaned.counts["test"] == 2
    assert cleaned.counts["test_documents"] == 2 and cleaned.train == split.train
    # the exact guard alone keeps the near copy: this is what the index adds
    assert isinstance(split, TaskSplit) and any(r.text == NEAR for r in split.test)


def test_a_prebuilt_index_of_the_trained_on_text_drops_the_same_items():
    """The pass builds the trained-on index once for its three tasks; the split's own training
    sentences are looked up in an index of their own, with the same outcome as one index of both."""
    heldout = {"review-pos-00001", "review-pos-00002", "review-pos-00004"}
    items = [_review(1, NEAR), _review(2, OTHER),
             _review(4, "质量不错。这款手机的屏幕显示效果很好，电池也耐用，运行速度快，推荐大家购买。"),
             _review(10, ORIGINAL)]
    trained_on = sentences_of("这款手机的屏幕显示效果很好，电池也很耐用，运行速度快，推荐大家购买！")
    split = split_for_run(items, heldout, LeakageGuard([]), None, seed=0)
    from_sentences = drop_near_copies(split, trained_on, heldout)
    from_index = drop_near_copies(split, NearCopyIndex(trained_on), heldout)
    assert [r.text for r in from_index.test] == [r.text for r in from_sentences.test] == [OTHER]
    assert from_index.counts == from_sentences.counts
