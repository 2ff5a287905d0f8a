"""`across_models.py prepare`: the pretraining corpus without the test items, and the split file that the
probe pass reads back (which articles and reviews are test items, and the hashes that pin the data)."""

from __future__ import annotations

from pathlib import Path

from bertstudy.across_models import splits
from bertstudy.base.atomic_io import atomic_write_json, read_json
from bertstudy.base.errors import UsageError
from bertstudy.base.hashing import file_sha256
from bertstudy.corpus.corpus_io import load_documents, write_documents
from bertstudy.downstream.tasks import read_reviews, read_segmentation

SPLIT_FORMAT = "chinese-bert-correlation/across-models-split-v1"
CORPUS_NAME, SPLIT_NAME = "corpus.jsonl", "split.json"


def prepare(source_corpus: Path, out_dir: Path, task_data=None, seg_lines: int = splits.SEG_TEST_LINES,
            review_count: int = splits.REVIEW_TEST_COUNT, overwrite: bool = False) -> dict:
    """Write out_dir/corpus.jsonl (source_corpus less every test document) and out_dir/split.json. A split
    already there from another source corpus is kept (runs may have trained on it) unless `overwrite`."""
    before = out_dir / SPLIT_NAME
    if before.exists() and not overwrite:
        old = read_json(before)
        if not isinstance(old, dict) or old.get("source_corpus_sha256") != file_sha256(source_corpus) \
                or old.get("split_key") != splits.SPLIT_KEY:
            raise UsageError(f"{before} was made from another corpus or split key, and runs may have trained on its "
                             f"corpus; give --overwrite to replace it (then train new runs)")
    articles = splits.segmentation_test_articles(read_segmentation(task_data), seg_lines)
    reviews = splits.test_reviews(read_reviews(task_data), review_count)
    excluded = splits.excluded_ids(articles, reviews)
    kept, dropped = splits.pretraining_documents(load_documents(source_corpus), excluded)
    corpus = out_dir / CORPUS_NAME
    write_documents(corpus, kept)
    split = {"format": SPLIT_FORMAT, "split_key": splits.SPLIT_KEY,
             "source_corpus": str(source_corpus), "source_corpus_sha256": file_sha256(source_corpus),
             "corpus": str(corpus), "corpus_sha256": file_sha256(corpus),
             "documents_kept": len(kept), "documents_dropped": dropped,
             "segmentation_test_articles": articles,
             "test_reviews": [review.doc_ids[0] for review in reviews]}
    atomic_write_json(out_dir / SPLIT_NAME, split)
    return split
