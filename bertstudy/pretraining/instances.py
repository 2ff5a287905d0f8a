"""MLM + NSP training instances, built the way google-research/bert's create_pretraining_data.py does,
but drawn on the fly from a tokenized corpus cached as numpy arrays.

Why on the fly: masking is dynamic (a fresh mask every time an instance is drawn, as RoBERTa showed
helps), and every training instance is a pure function of (seed, step, global index in the step's
batch). So a resumed run draws exactly the batches an uninterrupted run would, DDP ranks take
disjoint slices of the same global batch (rank r takes indices r*P .. r*P+P-1 of P per rank), and
neither the world size nor the micro-batch split changes which instances a step trains on.
bertstudy/pretraining/packing.py lays the instances into rows; bertstudy/pretraining/loader.py builds steps ahead.

NSP label convention (BERT's and transformers' `next_sentence_label`):
    nsp_label = 0  ->  "IsNext": segment B is the true continuation of A in the same document
    nsp_label = 1  ->  "NotNext": segment B is a segment of another, random document
"""

from __future__ import annotations

import hashlib
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bertstudy.base.hashing import file_sha256
from bertstudy.base.atomic_io import atomic_write_json, atomic_writer, read_json
from bertstudy.corpus.corpus_io import Document
from bertstudy.base.errors import BadInputError, StudyError
from bertstudy.pretraining.vocab import CLS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID, UNK_ID, Vocab

IS_NEXT, NOT_NEXT = 0, 1  # see the module docstring
IGNORE_INDEX = -100  # mlm label of a position that is not predicted (torch cross_entropy's default)
TOKENIZATION_VERSION = 1  # bump when tokenize_documents changes, so stale caches are not reused
TRAIN_STREAM, EVAL_STREAM = 0, 1  # keep training draws and the fixed held-out set independent
# What BERT's 80/10/10 recipe did to a predicted position (its "kind"): [MASK] put in its place, a random
# real token put in its place, or left unchanged. NO_KIND marks the positions that are not predicted.
# The model reports accuracy per kind in this order (model.MLM_KINDS).
KIND_MASK, KIND_RANDOM, KIND_UNCHANGED, NO_KIND = 0, 1, 2, -1
MASK_SHARE, RANDOM_SHARE, UNCHANGED_SHARE = 0.8, 0.1, 0.1  # of the predicted positions (BERT's recipe)


# ---------------------------------------------------------------- tokenized corpus and its cache
@dataclass
class TokenizedCorpus:
    tokens: np.ndarray  # all token ids, sentence after sentence (whitespace dropped)
    sentence_offsets: np.ndarray  # sentence s is tokens[sentence_offsets[s]:sentence_offsets[s+1]]
    document_offsets: np.ndarray  # document d is sentences document_offsets[d] .. document_offsets[d+1]-1
    word_starts: np.ndarray | None  # True where a jieba word begins (only for whole-word masking)
    source: str | None = field(default=None, compare=False)  # the corpus file, for messages

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    def document_token_counts(self) -> np.ndarray:
        first_token = self.sentence_offsets[self.document_offsets]
        return np.diff(first_token)


def tokenize_documents(documents: Sequence[Document], vocab: Vocab, wwm: bool = False) -> TokenizedCorpus:
    """Encode every sentence; empty sentences are dropped so every kept sentence has >= 1 token."""
    if wwm:
        import jieba  # imported here: it prints a banner and loads a dictionary, needed only for --wwm

        jieba.setLogLevel(60)
    ids: list[int] = []
    starts: list[bool] = []
    sentence_offsets = [0]
    document_offsets = [0]
    index = vocab.index
    for doc in documents:
        for sentence in doc.sentences:
            words = jieba.lcut(sentence) if wwm else [sentence]
            for word in words:
                first = True
                for char in word:
                    if char.isspace():
                        continue
                    ids.append(index.get(char, UNK_ID))
                    starts.append(first or not wwm)
                    first = False
            if len(ids) > sentence_offsets[-1]:
                sentence_offsets.append(len(ids))
        document_offsets.append(len(sentence_offsets) - 1)
    dtype = np.uint16 if len(vocab) <= np.iinfo(np.uint16).max else np.int32
    return TokenizedCorpus(
        tokens=np.asarray(ids, dtype=dtype),
        sentence_offsets=np.asarray(sentence_offsets, dtype=np.int64),
        document_offsets=np.asarray(document_offsets, dtype=np.int64),
        word_starts=np.asarray(starts, dtype=bool) if wwm else None,
    )


def cache_key(corpus_hash: str, vocab_hash: str, wwm: bool) -> str:
    text = f"{corpus_hash}:{vocab_hash}:tokenization-v{TOKENIZATION_VERSION}:wwm={int(wwm)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


_ARRAYS = ("tokens", "sentence_offsets", "document_offsets", "word_starts")


def load_or_build_cache(documents, corpus_path, vocab: Vocab, cache_dir, wwm: bool = False) -> tuple[TokenizedCorpus, Path, bool]:
    """Tokenize once and keep the arrays in cache_dir/tokens-<key>/ (memory-mapped when read back).

    The key covers the corpus bytes, the vocabulary and the tokenization version; each array is
    written atomically and manifest.json last, so a folder without a manifest is never trusted.
    Returns (corpus, folder, built_now).
    """
    key = cache_key(file_sha256(corpus_path), vocab.hash, wwm)
    folder = Path(cache_dir) / f"tokens-{key}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = read_json(manifest_path)
            arrays = {
                name: np.load(folder / f"{name}.npy", mmap_mode="r") if name in manifest["arrays"] else None
                for name in _ARRAYS
            }
            return TokenizedCorpus(**arrays, source=str(corpus_path)), folder, False
        except (BadInputError, OSError, ValueError, KeyError) as exc:
            print(f"warning: token cache {folder} is unreadable ({exc}); rebuilding it", file=sys.stderr)
    corpus = tokenize_documents(documents, vocab, wwm)
    corpus.source = str(corpus_path)
    try:
        written = []
        for name in _ARRAYS:
            array = getattr(corpus, name)
            if array is None:
                continue
            with atomic_writer(folder / f"{name}.npy", "wb") as handle:
                np.save(handle, array)
            written.append(name)
        atomic_write_json(manifest_path, {"key": key, "tokenization_version": TOKENIZATION_VERSION, "wwm": wwm,
                                          "vocab_hash": vocab.hash, "arrays": written, "tokens": int(len(corpus.tokens))})
    except StudyError as exc:
        print(f"warning: could not write the token cache ({exc}); continuing without it", file=sys.stderr)
    return corpus, folder, True


# ---------------------------------------------------------------- held-out split
FEW_DOCUMENTS = 20  # below this a run can neither learn much nor measure it: said, not refused (tests train on fewer)


def few_documents_warning(train_docs, heldout_docs) -> str | None:
    """A warning for a split too small to learn from or to measure on; None otherwise."""
    total = len(train_docs) + len(heldout_docs)
    if total >= FEW_DOCUMENTS:
        return None
    return (f"warning: the corpus has only {total} documents with text ({len(train_docs)} to train on, "
            f"{len(heldout_docs)} held out): too few to learn from, and the held-out accuracy of {len(heldout_docs)} "
            f"document(s) is mostly noise; the embedded corpus (make quickstart) has thousands")


def split_documents(corpus: TokenizedCorpus, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out documents (never trained on) chosen by a seeded permutation; returns (train, heldout) ids."""
    nonempty = np.flatnonzero(corpus.document_token_counts() > 0)
    if len(nonempty) < 2:
        message = (f"has {len(nonempty)} document(s) with text; NSP and a held-out split need at least 2 "
                   "(one JSON object per document, each with its own sentences)")
        source = getattr(corpus, "source", None)
        raise BadInputError(source, message) if source else StudyError(f"the corpus {message}", exit_code=3)
    num_heldout = min(len(nonempty) - 1, max(1, round(heldout_fraction * len(nonempty))))
    order = np.random.default_rng([seed, 7]).permutation(nonempty)
    return np.sort(order[num_heldout:]), np.sort(order[:num_heldout])


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
        there, which on a corpus of short documents (half of the embedded one) skews NSP to ~80% NotNext.
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


# ---------------------------------------------------------------- batches
_KEY = struct.Struct("<5q")


def _keyed_state(seed: int, stream: int, step: int, micro_step: int, index: int) -> dict:
    """A PCG64 state hashed from the key: independent streams without SeedSequence's cost
    (setting a state is ~6 us; building a seeded Generator ~35 us, a third of an instance)."""
    digest = hashlib.blake2b(_KEY.pack(seed, stream, step, micro_step, index), digest_size=32).digest()
    return {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
            "state": {"state": int.from_bytes(digest[:16], "little"), "inc": int.from_bytes(digest[16:], "little") | 1}}


class KeyedRng:
    """One Generator re-seeded per key: `at(key)` returns it set to the key's stream. Reused, so
    each caller takes its draws before asking for the next key (the loops here do)."""

    def __init__(self):
        self.bit_generator = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bit_generator)

    def at(self, seed: int, stream: int, step: int, micro_step: int, index: int) -> np.random.Generator:
        self.bit_generator.state = _keyed_state(seed, stream, step, micro_step, index)
        return self.generator


def instance_rng(seed: int, stream: int, step: int, micro_step: int, index: int) -> np.random.Generator:
    """A fresh Generator on the key's stream (the same stream KeyedRng.at gives)."""
    return KeyedRng().at(seed, stream, step, micro_step, index)


def training_instances(sampler: InstanceSampler, seed: int, step: int, first: int, count: int) -> list[tuple]:
    """Unpadded instances `first .. first+count-1` of step `step`'s global batch: a pure function of
    (seed, step, global index). How the global batch is split into ranks and micro-batches does not
    change which instances a step trains on."""
    keyed = KeyedRng()
    return [sampler.draw_unpadded(keyed.at(seed, TRAIN_STREAM, step, 0, first + j)) for j in range(count)]


def fixed_eval_instances(sampler: InstanceSampler, seed: int, num_instances: int) -> list[tuple]:
    """The held-out set, unpadded: the same instances and the same masks at every evaluation."""
    return [sampler.draw_unpadded(instance_rng(seed, EVAL_STREAM, 0, 0, i)) for i in range(num_instances)]
