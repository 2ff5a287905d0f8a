"""What every source yields before cleaning (`RawDocument`), and the running totals of a collection.

The sources (corpus/sources/) and the collector (corpus/collect.py) both import this module; it
imports neither, so the collector can load a source lazily without a loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertstudy.corpus.corpus_io import Document


@dataclass
class RawDocument:
    id: str  # stable id, unique within its source
    title: str
    source: str  # embedded:peoples_daily, embedded:reviews, wiki-api, wiki-dump
    domain: str  # news, review, or the domain label of the keyword that found a wiki page
    url: str | None = None
    paragraphs: list[str] = field(default_factory=list)  # uncleaned text, one paragraph each


@dataclass
class CorpusTotals:
    documents: int = 0
    sentences: int = 0
    characters: int = 0
    vocab: set = field(default_factory=set)  # distinct characters
    stop_reason: str | None = None

    def count(self, sentences: list[str]) -> None:
        self.documents += 1
        self.sentences += len(sentences)
        for sentence in sentences:
            self.characters += len(sentence)
            self.vocab.update(sentence)


def to_document(raw: RawDocument, sentences: list[str]) -> Document:
    return Document(id=raw.id, sentences=sentences, title=raw.title, source=raw.source, domain=raw.domain, url=raw.url)
