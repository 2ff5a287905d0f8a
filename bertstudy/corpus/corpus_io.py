"""The corpus files the pipeline passes along, and the one reader every stage uses.

Two formats are read:
- ours, `data/corpus.jsonl`: one JSON object per line, a document:
  {"id": str, "title": str, "source": str, "domain": str, "url": str | null, "sentences": [str, ...]}
- the original study's single JSON object {"sentences": [...], "vocab": [...], "metadata": {...}}.
  It has no documents, so consecutive sentences are grouped into pseudo-documents of
  ORIGINAL_DOC_SENTENCES; NSP's "true next sentence" is then the adjacent sentence, as the
  original intended, and a held-out split by document stays possible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from bertstudy.base.atomic_io import atomic_writer, iter_jsonl, read_json, read_text_utf8
from bertstudy.base.errors import BadInputError, UsageError

ORIGINAL_DOC_SENTENCES = 64  # pseudo-document size for the original study's flat sentence list
EMBEDDED_CORPUS = Path("data/embedded/corpus.jsonl")  # where make quickstart and study-cpu collect it
REQUIRED_KEYS = ("id", "sentences")


@dataclass
class Document:
    id: str
    sentences: list[str]
    title: str = ""
    source: str = ""
    domain: str = ""
    url: str | None = None
    extra: dict = field(default_factory=dict)  # any other keys a source wrote, kept as they were

    def to_json(self) -> dict:
        record = {k: v for k, v in asdict(self).items() if k != "extra"}
        record.update(self.extra)
        return record


def document_from_json(obj, path, line: int | None) -> Document:
    """Validate one JSONL record; every problem names the file and line."""
    if not isinstance(obj, dict):
        raise BadInputError(path, f"expected a JSON object per line, got {type(obj).__name__}", line=line)
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise BadInputError(path, f"document lacks key(s) {', '.join(missing)}", line=line)
    sentences = obj["sentences"]
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise BadInputError(path, "'sentences' must be a list of strings", line=line)
    for key in ("title", "source", "domain"):
        if key in obj and not isinstance(obj[key], str):
            raise BadInputError(path, f"'{key}' must be a string", line=line)
    if obj.get("url") is not None and not isinstance(obj["url"], str):
        raise BadInputError(path, "'url' must be a string or null", line=line)
    known = {"id", "sentences", "title", "source", "domain", "url"}
    return Document(
        id=str(obj["id"]),
        sentences=sentences,
        title=obj.get("title", ""),
        source=obj.get("source", ""),
        domain=obj.get("domain", ""),
        url=obj.get("url"),
        extra={k: v for k, v in obj.items() if k not in known},
    )


def _is_original_format(path: Path) -> bool:
    """The original format is one JSON object whose first key is not a document's."""
    head = read_text_utf8(path).lstrip()[:4096]
    if not head.startswith("{"):
        return False
    first_line = head.split("\n", 1)[0]
    try:
        json.loads(first_line)
        return False  # a whole object on the first line: JSON Lines
    except json.JSONDecodeError:
        return True


def load_original_dataset(path) -> tuple[list[Document], dict]:
    """Read the original study's {"sentences", "vocab", "metadata"} JSON into pseudo-documents."""
    data = read_json(path)
    if not isinstance(data, dict) or "sentences" not in data:
        raise BadInputError(path, "expected a JSON object with a 'sentences' list (the original study's format)")
    sentences = data["sentences"]
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise BadInputError(path, "'sentences' must be a list of strings")
    docs = []
    for start in range(0, len(sentences), ORIGINAL_DOC_SENTENCES):
        chunk = sentences[start : start + ORIGINAL_DOC_SENTENCES]
        docs.append(Document(id=f"original-{start // ORIGINAL_DOC_SENTENCES:06d}", sentences=chunk, source="original-json"))
    extras = {k: v for k, v in data.items() if k != "sentences"}
    return docs, extras


def missing_corpus_hint(path, flag: str = "") -> str:
    """Where a corpus is when `path` is not: the embedded corpus that make quickstart collected (given as
    `flag` PATH), else how to collect one."""
    collect = f"collect one: python rare_char_fetch.py --source embedded --out {path}"
    if EMBEDDED_CORPUS.is_file() and Path(path).resolve() != EMBEDDED_CORPUS.resolve():
        return f"make quickstart collected the embedded corpus in {EMBEDDED_CORPUS}: give {flag}{EMBEDDED_CORPUS}, or {collect}"
    return f"{collect} (make quickstart collects it into {EMBEDDED_CORPUS})"


def load_documents(path) -> list[Document]:
    """Read a corpus in either format. Raises BadInputError (file and line) on anything malformed."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, f"no such file; {missing_corpus_hint(path)}")
    if path.suffix == ".json" or _is_original_format(path):
        docs, _ = load_original_dataset(path)
    else:
        docs = [document_from_json(obj, path, line) for line, obj in iter_jsonl(path)]
    if not docs:
        raise BadInputError(path, "holds no documents")
    return docs


def write_documents(path, documents: Iterable[Document]) -> int:
    """Write documents as JSON Lines, atomically. Returns the count written."""
    count = 0
    with atomic_writer(path) as handle:
        for doc in documents:
            handle.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def source_kind(source) -> str:
    """'embedded' for embedded:*, else the recorded source (wiki-api, wiki-dump, ...)."""
    text = str(source)
    return "embedded" if text.startswith("embedded:") else text


def corpus_kinds(path) -> set[str] | None:
    """The source kinds of the documents in a corpus file of ours; None when it is not one (or unreadable)."""
    kinds = set()
    try:
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                if not text.strip():
                    continue
                obj = json.loads(text)
                if not isinstance(obj, dict) or "sentences" not in obj or not isinstance(obj.get("source"), str):
                    return None
                kinds.add(source_kind(obj["source"]))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return kinds


def check_corpus_out(path, source: str, overwrite: bool) -> None:
    """Before the collection: an existing --out is replaced only by a collection from the same source
    (every document's recorded `source`: embedded:*, wiki-api or wiki-dump), which can make it again;
    a corpus of another source (a crawl), a mix, or a file that is not a corpus of ours needs --overwrite
    (UsageError, exit 2). An empty file holds nothing to lose."""
    path = Path(path)
    if overwrite or not path.is_file() or path.stat().st_size == 0:
        return
    kinds = corpus_kinds(path)
    if kinds is not None and kinds <= {source}:
        return
    what = f"a corpus from {', '.join(sorted(kinds))}" if kinds else "a file that is not a corpus of ours"
    raise UsageError(f"--out {path} holds {what}, not one this --source {source} collection would make again; "
                     "nothing was written: choose another --out, or add --overwrite to replace it")
