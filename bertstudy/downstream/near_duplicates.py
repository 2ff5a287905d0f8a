"""Near-copies out of the probes' test sets.

The leakage guard (tasks.LeakageGuard) drops a test item whose sentence occurs verbatim in a
trained-on document; a review that differs by a word or a punctuation mark slips through it (2-5 of
the 321 test reviews had near-identical copies, character 3-gram Jaccard 0.79-0.93, in probe-training
or pretraining text). Here a test item is also dropped when any of its sentences of at least
MIN_CHARS characters has a near copy, by the Jaccard of character 3-grams >= THRESHOLD, among the
sentences of the documents the model trained on and of the probe's own training items. Shorter
sentences ("很好！") recur everywhere by nature and are left to the exact guard.

MinHash LSH (datasketch, as verify_dataset.py's near-duplicate rate) proposes candidates; each is
confirmed with the exact Jaccard of the two shingle sets, so a false positive of LSH never drops an
item (LSH can miss a few true pairs, which the exact guard partly covers).
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Iterable, Sequence

from bertstudy.corpus.dataset_report import char_shingles, jaccard
from bertstudy.corpus.text_clean import normalize_width, split_sentences
from bertstudy.downstream.tasks import item_doc_ids, item_text

THRESHOLD = 0.7  # below the 0.79 of the closest near-copy pair found (above); well above unrelated sentences (< 0.2)
SHINGLE = 3  # character 3-grams, as verify_dataset.py's near-duplicate rate
MIN_CHARS = 8  # shorter sentences are formulae and greetings that recur by nature
NUM_PERM = 128
LSH_MARGIN = 0.1  # LSH at a lower threshold than the exact check, so few true pairs are missed
BATCH = 2000  # MinHash.bulk shares one permutation table per batch


def sentences_of(text: str) -> list[str]:
    """The text's sentences as the corpus cleans them (full width folded, spaces gone), MIN_CHARS or longer."""
    parts = ("".join(s.split()) for s in split_sentences(normalize_width(text)))
    return [s for s in parts if len(s) >= MIN_CHARS]


class NearCopyIndex:
    """Sentences to look near copies up in; `has_near_copy(text)` for a whole test item."""

    def __init__(self, sentences: Iterable[str], threshold: float = THRESHOLD, seed: int = 1):
        from datasketch import MinHash, MinHashLSH  # imported here: only the probe pass needs it

        self._minhash, self.threshold, self.seed = MinHash, threshold, seed
        self.sentences = sorted({s for s in sentences if len(s) >= MIN_CHARS})
        self.lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_MARGIN), num_perm=NUM_PERM)
        for start in range(0, len(self.sentences), BATCH):
            chunk = self.sentences[start:start + BATCH]
            for offset, minhash in enumerate(self._hashes(chunk)):
                self.lsh.insert(start + offset, minhash)

    def _hashes(self, sentences: Sequence[str]) -> list:
        encoded = [[g.encode("utf-8") for g in char_shingles(s, SHINGLE)] for s in sentences]
        # crc32 (C, 32-bit) rather than datasketch's Python sha1: ~3x faster, as in dataset_report
        return self._minhash.bulk(encoded, num_perm=NUM_PERM, seed=self.seed, hashfunc=zlib.crc32)

    def near_copy_of(self, sentence: str) -> str | None:
        """An indexed sentence whose 3-gram Jaccard with `sentence` is >= the threshold, or None."""
        shingles = char_shingles(sentence, SHINGLE)
        for key in sorted(self.lsh.query(self._hashes([sentence])[0])):
            other = self.sentences[key]
            if jaccard(shingles, char_shingles(other, SHINGLE)) >= self.threshold:
                return other
        return None

    def has_near_copy(self, text: str) -> bool:
        return any(self.near_copy_of(s) is not None for s in sentences_of(text))


def drop_near_copies(split, trained_on: "NearCopyIndex | Iterable[str]", heldout_ids: Iterable[str]):
    """The split (tasks.TaskSplit) without the test items that have a near copy among the trained-on
    sentences and the sentences of the split's own training items; `counts` gains
    `near_copy_dropped`, and its `test` and `test_documents` are recounted.

    `trained_on` may be an index already built (what the probe pass does: one index of the trained-on
    text for its three tasks, ~1 min each to build). The split's training sentences get an index of their
    own; an item is dropped when either index has a near copy, which is what one index of both finds,
    since LSH's bands and the exact check are the same in each."""
    if not isinstance(trained_on, NearCopyIndex):
        trained_on = NearCopyIndex(trained_on)
    own = NearCopyIndex(s for item in split.train for s in sentences_of(item_text(item)))
    kept = [item for item in split.test
            if not (trained_on.has_near_copy(item_text(item)) or own.has_near_copy(item_text(item)))]
    heldout = set(heldout_ids)
    counts = {**split.counts, "test": len(kept), "near_copy_dropped": len(split.test) - len(kept),
              "test_documents": len({d for item in kept for d in item_doc_ids(item) if d in heldout})}
    return replace(split, test=kept, counts=counts)
