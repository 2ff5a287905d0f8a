"""Cleaning shared by every source: Unicode normalisation, traditional -> simplified, sentence
splitting, length and CJK filters, and corpus-wide exact de-duplication, with a count of what
each step removed (`CleaningStats`).

The per-document steps (`SentenceCleaner`) keep no state between documents, so they can run in
worker processes; de-duplication (`SentenceDeduplicator`) needs the whole corpus's history and
runs in one place, in document order, so the output is the same however the work is split.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from typing import Iterable

# NFKC is wanted for full-width digits and Latin letters (１９９８ -> 1998, Ａ -> A), but it would
# also fold Chinese punctuation (，！？（） -> ,!?()) and the ellipsis (… -> ...), which changes both
# sentence splitting and the model's vocabulary; those characters are kept as they are.
_KEEP_AS_IS = "，、。！？；：（）［］｛｝〔〕【】《》〈〉「」『』“”‘’…—～·"
_KEEP_RE = re.compile("([" + re.escape(_KEEP_AS_IS) + "]+)")

# A sentence ends with a run of end punctuation (or an ellipsis "……") followed by any closing
# quotes/brackets, which stay attached to the sentence they close.
_CLOSERS = "」』”’）》〉】〗〕)\"'"
_SPLIT_RE = re.compile("((?:[。！？；!?]|……)+[" + re.escape(_CLOSERS) + "]*)")
_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_SPACE_RE = re.compile(r"\s+")
# Section headings as plain-text extracts write them: "== 历史 ==".
_HEADING_RE = re.compile(r"^\s*=+[^=].*=+\s*$")


def normalize_width(text: str) -> str:
    """NFKC everything except the Chinese punctuation listed in _KEEP_AS_IS."""
    parts = _KEEP_RE.split(text)
    # split with a capturing group: odd indices are the kept punctuation runs
    return "".join(part if index % 2 else unicodedata.normalize("NFKC", part) for index, part in enumerate(parts))


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph at Chinese end punctuation; whitespace runs collapse to one space."""
    pieces = _SPLIT_RE.split(paragraph)
    sentences = []
    for index in range(0, len(pieces), 2):
        sentence = pieces[index] + (pieces[index + 1] if index + 1 < len(pieces) else "")
        sentence = _SPACE_RE.sub(" ", sentence).strip()
        if sentence:
            sentences.append(sentence)
    return sentences


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def is_heading(line: str) -> bool:
    return _HEADING_RE.match(line) is not None


@dataclass
class CleaningStats:
    """How many items each step saw and removed; adds up across documents and workers."""

    documents_in: int = 0
    documents_empty: int = 0  # documents dropped because no sentence survived
    documents_kept: int = 0
    sentences_split: int = 0  # sentences produced by splitting, before any filter
    too_short: int = 0
    too_long: int = 0
    no_cjk: int = 0
    duplicates: int = 0  # exact repeats of a sentence seen earlier in the corpus
    sentences_kept: int = 0
    chars_kept: int = 0
    traditional_changed: int = 0  # sentences OpenCC changed (traditional -> simplified)

    def add(self, other: "CleaningStats") -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CleaningStats":
        known = {item.name for item in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in known})

    def summary_lines(self) -> list[str]:
        return [
            f"documents: {self.documents_in} read, {self.documents_kept} kept, {self.documents_empty} dropped (no sentence left)",
            f"sentences: {self.sentences_split} split, {self.sentences_kept} kept ({self.chars_kept} characters)",
            f"removed: {self.too_short} too short, {self.too_long} too long, {self.no_cjk} without CJK, {self.duplicates} duplicates",
            f"traditional -> simplified: {self.traditional_changed} sentences changed",
        ]


@dataclass
class CleanConfig:
    min_len: int = 10  # shortest sentence kept, in characters (shorter: headings, fragments)
    max_len: int = 200  # longest kept; longer ones are run-ons or lists the splitter could not cut
    to_simplified: bool = True  # the study's vocabulary is simplified Chinese


class SentenceCleaner:
    """Per-document cleaning without cross-document state (safe to use in worker processes)."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self._converter = None
        if config.to_simplified:
            import opencc  # created once per cleaner: building the converter loads its dictionaries

            self._converter = opencc.OpenCC("t2s")

    def to_simplified(self, text: str) -> str:
        return self._converter.convert(text) if self._converter is not None else text

    def clean(self, paragraphs: Iterable[str], stats: CleaningStats) -> list[str]:
        """Paragraphs (or any text with newlines) -> filtered sentences, counted into `stats`."""
        kept = []
        for paragraph in paragraphs:
            for line in paragraph.split("\n"):
                if not line.strip() or is_heading(line):
                    continue
                for sentence in split_sentences(normalize_width(line)):
                    stats.sentences_split += 1
                    if len(sentence) < self.config.min_len:
                        stats.too_short += 1
                    elif len(sentence) > self.config.max_len:
                        stats.too_long += 1
                    elif not has_cjk(sentence):
                        stats.no_cjk += 1
                    else:
                        simplified = self.to_simplified(sentence)
                        if simplified != sentence:
                            stats.traditional_changed += 1
                        kept.append(simplified)
        return kept


class SentenceDeduplicator:
    """Corpus-wide exact de-duplication. Stores 16-byte digests, not the sentences themselves."""

    def __init__(self):
        self._seen: set[bytes] = set()

    @staticmethod
    def _key(sentence: str) -> bytes:
        return hashlib.blake2b(sentence.encode("utf-8"), digest_size=16).digest()

    def remember(self, sentences: Iterable[str]) -> None:
        """Mark sentences as already in the corpus (used when resuming from a partial corpus)."""
        self._seen.update(self._key(s) for s in sentences)

    def filter(self, sentences: list[str], stats: CleaningStats) -> list[str]:
        unique = []
        for sentence in sentences:
            key = self._key(sentence)
            if key in self._seen:
                stats.duplicates += 1
                continue
            self._seen.add(key)
            unique.append(sentence)
        return unique


def finish_document(sentences: list[str], dedup: SentenceDeduplicator, stats: CleaningStats) -> list[str]:
    """Deduplicate one document's cleaned sentences and count it as kept or dropped."""
    stats.documents_in += 1
    unique = dedup.filter(sentences, stats)
    if not unique:
        stats.documents_empty += 1
        return []
    stats.documents_kept += 1
    stats.sentences_kept += len(unique)
    stats.chars_kept += sum(len(s) for s in unique)
    return unique
