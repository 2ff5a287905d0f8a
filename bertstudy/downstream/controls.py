"""Controls on the probe's own items: what a probe's score is worth beyond naming the character.

Segmentation of People's Daily is largely a matter of which character it is (的 is a word of its
own, 们 ends one), so a probe can score well on features that only say which character stands
where. The controls here are trained and tested on exactly the items of the model's probe, so
the model's score can be read as a gain over them:

- identity control: each character as a one-hot (characters seen fewer than IDENTITY_MIN_COUNT
  times in training and every unseen one share one unknown column) through the model's own probe
  (`probe.fit_linear_probe`, here on a sparse matrix) and decoder (`probe.viterbi_tags`): only the
  features differ. `selectivity` is the model's score minus this one's, in the sense of Hewitt and
  Liang's control tasks (theirs keeps the features and gives each word type a random label; this
  one keeps the task and gives the probe nothing but the character's identity).
- window baseline: a supervised multinomial logistic regression on the characters at offsets
  -2..+2 (one-hot per offset, a padding symbol past the sentence's edges), decoded the same way:
  what a small classic tagger reaches on the same training split.
- majority: the training tags' prior for every character, through the same decoder: what the
  probe learns from features that carry nothing (its bias alone). Tagging every character "s" is
  a rule, not the decoder's output, so it is not the floor of this probe.
- sentiment: a bag of characters (unigram presence, no order) through the n-gram logistic
  regression of `baselines`; sentiment's majority class is `baselines.majority_sentiment`.

Everything is deterministic (zero-initialised full-batch L-BFGS, sorted feature indexes).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import numpy as np
import torch
from scipy import optimize, sparse
from scipy.special import logsumexp

from bertstudy.downstream import baselines
from bertstudy.downstream.metrics import TAGS, segmentation_f1
from bertstudy.downstream.probe import fit_linear_probe, viterbi_tags
from bertstudy.downstream.tasks import Review, SegSentence, fold_chars, model_text

UNKNOWN = 0  # the identity control's shared column: rare training characters and unseen ones
IDENTITY_MIN_COUNT = 2  # a character seen once trains the unknown column: the best stand-in for one never seen
WINDOW_WIDTH = 2  # offsets -2..+2
WINDOW_MIN_COUNT = 2  # as baselines.NGRAM_MIN_COUNT: a (offset, character) seen once carries no weight worth fitting
WINDOW_C = baselines.NGRAM_C  # inverse L2 strength, as the sentiment n-gram baseline
WINDOW_ITERATIONS = 500
PAD, RARE = "<pad>", "<rare>"  # longer than one character, so never a character


def tag_ids(sentences: list[SegSentence]) -> np.ndarray:
    """Every character's tag as an index into TAGS, sentences concatenated."""
    return np.array([TAGS.index(t) for s in sentences for t in s.tags], dtype=np.int64)


def frequent_chars(sentences: list[SegSentence], min_count: int = IDENTITY_MIN_COUNT) -> list[str]:
    """Characters (folded as the model reads them) seen at least min_count times."""
    counts = Counter(char for s in sentences for char in fold_chars(s.chars))
    return [char for char, n in counts.items() if n >= min_count]


def char_index(known: Iterable[str]) -> dict[str, int]:
    """Column of each known single character, from 1 in code-point order; column 0 is UNKNOWN.
    `known` may be a vocabulary's tokens: entries longer than one character ([CLS]...) are left out."""
    return {char: i for i, char in enumerate(sorted({c for c in known if len(c) == 1}), start=1)}


def identity_features(sentences: list[SegSentence], index: dict[str, int]) -> torch.Tensor:
    """One row per character with a one in its column: sparse float32 [characters, len(index) + 1]."""
    cols = torch.tensor([index.get(char, UNKNOWN) for s in sentences for char in fold_chars(s.chars)], dtype=torch.long)
    indices = torch.stack([torch.arange(len(cols)), cols])
    return torch.sparse_coo_tensor(indices, torch.ones(len(cols)), (len(cols), len(index) + 1),
                                   check_invariants=True).coalesce()


def decode(log_probs: np.ndarray, sentences: list[SegSentence]) -> list[str]:
    """Viterbi tags per sentence from the per-character log-probabilities of all sentences, stacked."""
    out, at = [], 0
    for sentence in sentences:
        out.append(viterbi_tags(log_probs[at:at + len(sentence.chars)]))
        at += len(sentence.chars)
    return out


def identity_segmentation(train: list[SegSentence], test: list[SegSentence],
                          known: Iterable[str] | None = None) -> dict:
    """The character-identity control. `known`: the characters with a column of their own (a
    vocabulary, say); by default those seen at least IDENTITY_MIN_COUNT times in `train`."""
    index = char_index(frequent_chars(train) if known is None else known)
    probe = fit_linear_probe(identity_features(train, index), torch.from_numpy(tag_ids(train)), len(TAGS))
    log_probs = probe.log_probs(identity_features(test, index)).numpy()
    test_chars = [char for s in test for char in fold_chars(s.chars)]
    unknown = sum(char not in index for char in test_chars)
    return {**segmentation_f1([s.tags for s in test], decode(log_probs, test)), "kind": "identity_control",
            "features": len(index) + 1, "unknown_share": unknown / len(test_chars) if test_chars else 0.0}


def window_keys(chars: str, width: int) -> list[list[tuple[int, str]]]:
    """Per character, (offset, symbol) for offsets -width..width; PAD past either edge."""
    padded = [PAD] * width + list(fold_chars(chars)) + [PAD] * width
    return [[(k, padded[i + width + k]) for k in range(-width, width + 1)] for i in range(len(chars))]


def window_index(sentences: list[SegSentence], width: int, min_count: int = WINDOW_MIN_COUNT) -> dict:
    """Column of each (offset, symbol) seen at least min_count times, and of (offset, RARE) for each
    offset (where the rest go), in sorted order."""
    counts = Counter(key for s in sentences for keys in window_keys(s.chars, width) for key in keys)
    keys = {key for key, n in counts.items() if n >= min_count} | {(k, RARE) for k in range(-width, width + 1)}
    return {key: i for i, key in enumerate(sorted(keys))}


def window_matrix(sentences: list[SegSentence], index: dict, width: int) -> sparse.csr_matrix:
    """One row per character, one 1 per offset: sparse [characters, len(index)]."""
    cols = [index.get(key, index[(key[0], RARE)])
            for s in sentences for keys in window_keys(s.chars, width) for key in keys]
    rows = np.repeat(np.arange(len(cols) // (2 * width + 1)), 2 * width + 1)
    return sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(rows) // (2 * width + 1), len(index)))


def fit_multinomial(x: sparse.csr_matrix, y: np.ndarray, classes: int, c: float = WINDOW_C,
                    iterations: int = WINDOW_ITERATIONS) -> tuple[np.ndarray, bool]:
    """Weights [features + 1, classes] (last row the bias, not penalized) of an L2 multinomial logistic
    regression (sum of losses + ||W||^2 / (2C), as baselines.fit_logistic) by L-BFGS from zeros, and
    whether it converged."""
    design = sparse.hstack([x, np.ones((x.shape[0], 1))]).tocsr()
    rows = np.arange(len(y))

    def loss_and_grad(flat):
        w = flat.reshape(design.shape[1], classes)
        z = design @ w
        norm = logsumexp(z, axis=1)
        loss = (norm - z[rows, y]).sum() + 0.5 / c * np.sum(w[:-1] ** 2)
        p = np.exp(z - norm[:, None])
        p[rows, y] -= 1.0  # d loss / d z = softmax - one-hot
        grad = design.T @ p
        grad[:-1] += w[:-1] / c
        return loss, grad.ravel()

    result = optimize.minimize(loss_and_grad, np.zeros(design.shape[1] * classes), jac=True, method="L-BFGS-B",
                               options={"maxiter": iterations})
    return result.x.reshape(design.shape[1], classes), bool(result.success)


def window_segmentation(train: list[SegSentence], test: list[SegSentence], width: int = WINDOW_WIDTH) -> dict:
    """The supervised +-width character-window tagger, decoded with the probe's Viterbi."""
    index = window_index(train, width)
    weights, converged = fit_multinomial(window_matrix(train, index, width), tag_ids(train), len(TAGS))
    z = window_matrix(test, index, width) @ weights[:-1] + weights[-1]
    log_probs = z - logsumexp(z, axis=1, keepdims=True)
    return {**segmentation_f1([s.tags for s in test], decode(log_probs, test)), "kind": "window_logreg",
            "width": width, "features": len(index), "converged": converged}


def majority_segmentation(train: list[SegSentence], test: list[SegSentence]) -> dict:
    """The training tags' prior as every character's distribution, through the probe's decoder."""
    counts = np.bincount(tag_ids(train), minlength=len(TAGS)).astype(float)
    prior = counts / max(counts.sum(), 1.0)
    log_prior = np.log(np.maximum(prior, 1e-12))  # a tag never seen in training: as good as illegal
    predicted = [viterbi_tags(np.tile(log_prior, (len(s.chars), 1))) for s in test]
    return {**segmentation_f1([s.tags for s in test], predicted), "kind": "majority",
            "prior": {tag: float(p) for tag, p in zip(TAGS, prior)}}


def char_unigrams(text: str) -> set[str]:
    return set(model_text(text))


def identity_sentiment(train: list[Review], test: list[Review]) -> dict:
    """A bag of characters (presence, no order) through the n-gram baseline's logistic regression."""
    return {**baselines.ngram_sentiment(train, test, grams=char_unigrams), "kind": "identity_control"}


def segmentation_controls(train: list[SegSentence], test: list[SegSentence]) -> dict:
    """{name: result} under the names a downstream document's `baselines` takes them."""
    return {"identity_control": identity_segmentation(train, test), "window_logreg": window_segmentation(train, test),
            "majority": majority_segmentation(train, test)}


def sentiment_controls(train: list[Review], test: list[Review]) -> dict:
    return {"identity_control": identity_sentiment(train, test)}


def selectivity(model_score: float | None, control_score: float | None) -> float | None:
    """The model's score minus the identity control's on the same items: what its features add
    beyond naming the character. None (JSON null) when either is missing or not a finite number."""
    if model_score is None or control_score is None:
        return None
    value = float(model_score) - float(control_score)
    return value if math.isfinite(value) else None
