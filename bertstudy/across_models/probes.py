"""The probes and controls of the across-model test, for one layer's features (docs/ACROSS_MODELS_PLAN.md).

Token tasks (NER, segmentation) fit a softmax regression per character, from the layer's vector, from the
character's identity (a one-hot, held as a table of one logit row per character type, which is the same
model), or from both at once; the same penalty and deterministic L-BFGS as downstream/probe.py. Sentiment
fits a logistic regression on a review's mean vector, its bag of characters, or both.

Controls of the model's own size: `projection` maps each character type to a fixed random vector of the
layer's width (the identity at that width); `control_labels` gives each character type a fixed random
label drawn from the task's label frequencies (Hewitt and Liang's control task); the context gain is the
score of features-with-identity minus identity alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertstudy.downstream.probe import L2, PROBE_DTYPE, PROBE_ITERATIONS

PROJECTION_SEED = 7  # the random projection of the identity control: one matrix per vocabulary and width
CONTROL_KEY = "control-task-v1"  # the control task's labels: a fixed function of the character


@dataclass
class MixedProbe:
    """log p(label | x, char) = log_softmax(std(x) @ W.T + table[char] + bias)."""
    mean: torch.Tensor | None
    std: torch.Tensor | None
    weight: torch.Tensor | None
    table: torch.Tensor | None
    bias: torch.Tensor

    def log_probs(self, dense: torch.Tensor | None, ids: torch.Tensor | None) -> torch.Tensor:
        logits = self.bias.expand(len(dense if dense is not None else ids), -1)
        if self.weight is not None:
            logits = logits + ((dense.to(PROBE_DTYPE) - self.mean) / self.std) @ self.weight.T
        if self.table is not None:
            logits = logits + self.table[ids]
        return F.log_softmax(logits, dim=-1)


def fit_mixed_probe(dense: torch.Tensor | None, ids: torch.Tensor | None, labels: torch.Tensor, classes: int,
                    types: int = 0, l2: float = L2, iterations: int = PROBE_ITERATIONS,
                    start: MixedProbe | None = None) -> MixedProbe:
    """Fit on dense features, character ids (`types` rows), or both; neither part is sampled or shuffled.
    `start`: an identity-only probe whose table and bias the fit starts from (zero feature weights), so a
    fit with features begins where identity alone ended and can only lower the training loss from there."""
    params, mean, std, x = [], None, None, None
    weight = table = None
    if dense is not None:
        x = dense.to(PROBE_DTYPE)
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - mean) / std
        weight = torch.zeros(classes, x.shape[1], dtype=PROBE_DTYPE, requires_grad=True)
        params.append(weight)
    if ids is not None:
        table = torch.zeros(types, classes, dtype=PROBE_DTYPE)
        if start is not None:
            table = start.table.clone()
        table.requires_grad_(True)
        params.append(table)
    bias = (start.bias.clone() if start is not None else torch.zeros(classes, dtype=PROBE_DTYPE)).requires_grad_(True)
    optimizer = torch.optim.LBFGS(params + [bias], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)
    size = sum(p.numel() for p in params) or 1

    def closure():
        optimizer.zero_grad()
        logits = bias.expand(len(labels), -1)
        if weight is not None:
            logits = logits + x @ weight.T
        if table is not None:
            logits = logits + table[ids]
        loss = F.cross_entropy(logits, labels) + l2 * sum(p.pow(2).sum() for p in params) / size
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    detach = (lambda t: None if t is None else t.detach())
    return MixedProbe(mean, std, detach(weight), detach(table), bias.detach())


class CharTypes:
    """Character -> row of the identity table; characters unseen in probe training share row 0."""

    def __init__(self, train_texts):
        chars = sorted({c for text in train_texts for c in text})
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.index) + 1

    def ids(self, texts) -> torch.Tensor:
        return torch.tensor([self.index.get(c, 0) for text in texts for c in text], dtype=torch.long)


def projection(types: int, width: int, seed: int = PROJECTION_SEED) -> torch.Tensor:
    """[types, width] fixed Gaussian rows: the identity control at the features' width."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + width)
    return torch.randn(types, width, generator=generator, dtype=PROBE_DTYPE)


def control_labels(texts, label_counts: np.ndarray) -> dict[str, int]:
    """Every character of `texts` -> a label drawn from the task's label frequencies, fixed by the character
    alone (sha256 of a key and the character), so the same type always gets the same label."""
    cumulative = np.cumsum(label_counts / label_counts.sum())
    out = {}
    for char in sorted({c for text in texts for c in text}):
        u = int.from_bytes(hashlib.sha256(f"{CONTROL_KEY}:{char}".encode("utf-8")).digest()[:8], "big") / 2 ** 64
        out[char] = int(min(np.searchsorted(cumulative, u, side="right"), len(cumulative) - 1))
    return out


def char_accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((log_probs.argmax(-1) == labels).float().mean())


def bootstrap_indices(items: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, items] test-item indices drawn with replacement; the same draws for every score of a
    test set make the intervals of a difference paired."""
    return np.random.default_rng([seed, items]).integers(0, items, size=(resamples, items))


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from [..., 3] summed (right, predicted, gold) counts."""
    right, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = predicted + gold
    return np.where(denominator > 0, 2 * right / np.maximum(denominator, 1), 0.0)


def resampled_scores(per_item: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The score of every resample: micro F1 for [items, 3] counts, the mean for [items] 0/1 outcomes."""
    if per_item.ndim == 2:
        return f1_from_counts(per_item[draws].sum(axis=1))
    return per_item[draws].mean(axis=1)


def interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = (1 - level) / 2
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))]


def batch_viterbi(log_probs: np.ndarray, lengths, allowed: np.ndarray, start: np.ndarray,
                  end: np.ndarray | None = None) -> list[np.ndarray]:
    """The most likely legal label sequence of every sentence at once: log_probs [tokens, K] holds the
    sentences one after the other, `lengths` their sizes; allowed [from, to], start and end [K] the legal
    transitions, first and last labels. The same argmax ties as the one-sentence decoders in
    downstream/probe.py and ner.py (the first best predecessor), so it returns what they return."""
    lengths = np.asarray(lengths, dtype=np.int64)
    count, longest, k = len(lengths), int(lengths.max(initial=0)), log_probs.shape[1]
    if longest == 0:
        return [np.zeros(0, dtype=np.int64) for _ in lengths]
    neg = -1e30
    padded = np.zeros((count, longest, k))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    for row, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        padded[row, :b - a] = log_probs[a:b]
    trans = np.where(allowed, 0.0, neg)
    score = np.where(start, padded[:, 0], neg)
    back = np.zeros((count, longest, k), dtype=np.int64)
    for t in range(1, longest):
        candidates = score[:, :, None] + trans[None]
        back[:, t] = candidates.argmax(1)
        score = np.where((lengths > t)[:, None], candidates.max(1) + padded[:, t], score)
    if end is not None:
        score = np.where(end, score, neg)
    labels = np.zeros((count, longest), dtype=np.int64)
    current = score.argmax(1)
    rows = np.arange(count)
    for t in range(longest - 1, -1, -1):
        if t < longest - 1:
            inside = t < lengths - 1
            current = np.where(inside, back[rows, t + 1, current], current)
        current = np.where(t == lengths - 1, score.argmax(1), current)
        labels[:, t] = current
    return [labels[row, :length] for row, length in enumerate(lengths)]
