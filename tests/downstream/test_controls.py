"""The controls on toy languages whose answer is known: one where a character's identity fixes its
tag (the identity control and the window baseline both segment perfectly), one where only the
neighbours do (the window baseline still does, the identity control cannot); unseen characters,
the decoded prior, determinism, the sparse probe against the dense one, selectivity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bertstudy.downstream import controls
from bertstudy.downstream.metrics import tags_from_words
from bertstudy.downstream.probe import fit_linear_probe
from bertstudy.downstream.tasks import Review, SegSentence

torch.set_num_threads(1)

# every character belongs to one word at one position, so its identity fixes its tag
LEXICON = ["中国", "人民", "经济发展", "的", "了", "在", "社会主义"]
# the neighbour language: tags follow from the two characters before (see neighbour_sentence)
A_CHARS, B_CHARS = "甲乙丙", "丁戊己"


def sentence(words: list[str], line: int = 1) -> SegSentence:
    return SegSentence("pd-toy", line, "".join(words), tags_from_words(words))


def lexicon_sentences(n: int, seed: int, extra: list[str] = ()) -> list[SegSentence]:
    rng = np.random.default_rng(seed)
    out = [sentence([LEXICON[i] for i in rng.integers(0, len(LEXICON), rng.integers(3, 9))], i) for i in range(n)]
    return out + [sentence(["在", word, "的"], n + i) for i, word in enumerate(extra)]


def neighbour_sentence(chars: str, line: int) -> SegSentence:
    """A word ends after character i when character i-1 is one of A_CHARS (never after the first
    character; always at the last): the tag of a character is a function of the two before it."""
    ends = [i == len(chars) - 1 or (i > 0 and chars[i - 1] in A_CHARS) for i in range(len(chars))]
    starts = [True] + ends[:-1]
    tags = "".join({(True, True): "s", (True, False): "b", (False, True): "e", (False, False): "m"}[(s, e)]
                   for s, e in zip(starts, ends))
    return SegSentence("pd-toy", line, chars, tags)


def neighbour_sentences(n: int, seed: int) -> list[SegSentence]:
    rng = np.random.default_rng(seed)
    alphabet = list(A_CHARS + B_CHARS)
    return [neighbour_sentence("".join(rng.choice(alphabet, rng.integers(6, 16))), i) for i in range(n)]


def rare_chars(n: int, skip: int = 0) -> list[str]:
    """n CJK characters in none of the toy words (one-character words of the unseen/hapax tests)."""
    used = set("".join(LEXICON) + A_CHARS + B_CHARS)
    return [c for c in (chr(0x5000 + k) for k in range(skip, skip + 2 * n)) if c not in used][:n]


@pytest.mark.slow  # probes and Viterbi on two synthetic languages
def test_identity_language_both_segment_perfectly():
    train, test = lexicon_sentences(200, seed=0), lexicon_sentences(60, seed=1)
    identity = controls.identity_segmentation(train, test)
    assert identity["score"] == 1.0 and identity["kind"] == "identity_control"
    assert identity["features"] == len(set("".join(LEXICON))) + 1 and identity["unknown_share"] == 0.0
    window = controls.window_segmentation(train, test)
    assert window["score"] == 1.0 and window["kind"] == "window_logreg" and window["width"] == 2
    assert window["converged"]


def test_neighbour_language_needs_the_window():
    train, test = neighbour_sentences(300, seed=0), neighbour_sentences(100, seed=1)
    window = controls.window_segmentation(train, test)
    assert window["score"] == 1.0
    identity = controls.identity_segmentation(train, test)
    # each character is b, m, e or s about equally often: its identity says nothing about its tag
    assert identity["score"] < 0.6
    assert abs(identity["score"] - controls.majority_segmentation(train, test)["score"]) < 0.1  # the prior's level
    assert identity["score"] < window["score"] - 0.4
    assert controls.selectivity(window["score"], identity["score"]) > 0.4


def test_unseen_characters_share_the_column_hapaxes_trained():
    # characters seen once in training (all one-character words) train the unknown column, so a
    # never-seen character in the test is decoded as a word of its own, as those were
    train = lexicon_sentences(200, seed=0, extra=rare_chars(40))
    test = lexicon_sentences(30, seed=1, extra=rare_chars(20, skip=400))
    identity = controls.identity_segmentation(train, test)
    assert identity["score"] == 1.0 and 0.0 < identity["unknown_share"] < 0.2
    assert controls.window_segmentation(train, test)["score"] == 1.0


def test_known_characters_can_come_from_a_vocabulary():
    # code-point order, a vocabulary's tokens left out
    assert controls.char_index(["[CLS]", "甲", "乙", "甲"]) == {"乙": 1, "甲": 2}
    train, test = lexicon_sentences(100, seed=0), lexicon_sentences(20, seed=1)
    # a vocabulary of three one-character words: the rest share the unknown column, b, m and e mixed
    small = controls.identity_segmentation(train, test, known=["的", "了", "在", "[CLS]"])
    assert small["features"] == 4 and small["unknown_share"] > 0.5 and small["score"] < 0.9
    # 的 alone outside the vocabulary: the unknown column holds 的's tag only, nothing is lost
    without_de = [c for c in "".join(LEXICON) if c != "的"]
    assert controls.identity_segmentation(train, test, known=without_de)["score"] == 1.0


def test_window_keys_pad_the_edges_and_fold_width():
    keys = controls.window_keys("１月", 2)
    assert keys[0] == [(-2, controls.PAD), (-1, controls.PAD), (0, "1"), (1, "月"), (2, controls.PAD)]
    assert keys[1] == [(-2, controls.PAD), (-1, "1"), (0, "月"), (1, controls.PAD), (2, controls.PAD)]
    index = controls.window_index([sentence(["１月"]), sentence(["１月"])], 1)
    matrix = controls.window_matrix([sentence(["１月", "甲"])], index, 1)
    assert matrix.shape == (3, len(index)) and (matrix.sum(axis=1) == 3).all()  # one symbol per offset
    assert matrix[2, index[(0, controls.RARE)]] == 1  # 甲 was never seen: the offset's rare column


def test_majority_is_the_prior_through_the_decoder():
    two_char = [sentence(["中国", "人民", "经济", "发展"], i) for i in range(5)]
    result = controls.majority_segmentation(two_char, two_char)
    assert result["prior"] == {"b": 0.5, "m": 0.0, "e": 0.5, "s": 0.0}
    assert result["score"] == 1.0 and result["kind"] == "majority"  # b e b e ... is every pair a word
    singles = [sentence(list("我来了的"), i) for i in range(5)]
    assert controls.majority_segmentation(singles + two_char[:1], singles)["score"] == 1.0  # s dominant: all s
    assert controls.majority_segmentation(two_char, singles)["score"] == 0.0


def test_controls_are_deterministic():
    train, test = neighbour_sentences(80, seed=2), neighbour_sentences(20, seed=3)
    first = controls.segmentation_controls(train, test)
    assert set(first) == {"identity_control", "window_logreg", "majority"}
    assert first == controls.segmentation_controls(list(train), list(test))
    json.dumps(first)  # JSON-ready as it stands


def test_sparse_probe_matches_the_dense_one():
    rng = np.random.default_rng(0)
    cols = rng.integers(0, 12, 600)
    labels = torch.tensor((cols % 4 + (rng.random(600) < 0.3) * rng.integers(1, 4, 600)) % 4)
    sparse_x = torch.sparse_coo_tensor(torch.stack([torch.arange(600), torch.tensor(cols)]), torch.ones(600),
                                       (600, 14), check_invariants=True)  # two columns never used
    dense, sparse = fit_linear_probe(sparse_x.to_dense(), labels, 4), fit_linear_probe(sparse_x, labels, 4)
    assert torch.allclose(sparse.mean, dense.mean) and torch.allclose(sparse.std, dense.std)
    sparse_lp, dense_lp = sparse.log_probs(sparse_x.coalesce()), dense.log_probs(sparse_x.to_dense())
    # float32 fits (probe.PROBE_DTYPE) stop when the loss stops moving in float32: the two paths round
    # differently on the way, so they agree to ~1e-3 in log-probability, and in every prediction
    assert torch.allclose(sparse_lp, dense_lp, atol=2e-3)
    assert torch.equal(sparse_lp.argmax(-1), dense_lp.argmax(-1))


def test_selectivity_is_model_minus_control_and_none_safe():
    assert controls.selectivity(0.677, 0.768) == pytest.approx(-0.091)
    assert controls.selectivity(0.9, 0.768) == pytest.approx(0.132)
    assert controls.selectivity(None, 0.768) is None and controls.selectivity(0.7, None) is None
    assert controls.selectivity(math.nan, 0.5) is None
    assert isinstance(controls.selectivity(1, 0), float)


def test_sentiment_identity_control_sees_characters_not_order():
    good = ["这本书很好看", "质量很好推荐", "好评很好", "非常好用", "很好很满意"]
    bad = ["太差了失望", "质量很差", "差评不推荐", "非常差劲", "很差很失望"]
    train = [Review((f"p{i}",), t, 1) for i, t in enumerate(good)] + \
        [Review((f"n{i}",), t, 0) for i, t in enumerate(bad)]
    test = [Review(("t1",), "真的很好", 1), Review(("t2",), "真的很差", 0)]
    result = controls.identity_sentiment(train, test)
    assert result["score"] == 1.0 and result["kind"] == "identity_control"
    assert controls.sentiment_controls(train, test) == {"identity_control": result}
    # the label carried by order alone: the same characters, so the same prediction for both
    ordered = [Review((f"o{i}",), "甲乙" if i % 2 else "乙甲", i % 2) for i in range(20)]
    mirrored = [Review(("a",), "甲乙", 1), Review(("b",), "乙甲", 0)]
    assert controls.identity_sentiment(ordered, mirrored)["score"] == 0.5
