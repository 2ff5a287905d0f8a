"""Chinese Wikipedia (or any MediaWiki) through the Action API, resumable.

Pages are listed per domain keyword (list=search with srwhat=text, and list=categorymembers),
then fetched one per request as plain-text extracts (prop=extracts&explaintext=1, variant=zh-cn),
cleaned, and appended to `<out>.partial`.

Why a kill at any point loses and duplicates nothing: the state file (written atomically) holds
the page queue, how many queue entries are finished, and `corpus_bytes`, the length of the
partial corpus that those finished entries produced. A document is appended and fsynced first,
then the state advances past it. Resuming truncates the partial corpus back to `corpus_bytes`,
so a document appended after the last state write is removed and fetched again; everything
before it is kept exactly once. When the queue is done (or a stop rule fires) the state is
marked done and the partial file is renamed to `<out>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import requests
from tqdm import tqdm

from bertstudy import __version__
from bertstudy.base.atomic_io import atomic_write_json, iter_jsonl, read_json, read_text_utf8
from bertstudy.base.errors import EXIT_USAGE, BadInputError, StudyError
from bertstudy.corpus.http_client import ApiClient, HttpConfig
from bertstudy.corpus.text_clean import CleaningStats, SentenceCleaner, SentenceDeduplicator, finish_document
from bertstudy.corpus.raw import CorpusTotals, RawDocument, to_document

STATE_FORMAT = "chinese-bert-correlation/crawl-state-v1"
PAGE_LIMIT = 50  # list=search / categorymembers page size (the API's maximum for anonymous users)


@dataclass
class KeywordEntry:
    domain: str  # label given to every page this entry finds
    keyword: str | None = None  # full-text search term
    category: str | None = None  # category name without the "Category:" prefix


def load_keywords(path: str | os.PathLike | None) -> tuple[list[KeywordEntry], str]:
    """Read the keywords JSON (default: the packaged one). Returns the entries and the file text."""
    if path is None:
        text = resources.files("bertstudy").joinpath("data/domain_keywords.json").read_text(encoding="utf-8")
        path = "bertstudy/data/domain_keywords.json"
    else:
        path = Path(path)
        if path.exists() and not os.access(path, os.R_OK):
            raise BadInputError(path, "cannot read the keywords file (permission denied)")
        text = read_text_utf8(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"invalid JSON ({exc.msg})", line=exc.lineno) from None
    raw_entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(raw_entries, list) or not raw_entries:
        raise BadInputError(path, "expected {\"entries\": [{\"keyword\" or \"category\", \"domain\"}, ...]} with at least one entry")
    entries = []
    for number, item in enumerate(raw_entries, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("domain"), str) or not item["domain"]:
            raise BadInputError(path, f"entry {number} needs a non-empty string \"domain\"")
        keyword, category = item.get("keyword"), item.get("category")
        if not any(isinstance(v, str) and v.strip() for v in (keyword, category)):
            raise BadInputError(path, f"entry {number} needs a \"keyword\" or a \"category\" string")
        entries.append(KeywordEntry(domain=item["domain"], keyword=keyword, category=category))
    return entries, text


def user_agent(contact: str) -> str:
    """Wikimedia's User-Agent policy: a tool name and version plus a way to reach its operator."""
    return f"chinese-bert-correlation/{__version__} ({contact}) python-requests/{requests.__version__}"


def base_params() -> dict:
    return {"format": "json", "formatversion": "2", "maxlag": "5"}


def list_pages(client: ApiClient, api_url: str, entry: KeywordEntry, limit: int) -> list[tuple[int, str]]:
    """(pageid, title) of up to `limit` main-namespace pages for the entry, following continuation."""
    found: list[tuple[int, str]] = []
    queries = []
    if entry.keyword:
        queries.append(("search", {"list": "search", "srsearch": entry.keyword, "srwhat": "text", "srnamespace": "0", "srprop": ""}, "srlimit"))
    if entry.category:
        queries.append(("categorymembers", {"list": "categorymembers", "cmtitle": f"Category:{entry.category}", "cmnamespace": "0", "cmtype": "page"}, "cmlimit"))
    for result_key, query, limit_key in queries:
        count = 0
        cont: dict = {}
        while count < limit:
            params = {**base_params(), "action": "query", **query, limit_key: str(min(PAGE_LIMIT, limit - count)), **cont}
            data = client.get_json(api_url, params)
            items = data.get("query", {}).get(result_key, [])
            for item in items:
                if item.get("ns", 0) == 0 and "pageid" in item:
                    found.append((int(item["pageid"]), str(item["title"])))
                    count += 1
            cont = data.get("continue") or {}
            if not cont or not items:
                break
    return found


def fetch_extract(client: ApiClient, api_url: str, pageid: int) -> str | None:
    """The page's whole plain-text extract in simplified script; None if the page is gone."""
    parts: list[str] = []
    cont: dict = {}
    while True:
        params = {**base_params(), "action": "query", "prop": "extracts", "explaintext": "1", "exlimit": "1",
                  "pageids": str(pageid), "variant": "zh-cn", "redirects": "1", **cont}
        data = client.get_json(api_url, params)
        pages = data.get("query", {}).get("pages", [])
        if isinstance(pages, dict):  # formatversion=1 servers
            pages = list(pages.values())
        for page in pages:
            if page.get("missing") or page.get("invalid"):
                return None
            if page.get("extract"):
                parts.append(page["extract"])
        cont = data.get("continue") or {}
        if "excontinue" not in cont:
            # continued parts are consecutive pieces of one page's text: joined as they are, since
            # a separator would cut the sentence that straddles the boundary in two
            return "".join(parts)


def _fingerprint(config, keywords_text: str) -> dict:
    api = config.api
    return {
        "api_url": api["api_url"],
        "keywords_sha256": hashlib.sha256(keywords_text.encode("utf-8")).hexdigest(),
        "per_keyword": api["per_keyword"],
        "clean": [config.clean.min_len, config.clean.max_len, config.clean.to_simplified],
        "stop": [config.stop.max_articles, config.stop.target_sentences, config.stop.target_vocab],
        "out": str(config.out),
    }


def _new_state(fingerprint: dict, started_at: float) -> dict:
    return {"format": STATE_FORMAT, "fingerprint": fingerprint, "listed_entries": 0, "queue": [], "fetched": 0,
            "corpus_bytes": 0, "stats": CleaningStats().to_dict(), "started_at": started_at, "done": False,
            "stop_reason": None}


def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _restore_corpus(partial: Path, corpus_bytes: int, dedup: SentenceDeduplicator) -> CorpusTotals:
    """Cut the partial corpus back to what the state vouches for, and re-learn its sentences."""
    totals = CorpusTotals()
    if corpus_bytes == 0:
        partial.write_bytes(b"")
        return totals
    if not partial.exists() or partial.stat().st_size < corpus_bytes:
        raise StudyError(f"{partial}: shorter than the crawl state records ({corpus_bytes} bytes); rerun with --restart")
    with open(partial, "r+b") as handle:
        handle.truncate(corpus_bytes)
        handle.flush()
        os.fsync(handle.fileno())
    for _line, obj in iter_jsonl(partial):
        dedup.remember(obj["sentences"])
        totals.count(obj["sentences"])
    return totals


def _load_or_start(config, fingerprint: dict, progress) -> dict:
    state_path = config.state_path
    if config.api["restart"] or not state_path.exists():
        return _new_state(fingerprint, progress.started_at)
    state = read_json(state_path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise BadInputError(state_path, "not a crawl state file of this version; rerun with --restart")
    if state.get("fingerprint") != fingerprint:
        raise StudyError(f"{state_path}: belongs to a crawl with other settings; rerun with --restart "
                         f"(or pass another --state)", exit_code=EXIT_USAGE)
    return state


def crawl(config, stats: CleaningStats, progress) -> tuple[CorpusTotals, str]:
    """Run (or resume) a crawl; returns the corpus totals and a note for the summary."""
    api = config.api
    entries, keywords_text = load_keywords(api["keywords_path"])
    fingerprint = _fingerprint(config, keywords_text)
    state = _load_or_start(config, fingerprint, progress)
    progress.started_at = state["started_at"]
    partial = _partial_path(config.out)
    dedup = SentenceDeduplicator()
    if state["done"]:
        if partial.exists():
            os.replace(partial, config.out)
        totals = CorpusTotals()
        for _line, obj in iter_jsonl(config.out):
            totals.count(obj["sentences"])
        totals.stop_reason = state.get("stop_reason")
        stats.add(CleaningStats.from_dict(state["stats"]))
        return totals, f"this crawl was already complete (state {config.state_path}); --restart to crawl again"
    resumed = state["fetched"] > 0 or state["listed_entries"] > 0
    config.out.parent.mkdir(parents=True, exist_ok=True)
    totals = _restore_corpus(partial, state["corpus_bytes"], dedup)
    stats.add(CleaningStats.from_dict(state["stats"]))
    client = ApiClient(HttpConfig(
        user_agent=user_agent(api["contact"]), timeout_s=api["timeout_s"], max_retries=api["max_retries"],
        retry_base_delay_s=api["retry_base_delay_s"], retry_max_delay_s=api["retry_max_delay_s"], max_rps=api["max_rps"]))
    cleaner = SentenceCleaner(config.clean)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
    try:
        _list_all(client, api, entries, state, config.state_path)
        _fetch_all(client, api, config, state, cleaner, dedup, stats, totals, partial, progress)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    state["done"] = True
    state["stop_reason"] = totals.stop_reason
    atomic_write_json(config.state_path, state, indent=None)
    os.replace(partial, config.out)
    note = f"requests: {client.requests_sent} sent, {client.retries} retried"
    return totals, ("resumed from " + str(config.state_path) + "; " + note) if resumed else note


def _list_all(client, api, entries, state, state_path) -> None:
    queued = {item[0] for item in state["queue"]}
    for index in range(state["listed_entries"], len(entries)):
        entry = entries[index]
        for pageid, title in list_pages(client, api["api_url"], entry, api["per_keyword"]):
            if pageid not in queued:
                queued.add(pageid)
                state["queue"].append([pageid, title, entry.domain])
        state["listed_entries"] = index + 1  # this entry's pages join the queue in the same write
        atomic_write_json(state_path, state, indent=None)


def _fetch_all(client, api, config, state, cleaner, dedup, stats, totals, partial, progress) -> None:
    page_url = api["api_url"].rsplit("/", 1)[0] + "/index.php?curid="
    queue = state["queue"]
    bar = tqdm(total=len(queue), initial=state["fetched"], unit="page", disable=not api["progress_bar"], desc="wiki-api")
    with bar, open(partial, "ab") as handle:
        while state["fetched"] < len(queue):
            totals.stop_reason = config.stop.reached(totals.documents, totals.sentences, len(totals.vocab))
            if totals.stop_reason:
                break
            pageid, title, domain = queue[state["fetched"]]
            text = fetch_extract(client, api["api_url"], pageid)
            raw = RawDocument(id=f"wiki-{pageid}", title=title, source="wiki-api", domain=domain, url=f"{page_url}{pageid}")
            sentences = finish_document(cleaner.clean([text or ""], stats), dedup, stats)
            if sentences:
                handle.write((json.dumps(to_document(raw, sentences).to_json(), ensure_ascii=False) + "\n").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                totals.count(sentences)
            state["fetched"] += 1
            state["corpus_bytes"] = handle.tell()
            state["stats"] = stats.to_dict()
            atomic_write_json(config.state_path, state, indent=None)
            progress.update(totals.documents, totals.sentences, len(totals.vocab))
            bar.update(1)
        else:
            totals.stop_reason = config.stop.reached(totals.documents, totals.sentences, len(totals.vocab))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
