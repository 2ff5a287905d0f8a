"""The corpus tokenized into numpy arrays (one token per non-space character), and the on-disk cache
that keeps those arrays between runs, so a corpus is tokenized once per vocabulary and tokenization.

`TokenizedCorpus` holds every token id sentence after sentence, with offsets that say where each
sentence and each document starts, and (for whole-word masking) where each jieba word starts.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bertstudy.base.hashing import file_sha256
from bertstudy.base.atomic_io import atomic_write_json, atomic_writer, read_json
from bertstudy.corpus.corpus_io import Document
from bertstudy.base.errors import BadInputError, StudyError
from bertstudy.pretraining.vocab import UNK_ID, Vocab

TOKENIZATION_VERSION = 1  # bump when tokenize_documents changes, so stale caches are not reused


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
