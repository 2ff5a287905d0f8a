"""The collector behind rare_char_fetch.py: picks a source (corpus/sources/), cleans what it yields
(bertstudy.corpus.text_clean), de-duplicates, writes the corpus atomically and keeps the crawl
progress file current."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from bertstudy.base.atomic_io import atomic_write_json, atomic_writer
from bertstudy.base.errors import UsageError
from bertstudy.corpus.raw import CorpusTotals, RawDocument, to_document
from bertstudy.corpus.text_clean import CleanConfig, CleaningStats, SentenceCleaner, SentenceDeduplicator, finish_document


class CrawlProgress:
    """Keeps the crawl progress file (docs/DESIGN.md) current for check_progress.py.

    Rewritten atomically, at most every `interval_s` seconds (and always on `finish`), so a
    watcher never reads a torn file and a fast source does not spend its time rewriting it.
    """

    def __init__(self, path, source: str, target_vocab: int | None, target_sentences: int | None,
                 interval_s: float = 2.0, clock=None, started_at: float | None = None):
        self.path = path
        self.source = source
        self.target_vocab = target_vocab
        self.target_sentences = target_sentences
        self.interval_s = interval_s
        self._clock = clock or time.time
        self.started_at = started_at if started_at is not None else self._clock()
        self._last_write = None

    def update(self, documents: int, sentences: int, vocab: int, done: bool = False, force: bool = False) -> bool:
        """Write the file if the interval has passed (or force/done). Returns whether it wrote."""
        now = self._clock()
        if not (done or force) and self._last_write is not None and now - self._last_write < self.interval_s:
            return False
        atomic_write_json(self.path, {
            "source": self.source,
            "documents": documents,
            "sentences": sentences,
            "vocab": vocab,
            "target_vocab": self.target_vocab,
            "target_sentences": self.target_sentences,
            "started_at": self.started_at,
            "updated_at": now,
            "done": done,
        })
        self._last_write = now
        return True


@dataclass
class StopRule:
    """When a collection has enough. None means no limit."""

    max_articles: int | None = None  # documents kept
    target_sentences: int | None = None  # sentences kept
    target_vocab: int | None = None  # distinct characters in kept sentences

    def reached(self, documents: int, sentences: int, vocab: int) -> str | None:
        if self.max_articles is not None and documents >= self.max_articles:
            return f"--max-articles {self.max_articles} reached"
        if self.target_sentences is not None and sentences >= self.target_sentences:
            return f"--target-sentences {self.target_sentences} reached"
        if self.target_vocab is not None and vocab >= self.target_vocab:
            return f"--target-vocab {self.target_vocab} reached"
        return None


def write_cleaned_corpus(out, items: Iterable[tuple[RawDocument, list[str]]], dedup: SentenceDeduplicator,
                         stats: CleaningStats, progress: CrawlProgress, stop: StopRule) -> CorpusTotals:
    """Deduplicate cleaned documents in order and stream them to `out` atomically.

    `items` yields each raw document with its cleaned (not yet deduplicated) sentences. The
    corpus appears at `out` only when the stream ends without error (atomic_writer), so a bad
    input found half-way leaves no half-written corpus.
    """
    totals = CorpusTotals()
    with atomic_writer(out) as handle:
        for raw, cleaned in items:
            sentences = finish_document(cleaned, dedup, stats)
            if sentences:
                handle.write(json.dumps(to_document(raw, sentences).to_json(), ensure_ascii=False) + "\n")
                totals.count(sentences)
                progress.update(totals.documents, totals.sentences, len(totals.vocab))
            totals.stop_reason = stop.reached(totals.documents, totals.sentences, len(totals.vocab))
            if totals.stop_reason:
                break
    return totals


SOURCES = ("embedded", "wiki-api", "wiki-dump")


@dataclass
class CollectConfig:
    source: str  # one of SOURCES
    out: Path  # the corpus JSONL
    progress_path: Path  # crawl_progress.json
    state_path: Path  # crawl_state.json (wiki-api resume)
    clean: CleanConfig
    stop: StopRule
    dump_path: Path | None = None  # the XML dump for wiki-dump
    embedded_parts: tuple = ("peoples_daily", "reviews")  # which embedded texts
    workers: int | None = None  # wiki-dump processes; None: os.cpu_count()
    api: dict = field(default_factory=dict)  # wiki-api options, see wiki_api.ApiCrawlConfig


@dataclass
class CollectResult:
    totals: CorpusTotals
    stats: CleaningStats
    elapsed_s: float
    note: str = ""  # e.g. "resumed from state" for wiki-api


def build_config(args) -> CollectConfig:
    """argparse namespace -> CollectConfig; inconsistent options raise UsageError."""
    source, *rest = args.source
    if source not in SOURCES:
        raise UsageError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "wiki-dump" and len(rest) != 1:
        raise UsageError("--source wiki-dump needs exactly one PATH (an .xml or .xml.bz2 dump)")
    if source != "wiki-dump" and rest:
        raise UsageError(f"--source {source} takes no path (got {' '.join(rest)})")
    if args.min_len > args.max_len:
        raise UsageError(f"--min-len {args.min_len} is above --max-len {args.max_len}")
    out = Path(args.out)
    target_vocab = args.target_vocab
    if source == "wiki-api" and target_vocab is None:
        target_vocab = 10000  # the study's goal: enough distinct characters for rare-character tokens
    return CollectConfig(
        source=source,
        out=out,
        progress_path=Path(args.progress) if args.progress else out.parent / "crawl_progress.json",
        state_path=Path(args.state) if args.state else out.parent / "crawl_state.json",
        clean=CleanConfig(min_len=args.min_len, max_len=args.max_len, to_simplified=not args.keep_traditional),
        stop=StopRule(max_articles=args.max_articles, target_sentences=args.target_sentences, target_vocab=target_vocab),
        dump_path=Path(rest[0]) if rest else None,
        embedded_parts=tuple(args.embedded_parts),
        workers=args.workers,
        api={
            "api_url": args.api_url,
            "keywords_path": args.keywords,
            "per_keyword": args.per_keyword,
            "max_rps": args.max_rps,
            "timeout_s": args.timeout,
            "max_retries": args.max_retries,
            "retry_base_delay_s": args.retry_base_delay,
            "retry_max_delay_s": args.retry_max_delay,
            "contact": args.contact,
            "restart": args.restart,
            "progress_bar": not args.no_progress_bar,
        },
    )


def collect(config: CollectConfig) -> CollectResult:
    started = time.monotonic()
    progress = CrawlProgress(config.progress_path, config.source, config.stop.target_vocab, config.stop.target_sentences)
    stats = CleaningStats()
    note = ""
    if config.source == "embedded":
        from bertstudy.corpus.sources.embedded import embedded_documents

        cleaner = SentenceCleaner(config.clean)
        items = ((raw, cleaner.clean(raw.paragraphs, stats)) for raw in embedded_documents(config.embedded_parts))
        totals = write_cleaned_corpus(config.out, items, SentenceDeduplicator(), stats, progress, config.stop)
    elif config.source == "wiki-dump":
        from bertstudy.corpus.sources.wiki_dump import cleaned_dump_documents

        items = cleaned_dump_documents(config.dump_path, config.clean, stats, workers=config.workers,
                                       keywords_path=config.api["keywords_path"])
        totals = write_cleaned_corpus(config.out, items, SentenceDeduplicator(), stats, progress, config.stop)
    else:
        from bertstudy.corpus.sources.wiki_api import crawl

        totals, note = crawl(config, stats, progress)
    progress.update(totals.documents, totals.sentences, len(totals.vocab), done=True)
    return CollectResult(totals=totals, stats=stats, elapsed_s=time.monotonic() - started, note=note)


def summary_lines(config: CollectConfig, result: CollectResult) -> list[str]:
    totals = result.totals
    lines = [
        f"wrote {config.out}: {totals.documents} documents, {totals.sentences} sentences, "
        f"{totals.characters} characters, vocabulary {len(totals.vocab)} distinct characters "
        f"({config.source}, {result.elapsed_s:.1f} s)",
    ]
    if totals.stop_reason:
        lines.append(f"stopped early: {totals.stop_reason}")
    if result.note:
        lines.append(result.note)
    lines += ["cleaning: " + line for line in result.stats.summary_lines()]
    return lines
