"""BERT's masked-LM masking: which positions of an instance are predicted, and what each one shows the
model under the 80/10/10 recipe ([MASK], a random real token, or the token unchanged); with whole-word
masking the characters of one jieba word are chosen together.

Masking is dynamic: the instance sampler masks every instance when it is drawn, from the instance's own
random stream, so the same text gets a fresh mask every time it is drawn.
"""

from __future__ import annotations

import numpy as np

from bertstudy.pretraining.vocab import MASK_ID, NUM_SPECIAL

IGNORE_INDEX = -100  # mlm label of a position that is not predicted (torch cross_entropy's default)
# What BERT's 80/10/10 recipe did to a predicted position (its "kind"): [MASK] put in its place, a random
# real token put in its place, or left unchanged. NO_KIND marks the positions that are not predicted.
# The model reports accuracy per kind in this order (model.MLM_KINDS).
KIND_MASK, KIND_RANDOM, KIND_UNCHANGED, NO_KIND = 0, 1, 2, -1
MASK_SHARE, RANDOM_SHARE, UNCHANGED_SHARE = 0.8, 0.1, 0.1  # of the predicted positions (BERT's recipe)


def create_masked_lm_predictions(ids: np.ndarray, length: int, word_starts: np.ndarray | None, rng, mask_rate: float,
                                 max_predictions: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BERT's masking: pick mask_rate of the non-special positions (whole words together when word_starts
    is given); of those, 80% become [MASK], 10% a random real token, 10% stay. Returns (input, labels,
    kinds): kinds says which of the three each predicted position got (KIND_*), NO_KIND elsewhere."""
    candidates = np.flatnonzero(ids[:length] >= NUM_SPECIAL)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    kinds = np.full(len(ids), NO_KIND, dtype=np.int64)
    masked = ids.copy()
    if len(candidates) == 0:
        return masked, labels, kinds
    num_to_predict = min(max_predictions, max(1, int(round(len(candidates) * mask_rate))))
    if word_starts is None:
        chosen = np.sort(candidates[rng.permutation(len(candidates))[:num_to_predict]])  # a uniform subset
    else:
        # a candidate continues the previous group only if it is not a word start and directly follows it
        new_group = word_starts[candidates].copy()
        new_group[0] = True
        new_group[1:] |= np.diff(candidates) != 1
        group_of = np.cumsum(new_group) - 1
        bounds = np.flatnonzero(np.r_[new_group, True])
        picked: list[np.ndarray] = []
        total = 0
        for g in rng.permutation(len(bounds) - 1):
            size = bounds[g + 1] - bounds[g]
            if total + size > num_to_predict:
                continue  # as BERT: skip a word that would overshoot, try the next one
            picked.append(candidates[group_of == g])
            total += size
            if total >= num_to_predict:
                break
        chosen = np.sort(np.concatenate(picked)) if picked else np.sort(rng.choice(candidates, 1))
    labels[chosen] = ids[chosen]
    roll = rng.random(len(chosen))
    mask_positions = chosen[roll < MASK_SHARE]
    random_positions = chosen[roll >= 1.0 - RANDOM_SHARE]  # == 0.9 exactly in floats: the draws of a literal 0.9
    masked[mask_positions] = MASK_ID
    masked[random_positions] = rng.integers(NUM_SPECIAL, vocab_size, size=len(random_positions))
    kinds[chosen] = KIND_UNCHANGED
    kinds[mask_positions] = KIND_MASK
    kinds[random_positions] = KIND_RANDOM  # a random draw may equal the original token: still this kind
    return masked, labels, kinds
