"""Character-level vocabulary for a Chinese BERT, in BERT's vocab.txt layout.

Ids 0..4 are the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]; then every character seen at
least `min_freq` times, by descending frequency, ties broken by code point, so the same corpus
always gives the same vocabulary (and the same `vocab_hash`). The file holds one token per line,
which is what transformers' BertTokenizer reads.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from bertstudy.base.atomic_io import atomic_write_text, read_text_utf8
from bertstudy.base.errors import BadInputError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
NUM_SPECIAL = len(SPECIAL_TOKENS)  # the first real character's id


@dataclass
class Vocab:
    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if tuple(self.tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {' '.join(SPECIAL_TOKENS)}")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def text(self) -> str:
        """The vocab.txt content: one token per line."""
        return "".join(token + "\n" for token in self.tokens)

    @property
    def hash(self) -> str:
        return vocab_hash(self.text())

    def encode(self, text: str) -> list[int]:
        """Characters -> ids; a character outside the vocabulary becomes [UNK]."""
        index = self.index
        return [index.get(char, UNK_ID) for char in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids)


def vocab_hash(text: str) -> str:
    """sha256 of the vocab.txt text; checkpoints carry it so a model is never paired with another vocabulary."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def count_characters(sentences: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for sentence in sentences:
        counts.update(sentence)
    return counts


def build_vocab(sentences: Iterable[str], min_freq: int = 1) -> Vocab:
    """Characters seen >= min_freq times, most frequent first (ties by code point). Whitespace is skipped:
    BertTokenizer splits on it, so a whitespace token could never be looked up."""
    counts = count_characters(sentences)
    chars = [c for c, n in counts.items() if n >= min_freq and not c.isspace() and c not in SPECIAL_TOKENS]
    chars.sort(key=lambda c: (-counts[c], ord(c)))
    return Vocab(list(SPECIAL_TOKENS) + chars)


def save_vocab(vocab: Vocab, path) -> str:
    """Write vocab.txt atomically; returns its hash."""
    text = vocab.text()
    atomic_write_text(path, text)
    return vocab_hash(text)


def load_vocab(path) -> Vocab:
    path = Path(path)
    text = read_text_utf8(path)
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
        raise BadInputError(path, f"a vocab.txt must start with {' '.join(SPECIAL_TOKENS)}, one per line", line=1)
    seen: dict[str, int] = {}
    for lineno, token in enumerate(tokens, start=1):
        if token in seen:
            raise BadInputError(path, f"token {token!r} repeats line {seen[token]}", line=lineno)
        seen[token] = lineno
    return Vocab(tokens)
