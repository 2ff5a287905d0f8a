"""A MediaWiki XML dump (`.xml` or `.xml.bz2`, export-0.10/0.11) as a corpus source.

The dump is streamed with `xml.etree.ElementTree.iterparse` and every finished <page> is cleared
(and detached from the root), so memory stays flat however large the dump is. Only main-namespace
(ns 0) pages that are not redirects are kept. Wikitext becomes plain text with mwparserfromhell
after templates, <ref>s, tables, headings, file/category/interlanguage links and hidden tags are
removed; zhwiki's language-conversion markup `-{...}-` is resolved to its simplified form.

Conversion and cleaning run in a multiprocessing pool (`workers`); pages go out in batches and
the results come back batch by batch in dump order, so the corpus is the same for any number of
workers. Parsing the XML stays in the calling process, so a malformed or truncated dump raises a
BadInputError there (naming the file and line) and the atomic corpus writer discards the output.

Domains come from the same keywords file as wiki-api: the first entry whose category the page is
in, or whose keyword occurs in its title, text or category names, names the domain; other pages
are "general".
"""

from __future__ import annotations

import bz2
import multiprocessing
import os
import re
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import mwparserfromhell
from mwparserfromhell.nodes import Comment, Heading, Tag, Template, Wikilink

from bertstudy.base.errors import BadInputError
from bertstudy.corpus.text_clean import CleanConfig, CleaningStats, SentenceCleaner
from bertstudy.corpus.raw import RawDocument

GENERAL_DOMAIN = "general"  # pages that no keyword entry matches
BATCH_PAGES = 64  # pages sent to the pool at once: large enough to amortise pickling, small for memory
BATCHES_IN_FLIGHT = 4  # batches queued ahead of the one being written, so parsing and conversion overlap
# Tags whose content is not running prose (notes, tables, maths, media, code).
DROP_TAGS = frozenset({"ref", "references", "table", "gallery", "math", "chem", "ce", "score", "timeline", "imagemap",
                       "syntaxhighlight", "source", "pre", "code", "graph", "templatedata", "categorytree", "inputbox",
                       "mapframe", "maplink", "noinclude", "nowiki"})
CATEGORY_PREFIXES = frozenset({"category", "分类", "分類"})
# File links (their captions are fragments) and other namespaces a link can point into.
MEDIA_PREFIXES = frozenset({"file", "image", "media", "文件", "檔案", "档案", "图像", "圖像", "文檔", "媒体", "媒體"})
_INTERLANGUAGE_RE = re.compile(r"^:?[a-z]{2,3}(?:-[a-z0-9]+)*$")  # [[en:Foo]], [[zh-yue:...]]
_MAGIC_WORD_RE = re.compile(r"__[A-Z]+__")
_CONVERSION_RE = re.compile(r"-\{(.*?)\}-", re.S)
# Variant codes in the order a simplified-Chinese reader would pick them.
_SIMPLIFIED_VARIANTS = ("zh-cn", "zh-hans", "zh-sg", "zh-my", "zh")


@dataclass
class DumpPage:
    pageid: int
    title: str
    wikitext: str
    url: str | None = None  # built from the dump's siteinfo <base>


def _local(tag: str) -> str:
    """Element tag without its XML namespace: '{http://www.mediawiki.org/xml/export-0.11/}page' -> 'page'."""
    return tag.rsplit("}", 1)[-1]


def _child_text(element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text
    return None


def _open_dump(path: Path):
    """A binary stream of the XML, decompressed if the file is bzip2 (told by its magic bytes)."""
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a dump")
    try:
        with open(path, "rb") as probe:
            magic = probe.read(3)
    except OSError as exc:
        raise BadInputError(path, f"cannot read the dump ({exc.strerror or exc})") from None
    if not magic:
        raise BadInputError(path, "file is empty")
    return bz2.open(path, "rb") if magic == b"BZh" else open(path, "rb")


def iter_dump_pages(path) -> Iterator[DumpPage]:
    """Stream the main-namespace, non-redirect pages of a dump, in file order.

    Every problem with the file (not XML, truncated XML, a broken bz2 stream, not a MediaWiki
    dump) becomes a BadInputError naming it.
    """
    path = Path(path)
    stream = _open_dump(path)
    root = None
    base_url = None
    pages_seen = 0
    try:
        with stream:
            for event, element in ET.iterparse(stream, events=("start", "end")):
                if root is None:
                    root = element
                    if _local(root.tag) != "mediawiki":
                        raise BadInputError(path, f"not a MediaWiki XML dump (root element <{_local(root.tag)}>)", line=1)
                    continue
                if event != "end":
                    continue
                name = _local(element.tag)
                if name == "siteinfo":
                    base_url = _child_text(element, "base")
                    root.clear()
                elif name == "page":
                    pages_seen += 1
                    page = _page_from_element(element, base_url)
                    root.clear()  # drop the finished page (and its text) from memory
                    if page is not None:
                        yield page
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))  # the line is given separately
        raise BadInputError(path, f"not a well-formed XML dump ({reason})", line=line) from None
    except EOFError:
        raise BadInputError(path, "the bzip2 stream ends early (a truncated download?)") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot decompress the dump ({exc})") from None
    if pages_seen == 0:
        raise BadInputError(path, "holds no <page> elements")


def page_url(base_url: str | None, title: str) -> str | None:
    """The page's address, from siteinfo's <base> (the main page's URL) with the title swapped in."""
    if not base_url or "/" not in base_url:
        return None
    return base_url.rsplit("/", 1)[0] + "/" + quote(title.replace(" ", "_"))


def _page_from_element(page, base_url: str | None) -> DumpPage | None:
    ns = _child_text(page, "ns")
    if ns is not None and ns.strip() != "0":
        return None
    if any(_local(child.tag) == "redirect" for child in page):
        return None
    title = _child_text(page, "title") or ""
    pageid = _child_text(page, "id")
    text = None
    for child in page:
        if _local(child.tag) == "revision":  # --current dumps hold one; with history, the last wins
            text = _child_text(child, "text")
    if ns is None and ":" in title:  # very old dumps have no <ns>; a prefixed title is not an article
        return None
    if not pageid or not pageid.strip().isdigit():
        return None
    return DumpPage(pageid=int(pageid), title=title, wikitext=text or "", url=page_url(base_url, title))


# -- wikitext -> plain text -----------------------------------------------------------------------
def _pick_variant(match: re.Match) -> str:
    """Resolve one `-{...}-`: rules that only define conversions vanish; otherwise the zh-cn text."""
    body = match.group(1)
    flags, bar, rest = body.partition("|")
    if bar and re.fullmatch(r"[A-Za-z\-;\s]+", flags):
        if any(flag in flags.upper() for flag in ("H", "T", "D", "-")):
            return ""  # -{H|...}- and friends set rules for the page; they show nothing here
        body = rest
    pairs = dict(re.findall(r"(zh(?:-[a-z]+)?)\s*:\s*([^;]*)", body))
    if not pairs:
        return body
    for variant in _SIMPLIFIED_VARIANTS:
        if variant in pairs:
            return pairs[variant].strip()
    return next(iter(pairs.values())).strip()


def resolve_conversions(wikitext: str) -> str:
    return _CONVERSION_RE.sub(_pick_variant, wikitext)


def _link_kind(link: Wikilink) -> str:
    """'category', 'drop' (file or interlanguage link) or 'text' for an ordinary link."""
    prefix, sep, _rest = str(link.title).strip().partition(":")
    if not sep:
        return "text"
    prefix = prefix.strip().lower()
    if prefix in CATEGORY_PREFIXES:
        return "category"
    if prefix in MEDIA_PREFIXES or _INTERLANGUAGE_RE.match(prefix):
        return "drop"
    return "text"


def _prune(code, categories: list[str]) -> None:
    """Remove what is not prose from `code` in place, recording the page's category names."""
    kept = []
    for node in code.nodes:
        if isinstance(node, (Template, Heading, Comment)):
            continue
        if isinstance(node, Tag):
            if str(node.tag).strip().lower() in DROP_TAGS:
                continue
            if node.contents is not None:
                _prune(node.contents, categories)
        elif isinstance(node, Wikilink):
            kind = _link_kind(node)
            if kind == "category":
                categories.append(str(node.title).split(":", 1)[1].strip())
                continue
            if kind == "drop":
                continue
            if node.text is not None:
                _prune(node.text, categories)
        kept.append(node)
    code.nodes = kept


def wikitext_to_plain(wikitext: str) -> tuple[str, list[str]]:
    """Wikitext -> (plain text with one paragraph per line, the page's category names)."""
    code = mwparserfromhell.parse(resolve_conversions(wikitext))
    categories: list[str] = []
    _prune(code, categories)
    plain = code.strip_code(normalize=True, collapse=True)
    return _MAGIC_WORD_RE.sub("", plain), categories


# -- conversion, in worker processes or in-process -----------------------------------------------
class PageConverter:
    """Plain text, cleaned sentences and domain for one page; built once per process."""

    def __init__(self, clean: CleanConfig, entries: list[tuple[str, str | None, str | None]]):
        self.cleaner = SentenceCleaner(clean)
        simplify = self.cleaner.to_simplified
        # (domain, keyword, category) with keyword and category in the script the text is compared in
        self.entries = [(domain, simplify(k) if k else None, simplify(c) if c else None) for domain, k, c in entries]

    def domain_for(self, title: str, sentences: list[str], categories: list[str]) -> str:
        simplify = self.cleaner.to_simplified
        page_categories = {simplify(name) for name in categories}
        # a keyword is looked for where a wiki's full-text search finds it: title, text and category links
        text = "\n".join([simplify(title), *sentences, *page_categories])
        for domain, keyword, category in self.entries:
            if (category and category in page_categories) or (keyword and keyword in text):
                return domain
        return GENERAL_DOMAIN

    def convert(self, page: DumpPage) -> tuple[list[str], str, CleaningStats]:
        stats = CleaningStats()
        plain, categories = wikitext_to_plain(page.wikitext)
        sentences = self.cleaner.clean([plain], stats)
        return sentences, self.domain_for(page.title, sentences, categories), stats


# Each pool worker builds its converter once (OpenCC's dictionaries load slowly) in the
# initializer; this per-process slot is only ever set inside worker processes.
_worker_converter: PageConverter | None = None


def _init_worker(clean: CleanConfig, entries) -> None:
    global _worker_converter
    _worker_converter = PageConverter(clean, entries)


def _convert_in_worker(page: DumpPage):
    return _worker_converter.convert(page)


def _as_item(page: DumpPage, result, stats: CleaningStats) -> tuple[RawDocument, list[str]]:
    sentences, domain, page_stats = result
    stats.add(page_stats)
    raw = RawDocument(id=f"wiki-{page.pageid}", title=page.title, source="wiki-dump", domain=domain, url=page.url)
    return raw, sentences


def _batches(pages: Iterator[DumpPage], size: int) -> Iterator[list[DumpPage]]:
    batch = []
    for page in pages:
        batch.append(page)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cleaned_dump_documents(path, clean: CleanConfig, stats: CleaningStats, workers: int | None = None,
                           keywords_path=None) -> Iterator[tuple[RawDocument, list[str]]]:
    """(raw document, cleaned sentences) for each article of the dump, in dump order.

    workers: processes converting wikitext (None: os.cpu_count()); 1 converts in this process.
    keywords_path: the domain keywords JSON (None: the packaged one), as for wiki-api.
    """
    from bertstudy.corpus.sources.wiki_api import load_keywords  # the keywords format is wiki-api's

    entries = [(e.domain, e.keyword, e.category) for e in load_keywords(keywords_path)[0]]
    pages = iter_dump_pages(path)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        converter = PageConverter(clean, entries)
        for page in pages:
            yield _as_item(page, converter.convert(page), stats)
        return
    with multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=(clean, entries)) as pool:
        in_flight: deque = deque()
        for batch in _batches(pages, BATCH_PAGES):
            chunk = max(1, len(batch) // workers)
            in_flight.append((batch, pool.map_async(_convert_in_worker, batch, chunksize=chunk)))
            while len(in_flight) > BATCHES_IN_FLIGHT:
                done, results = in_flight.popleft()
                yield from (_as_item(page, result, stats) for page, result in zip(done, results.get()))
        while in_flight:
            done, results = in_flight.popleft()
            yield from (_as_item(page, result, stats) for page, result in zip(done, results.get()))
