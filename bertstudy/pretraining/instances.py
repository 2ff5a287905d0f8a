"""MLM + NSP training instances, built the way google-research/bert's create_pretraining_data.py does,
but drawn on the fly from a tokenized corpus (bertstudy/pretraining/token_cache.py).

`InstanceSampler` draws a document in proportion to its tokens, builds an (A, B, nsp_label) pair from it
and masks it (bertstudy/pretraining/masking.py) into [CLS] A [SEP] B [SEP]. Why on the fly: masking is
dynamic (a fresh mask every time an instance is drawn, as RoBERTa showed helps), and every training
instance is a pure function of (seed, step, global index in the step's batch), drawn from that key's
random stream (bertstudy/pretraining/random_streams.py). So a resumed run draws exactly the batches an
uninterrupted run would, DDP ranks take disjoint slices of the same global batch (rank r takes indices
r*P .. r*P+P-1 of P per rank), and neither the world size nor the micro-batch split changes which
instances a step trains on. bertstudy/pretraining/packing.py lays the instances into rows;
bertstudy/pretraining/loader.py builds steps ahead.

NSP label convention (BERT's and transformers' `next_sentence_label`):
    nsp_label = 0  ->  "IsNext": segment B is the true continuation of A in the same document
    nsp_label = 1  ->  "NotNext": segment B is a segment of another, random document
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertstudy.base.errors import StudyError
from bertstudy.pretraining.masking import IGNORE_INDEX, NO_KIND, create_masked_lm_predictions
from bertstudy.pretraining.random_streams import EVAL_STREAM, TRAIN_STREAM, KeyedRng, instance_rng
from bertstudy.pretraining.token_cache import TokenizedCorpus
from bertstudy.pretraining.vocab import CLS_ID, PAD_ID, SEP_ID

IS_NEXT, NOT_NEXT = 0, 1  # see the module docstring


# ---------------------------------------------------------------- instances (BERT's functions)
@dataclass
class Segment:
    tokens: np.ndarray
    word_starts: np.ndarray


def truncate_seq_pair(a: Segment, b: Segment, max_num_tokens: int, rng: np.random.Generator) -> tuple[Segment, Segment]:
    """Trim the longer segment one token at a time, from the front or the back at random (as BERT does,
    so the model does not learn that segments always end at sentence boundaries)."""
    bounds = [[0, len(a.tokens)], [0, len(b.tokens)]]
    excess = bounds[0][1] + bounds[1][1] - max_num_tokens
    if excess > 0:
        from_front = rng.random(excess) < 0.5
        for coin in from_front:
            longer = bounds[0] if bounds[0][1] - bounds[0][0] > bounds[1][1] - bounds[1][0] else bounds[1]
            if coin:
                longer[0] += 1
            else:
                longer[1] -= 1
    return (Segment(a.tokens[bounds[0][0]:bounds[0][1]], a.word_starts[bounds[0][0]:bounds[0][1]]),
            Segment(b.tokens[bounds[1][0]:bounds[1][1]], b.word_starts[bounds[1][0]:bounds[1][1]]))


class InstanceSampler:
    """Draws (A, B, nsp_label) pairs and masks them; everything seeded by an explicit numpy Generator."""

    def __init__(self, corpus: TokenizedCorpus, doc_pool: np.ndarray, vocab_size: int, max_seq_len: int,
                 mask_rate: float, max_predictions: int, short_seq_prob: float, wwm: bool):
        if max_seq_len < 5:
            raise StudyError(f"max_seq_len must be >= 5 ([CLS] A [SEP] B [SEP]), got {max_seq_len}", exit_code=2)
        if wwm and corpus.word_starts is None:
            raise StudyError("whole-word masking needs a corpus tokenized with wwm=True")
        self.corpus = corpus
        self.tokens = np.asarray(corpus.tokens)
        self.sent_off = np.asarray(corpus.sentence_offsets)
        self.doc_off = np.asarray(corpus.document_offsets)
        self.word_starts = np.asarray(corpus.word_starts) if wwm else np.ones(len(self.tokens), dtype=bool)
        self.pool = np.asarray(doc_pool, dtype=np.int64)
        counts = corpus.document_token_counts()
        # NotNext draws B from another document of the same split; a split of one document borrows
        # B from any other document (B's tokens are never MLM-scored against a trained-on A).
        self.other_pool = self.pool if len(self.pool) >= 2 else np.flatnonzero(counts > 0)
        self.pool_cdf = np.cumsum(counts[self.pool])  # documents drawn in proportion to their tokens
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.mask_rate = mask_rate
        self.max_predictions = max_predictions
        self.short_seq_prob = short_seq_prob
        self.wwm = wwm

    def _sentence(self, s: int) -> Segment:
        lo, hi = self.sent_off[s], self.sent_off[s + 1]
        return Segment(self.tokens[lo:hi], self.word_starts[lo:hi])

    def _segment_from(self, doc: int, first: int, target_len: int) -> list[int]:
        """Sentence indices from `first` on, until target_len tokens or the document ends."""
        end = self.doc_off[doc + 1]
        chunk, length, s = [], 0, first
        while s < end and length < target_len:
            chunk.append(s)
            length += self.sent_off[s + 1] - self.sent_off[s]
            s += 1
        return chunk

    def _join(self, sentences: list[int]) -> Segment:
        lo, hi = self.sent_off[sentences[0]], self.sent_off[sentences[-1] + 1]
        return Segment(self.tokens[lo:hi], self.word_starts[lo:hi])

    def _other_document(self, doc: int, rng) -> int:
        n = len(self.other_pool)
        other = self.other_pool[rng.integers(n - 1)]
        return self.other_pool[n - 1] if other == doc else other

    def create_instance_from_document(self, doc: int, first_sentence: int, rng) -> tuple[Segment, Segment, int]:
        """BERT's create_instances_from_document for one starting sentence: fill a chunk of sentences up
        to the target length, split it at a random sentence boundary into A and B, and half the time
        replace B by a segment of another document.

        Unlike BERT, the label is drawn first and then honoured: a one-sentence chunk takes the next
        sentence along, and a one-sentence document is split inside its sentence. BERT forces NotNext
        there, which on a corpus of many short documents skews NSP towards NotNext.
        """
        max_num_tokens = self.max_seq_len - 3
        target = max_num_tokens
        if rng.random() < self.short_seq_prob:
            target = int(rng.integers(2, max_num_tokens + 1))
        label = NOT_NEXT if rng.random() < 0.5 else IS_NEXT
        chunk = self._segment_from(doc, first_sentence, target)
        if label == IS_NEXT and len(chunk) == 1 and chunk[0] + 1 < self.doc_off[doc + 1]:
            chunk.append(chunk[0] + 1)
        if len(chunk) >= 2:
            a_end = int(rng.integers(1, len(chunk)))
            segment_a, rest = self._join(chunk[:a_end]), chunk[a_end:]
        else:
            segment_a, rest = self._join(chunk), []
        if label == IS_NEXT and not rest:
            if len(segment_a.tokens) >= 2:  # a one-sentence document: B is the rest of its sentence
                cut = int(rng.integers(1, len(segment_a.tokens)))
                whole = segment_a
                segment_a = Segment(whole.tokens[:cut], whole.word_starts[:cut])
                segment_b = Segment(whole.tokens[cut:], whole.word_starts[cut:])
            else:
                label = NOT_NEXT
        elif label == IS_NEXT:
            segment_b = self._join(rest)
        if label == NOT_NEXT:
            other = self._other_document(doc, rng)
            start = int(rng.integers(self.doc_off[other], self.doc_off[other + 1]))
            target_b = max(1, target - len(segment_a.tokens))
            segment_b = self._join(self._segment_from(other, start, target_b))
        segment_a, segment_b = truncate_seq_pair(segment_a, segment_b, max_num_tokens, rng)
        return segment_a, segment_b, label

    def draw_pair(self, rng) -> tuple[Segment, Segment, int]:
        pick = int(np.searchsorted(self.pool_cdf, rng.integers(self.pool_cdf[-1]), side="right"))
        doc = int(self.pool[pick])
        first = int(rng.integers(self.doc_off[doc], self.doc_off[doc + 1]))
        return self.create_instance_from_document(doc, first, rng)

    def draw_unpadded(self, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
        """One masked instance [CLS] A [SEP] B [SEP] of its own length n (no padding):
        (input_ids, token_type_ids, mlm_labels, nsp_label, mlm_kinds); the packer lays these into rows.
        mlm_kinds is KIND_MASK / KIND_RANDOM / KIND_UNCHANGED at the predicted positions, NO_KIND elsewhere."""
        a, b, label = self.draw_pair(rng)
        na, n = len(a.tokens), len(a.tokens) + len(b.tokens) + 3
        ids = np.empty(n, dtype=np.int64)
        ids[0], ids[1 + na], ids[n - 1] = CLS_ID, SEP_ID, SEP_ID
        ids[1:1 + na] = a.tokens
        ids[2 + na:n - 1] = b.tokens
        types = np.zeros(n, dtype=np.int64)
        types[2 + na:] = 1
        starts = None
        if self.wwm:
            starts = np.ones(n, dtype=bool)
            starts[1:1 + na] = a.word_starts
            starts[2 + na:n - 1] = b.word_starts
        masked, labels, kinds = create_masked_lm_predictions(ids, n, starts, rng, self.mask_rate, self.max_predictions,
                                                             self.vocab_size)
        return masked, types, labels, label, kinds

    def draw_instance(self, rng) -> dict[str, np.ndarray | int]:
        """One padded, masked instance: [CLS] A [SEP] B [SEP] with token types 0 / 1, padded to max_seq_len."""
        ids, types, labels, label, kinds = self.draw_unpadded(rng)
        n, L = len(ids), self.max_seq_len
        attention = np.zeros(L, dtype=np.int64)
        attention[:n] = 1
        return {"input_ids": np.pad(ids, (0, L - n), constant_values=PAD_ID), "token_type_ids": np.pad(types, (0, L - n)),
                "attention_mask": attention, "mlm_labels": np.pad(labels, (0, L - n), constant_values=IGNORE_INDEX),
                "mlm_kinds": np.pad(kinds, (0, L - n), constant_values=NO_KIND), "nsp_labels": label}


# ---------------------------------------------------------------- batches
def training_instances(sampler: InstanceSampler, seed: int, step: int, first: int, count: int) -> list[tuple]:
    """Unpadded instances `first .. first+count-1` of step `step`'s global batch: a pure function of
    (seed, step, global index). How the global batch is split into ranks and micro-batches does not
    change which instances a step trains on."""
    keyed = KeyedRng()
    return [sampler.draw_unpadded(keyed.at(seed, TRAIN_STREAM, step, 0, first + j)) for j in range(count)]


def fixed_eval_instances(sampler: InstanceSampler, seed: int, num_instances: int) -> list[tuple]:
    """The held-out set, unpadded: the same instances and the same masks at every evaluation."""
    return [sampler.draw_unpadded(instance_rng(seed, EVAL_STREAM, 0, 0, i)) for i in range(num_instances)]
