"""The accuracy a model reaches without using context, predicted from the corpus's character
frequencies and the masking recipe: the level of the learning curve's plateau.

BERT's recipe (instances.create_masked_lm_predictions) predicts a share of the positions; of those,
MASK_SHARE show [MASK], RANDOM_SHARE a character drawn uniformly from the R = vocab_size - NUM_SPECIAL
real ids, UNCHANGED_SHARE the original. The label is the original character, whose distribution is
the training documents' character frequencies p (the expected one: documents are drawn in proportion
to their tokens and positions uniformly). With p_max the top character's share:

- "top character at [MASK], copy the visible character elsewhere" (a model cannot tell a random
  position from an unchanged one: both show a real character) is right at a [MASK] position with
  probability p_max, at a random position only when the draw hit the original (1/R: the draw is
  uniform over R ids, the original one of them), at an unchanged position always:
      overall_level = MASK_SHARE p_max + RANDOM_SHARE / R + UNCHANGED_SHARE;
- the same with the top character at the random positions too (a model told which they are):
      overall_level_top_at_random = (MASK_SHARE + RANDOM_SHARE) p_max + UNCHANGED_SHARE;
- the best any context-free model can do (one answer per visible token): p_max at [MASK]; seeing
  character v, the answer v is right with probability mass UNCHANGED_SHARE p_v + RANDOM_SHARE p_v / R,
  the top character with RANDOM_SHARE p_max / R; it takes the larger, summed over the R ids;
- a unigram model, blind to the input: the top character everywhere scores p_max at every kind of
  position (`unigram.argmax`); answering with a character drawn from p scores sum p^2 (`unigram.sampled`).

Pure functions of counts: no torch; `training_id_counts` and `training_char_counts` read the tokenized
corpus. The same counts give `unigram_log_frequencies`, the MLM bias of `--mlm-bias-init unigram`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from bertstudy.pretraining.masking import MASK_SHARE, RANDOM_SHARE, UNCHANGED_SHARE
from bertstudy.pretraining.token_cache import TokenizedCorpus
from bertstudy.pretraining.vocab import NUM_SPECIAL, Vocab

RECIPE = {"mask": MASK_SHARE, "random": RANDOM_SHARE, "unchanged": UNCHANGED_SHARE}


def shortcut_levels(char_counts: Mapping[str, int], random_ids: int, recipe: Mapping[str, float] = RECIPE) -> dict:
    """The predicted no-context accuracies (module docstring) from each predictable character's count and
    the number of ids a random replacement is drawn from. Raises ValueError on counts that cannot be."""
    counts = {char: int(n) for char, n in char_counts.items() if n}
    if any(n < 0 for n in counts.values()):
        raise ValueError("character counts must not be negative")
    if not counts:
        raise ValueError("no characters counted: nothing is ever predicted")
    if random_ids < len(counts):
        raise ValueError(f"{len(counts)} counted characters but only {random_ids} ids to draw random tokens from")
    m, r, u = recipe["mask"], recipe["random"], recipe["unchanged"]
    if min(m, r, u) < 0 or abs(m + r + u - 1.0) > 1e-9:
        raise ValueError(f"the recipe's shares must be >= 0 and sum to 1, got {dict(recipe)}")
    total = sum(counts.values())
    top_char = min(counts, key=lambda char: (-counts[char], char))  # ties: the lower code point, as vocab.txt
    p_max = counts[top_char] / total
    shares = [n / total for n in counts.values()]
    unseen = random_ids - len(counts)  # ids never in the training text: seen as a random draw only
    visible = sum(max(u * p + r * p / random_ids, r * p_max / random_ids) for p in shares)
    visible += unseen * r * p_max / random_ids
    return {
        "recipe": dict(recipe), "characters": total, "distinct_characters": len(counts), "random_ids": random_ids,
        "top_char": top_char, "top_char_share": p_max,
        "mask_level": p_max, "random_level": 1.0 / random_ids, "unchanged_level": 1.0,
        "overall_level": m * p_max + r / random_ids + u,
        "overall_level_top_at_random": (m + r) * p_max + u,
        "context_free_best": m * p_max + visible,
        "unigram": {"argmax": p_max, "sampled": sum(p * p for p in shares)},
    }


def training_id_counts(corpus: TokenizedCorpus, documents: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each token id occurs in `documents` (ids into the corpus, e.g. the training split): int64 [V]."""
    tokens = np.asarray(corpus.tokens)
    first_token = np.asarray(corpus.sentence_offsets)[np.asarray(corpus.document_offsets)]
    keep = np.zeros(len(tokens) + 1, dtype=np.int64)  # +1 at a document's start, -1 after its end
    docs = np.asarray(documents, dtype=np.int64)
    np.add.at(keep, first_token[docs], 1)
    np.add.at(keep, first_token[docs + 1], -1)
    return np.bincount(tokens[np.cumsum(keep[:-1]) > 0].astype(np.int64), minlength=vocab_size)


def training_char_counts(corpus: TokenizedCorpus, documents: np.ndarray, vocab: Vocab,
                         id_counts: np.ndarray | None = None) -> dict[str, int]:
    """How often each predictable character (a non-special id: [UNK] is never predicted) occurs in
    `documents`; `id_counts`: training_id_counts already made for them."""
    counts = training_id_counts(corpus, documents, len(vocab)) if id_counts is None else id_counts
    return {vocab.tokens[i]: int(counts[i]) for i in np.flatnonzero(counts) if i >= NUM_SPECIAL}


def corpus_shortcut(corpus: TokenizedCorpus, documents: np.ndarray, vocab: Vocab,
                    id_counts: np.ndarray | None = None) -> dict:
    """shortcut_levels of the training documents' characters, with what they were counted on."""
    levels = shortcut_levels(training_char_counts(corpus, documents, vocab, id_counts), len(vocab) - NUM_SPECIAL)
    return {**levels, "counted_on": "training documents", "documents": int(len(documents))}


def unigram_log_frequencies(id_counts: np.ndarray) -> np.ndarray:
    """log((count + 1) / (total + V)) per id of a V-token vocabulary: the characters' add-one smoothed
    unigram frequencies (`--mlm-bias-init unigram`). The special ids count 0 (they are never
    predicted), so they get the smoothed floor log(1 / (total + V)), as a character never seen does."""
    counts = np.asarray(id_counts, dtype=np.float64).copy()
    counts[:NUM_SPECIAL] = 0.0
    return np.log((counts + 1.0) / (counts.sum() + len(counts)))
