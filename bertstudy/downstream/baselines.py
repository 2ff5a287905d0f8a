"""Baselines on the same test sets as the probes: what a user could have without our model.

- Segmentation: jieba (its default dictionary and HMM), the segmenter most Chinese users know, on
  the text as the model sees it (full-width digits and letters folded, which jieba handles better).
- Sentiment: an L2 logistic regression on character uni- and bigram presence (numpy/scipy: sparse
  matrix and L-BFGS), trained on the same reviews as the probe; and the majority class.
- Both: the untrained (step 0) model under the same probe, computed where the pass scores step 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
from scipy import optimize, sparse

from bertstudy.downstream.metrics import accuracy, segmentation_f1, spans_from_words
from bertstudy.downstream.tasks import Review, SegSentence, fold_chars, model_text

NGRAM_MIN_COUNT = 2  # n-grams seen once in training carry no weight worth fitting
NGRAM_C = 1.0  # inverse L2 strength (sum of losses + ||w||^2 / (2C)), scikit-learn's default


def jieba_segmentation(test: list[SegSentence]) -> dict:
    import jieba  # imported here: it prints a banner and loads its dictionary

    jieba.setLogLevel(60)
    predicted = []
    for sentence in test:
        text = fold_chars(sentence.chars)  # half-width digits: jieba keeps "1998" whole but splits "１９９８"
        words = jieba.lcut(text, HMM=True)
        if "".join(words) != text:  # jieba keeps every character; a mismatch would misalign spans
            raise RuntimeError(f"jieba changed the text of line {sentence.line}")
        predicted.append(spans_from_words(words))
    return segmentation_f1([s.tags for s in test], predicted)


def char_ngrams(text: str) -> set[str]:
    clean = model_text(text)
    return set(clean) | {clean[i:i + 2] for i in range(len(clean) - 1)}


def ngram_matrix(reviews: list[Review], index: dict[str, int],
                 grams: Callable[[str], set[str]] = char_ngrams) -> sparse.csr_matrix:
    rows, cols = [], []
    for row, review in enumerate(reviews):
        for gram in grams(review.text):
            if gram in index:
                rows.append(row)
                cols.append(index[gram])
    data = np.ones(len(rows))
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(reviews), len(index)))


def fit_logistic(x: sparse.csr_matrix, y: np.ndarray, c: float = NGRAM_C) -> np.ndarray:
    """Weights (last entry the bias, not penalized) of an L2 logistic regression, by L-BFGS."""
    signs = np.where(y == 1, 1.0, -1.0)
    design = sparse.hstack([x, np.ones((x.shape[0], 1))]).tocsr()

    def loss_and_grad(w):
        margin = signs * (design @ w)
        loss = np.logaddexp(0.0, -margin).sum() + 0.5 / c * w[:-1] @ w[:-1]
        coef = -signs * np.exp(-np.logaddexp(0.0, margin))  # d loss / d z = -y * sigmoid(-y z)
        grad = design.T @ coef
        grad[:-1] += w[:-1] / c
        return loss, grad

    result = optimize.minimize(loss_and_grad, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                               options={"maxiter": 500})
    return result.x


def ngram_sentiment(train: list[Review], test: list[Review], grams: Callable[[str], set[str]] = char_ngrams) -> dict:
    """`grams`: a review's features (uni- and bigrams; the identity control passes unigrams only)."""
    counts = Counter(gram for review in train for gram in grams(review.text))
    index = {gram: i for i, gram in enumerate(sorted(g for g, n in counts.items() if n >= NGRAM_MIN_COUNT))}
    weights = fit_logistic(ngram_matrix(train, index, grams), np.array([r.label for r in train]))
    scores = ngram_matrix(test, index, grams) @ weights[:-1] + weights[-1]
    result = accuracy([r.label for r in test], [int(s > 0) for s in scores])
    return {**result, "features": len(index)}


def majority_sentiment(train: list[Review], test: list[Review]) -> dict:
    majority = int(sum(r.label for r in train) * 2 >= len(train))
    return {**accuracy([r.label for r in test], [majority] * len(test)), "class": majority}
