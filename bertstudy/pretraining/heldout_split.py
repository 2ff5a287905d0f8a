"""Which documents a training run holds out: chosen by `split_documents`, recorded so later stages can
avoid leakage.

`split_documents` picks the held-out documents (never trained on) by a seeded permutation of the
documents with text; `few_documents_warning` says when a split is too small to learn from or measure on.
The run writes `heldout_documents.json` into its folder: the corpus it split (path and sha256),
the seed and fraction, and the ids of the held-out documents. A probe that tests on text the
model never trained on reads it back (`read_split`). Runs older than this file can still tell
their split when the corpus they name is unchanged: `split_documents` is a pure function of
(which documents have text, fraction, seed), so `recompute_split` redoes it and checks the hash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertstudy.base.atomic_io import atomic_write_json, read_json
from bertstudy.base.errors import BadInputError, StudyError
from bertstudy.base.run_files import SPLIT_NAME
from bertstudy.pretraining.token_cache import TokenizedCorpus

SPLIT_FORMAT = "chinese-bert-correlation/heldout-split-v1"
FEW_DOCUMENTS = 20  # below this a run can neither learn much nor measure it: said, not refused (tests train on fewer)


def few_documents_warning(train_docs, heldout_docs) -> str | None:
    """A warning for a split too small to learn from or to measure on; None otherwise."""
    total = len(train_docs) + len(heldout_docs)
    if total >= FEW_DOCUMENTS:
        return None
    return (f"warning: the corpus has only {total} documents with text ({len(train_docs)} to train on, "
            f"{len(heldout_docs)} held out): too few to learn from, and the held-out accuracy of {len(heldout_docs)} "
            f"document(s) is mostly noise; the embedded corpus (make quickstart) has thousands")


def split_documents(corpus: TokenizedCorpus, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out documents (never trained on) chosen by a seeded permutation; returns (train, heldout) ids."""
    nonempty = np.flatnonzero(corpus.document_token_counts() > 0)
    if len(nonempty) < 2:
        message = (f"has {len(nonempty)} document(s) with text; NSP and a held-out split need at least 2 "
                   "(one JSON object per document, each with its own sentences)")
        source = getattr(corpus, "source", None)
        raise BadInputError(source, message) if source else StudyError(f"the corpus {message}", exit_code=3)
    num_heldout = min(len(nonempty) - 1, max(1, round(heldout_fraction * len(nonempty))))
    order = np.random.default_rng([seed, 7]).permutation(nonempty)
    return np.sort(order[num_heldout:]), np.sort(order[:num_heldout])


class _TokenCounts:
    """What split_documents reads of a TokenizedCorpus: tokens per document. Every non-space
    character becomes one token ([UNK] included), so counting them needs no vocabulary."""

    def __init__(self, documents):
        self.counts = np.asarray([sum(not c.isspace() for s in d.sentences for c in s) for d in documents])

    def document_token_counts(self) -> np.ndarray:
        return self.counts


def split_record(documents, heldout_indices, corpus_path, corpus_sha256: str, seed: int, fraction: float) -> dict:
    return {"format": SPLIT_FORMAT, "corpus": str(corpus_path), "corpus_sha256": corpus_sha256, "seed": seed,
            "heldout_fraction": fraction, "documents": len(documents),
            "heldout_ids": [documents[int(i)].id for i in heldout_indices]}


def write_split(out_dir, record: dict) -> Path:
    path = Path(out_dir) / SPLIT_NAME
    atomic_write_json(path, record, indent=None)
    return path


def recompute_split(documents, seed: int, fraction: float) -> list[str]:
    """The held-out ids split_documents picks for these documents (the run's corpus, in its order)."""
    _, heldout = split_documents(_TokenCounts(documents), fraction, seed)
    return [documents[int(i)].id for i in heldout]


def read_split(run_dir, history_meta: dict | None = None) -> dict:
    """The run's split record: its heldout_documents.json, or one recomputed from the corpus its
    history names when that corpus is unchanged. Refuses (BadInputError) when neither is possible."""
    run_dir = Path(run_dir)
    path = run_dir / SPLIT_NAME
    if path.is_file():
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != SPLIT_FORMAT or not isinstance(record.get("heldout_ids"), list):
            raise BadInputError(path, f"not a {SPLIT_FORMAT} file")
        return record
    meta = history_meta or {}
    corpus = (meta.get("corpus") or {})
    config = meta.get("config") or {}
    corpus_path, sha = corpus.get("path"), corpus.get("sha256")
    if not corpus_path or not sha or "seed" not in config or "heldout_fraction" not in config:
        raise BadInputError(run_dir, f"the run cannot tell which documents it held out (no {SPLIT_NAME}, and its "
                                     "history names no corpus hash, seed and held-out fraction); retrain it with this version")
    from bertstudy.corpus.corpus_io import load_documents
    from bertstudy.base.hashing import file_sha256

    if not Path(corpus_path).is_file() or file_sha256(corpus_path) != sha:
        raise BadInputError(run_dir, f"the run has no {SPLIT_NAME} and its corpus {corpus_path} is missing or changed "
                                     f"(sha256 {sha[:12]} recorded), so its held-out split cannot be recomputed")
    documents = load_documents(corpus_path)
    seed = config.get("split_seed", config["seed"])  # a run from before split_seed split with its seed
    return {"format": SPLIT_FORMAT, "corpus": corpus_path, "corpus_sha256": sha, "seed": seed,
            "heldout_fraction": config["heldout_fraction"], "documents": len(documents),
            "heldout_ids": recompute_split(documents, seed, config["heldout_fraction"]), "recomputed": True}
