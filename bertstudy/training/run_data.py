"""A run's data: the vocabulary, the token cache, the held-out split, the training and held-out
samplers, the shortcut levels, and the micro-batch shape under --compile. Nothing is written in the
run folder here (run_folder.py does that)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from bertstudy.base.errors import BadInputError
from bertstudy.base.hashing import file_sha256
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.pretraining.heldout_split import few_documents_warning, split_documents, split_record
from bertstudy.pretraining.instances import InstanceSampler
from bertstudy.pretraining.loader import plan_step_buckets
from bertstudy.pretraining.packing import RowBuckets
from bertstudy.pretraining.shortcut import corpus_shortcut, training_id_counts
from bertstudy.pretraining.token_cache import load_or_build_cache
from bertstudy.pretraining.vocab import Vocab, build_vocab
from bertstudy.training.config import CUDA_GRAPH_MODES, TrainConfig
from bertstudy.training.device import Distributed, agree_or_fail


@dataclass
class PreparedData:
    vocab: Vocab
    train_sampler: InstanceSampler
    eval_sampler: InstanceSampler
    corpus_sha256: str
    train_documents: int
    heldout_documents: int
    corpus_tokens: int
    split: dict  # which documents are held out, by id (heldout_split.py), written with the run's outputs
    shortcut: dict  # the no-context accuracies the training documents' characters predict (shortcut.py)
    id_counts: np.ndarray  # each token id's count in the training documents (the shortcut's and --mlm-bias-init's)


def prepare_data(config: TrainConfig, dist: Distributed) -> PreparedData:
    """Vocabulary, token cache, held-out split and the two samplers (nothing written in out_dir yet)."""
    documents = load_documents(config.corpus)
    vocab = build_vocab((s for d in documents for s in d.sentences), config.min_freq)
    corpus, failure = None, None
    if dist.is_main:  # rank 0 builds the cache; the others then read it
        try:
            corpus, _, _ = load_or_build_cache(documents, config.corpus, vocab, config.cache_dir, config.wwm)
        except Exception as exc:  # noqa: BLE001 - raised again after the others heard of it
            failure = exc
    agree_or_fail(failure, dist, "building the token cache")  # the others stop now, not at the timeout
    if corpus is None:
        corpus, _, _ = load_or_build_cache(documents, config.corpus, vocab, config.cache_dir, config.wwm)
    train_docs, heldout_docs = split_documents(corpus, config.heldout_fraction, config.split_seed)
    warning = few_documents_warning(train_docs, heldout_docs)
    if warning and dist.is_main:
        print(warning, file=sys.stderr)
    corpus_sha256 = file_sha256(config.corpus)
    split = split_record(documents, heldout_docs, config.corpus, corpus_sha256, config.split_seed,
                         config.heldout_fraction)
    common = dict(vocab_size=len(vocab), max_seq_len=config.max_seq_len, max_predictions=config.max_predictions,
                  short_seq_prob=config.short_seq_prob, wwm=config.wwm)
    # the held-out instances are masked at eval_mask_rate (BERT's 15%) whatever rate training uses
    train_sampler = InstanceSampler(corpus, train_docs, mask_rate=config.mask_rate, **common)
    eval_sampler = InstanceSampler(corpus, heldout_docs, mask_rate=config.eval_mask_rate, **common)
    id_counts = training_id_counts(corpus, train_docs, len(vocab))
    return PreparedData(vocab, train_sampler, eval_sampler, corpus_sha256, len(train_docs), len(heldout_docs),
                        int(len(corpus.tokens)), split, corpus_shortcut(corpus, train_docs, vocab, id_counts), id_counts)


def check_same_corpus(state: dict, data: PreparedData, config: TrainConfig) -> None:
    saved = state["history"]["meta"].get("corpus", {}).get("sha256")
    if saved and saved != data.corpus_sha256:
        raise BadInputError(config.corpus, f"is not the corpus the run was trained on (sha256 {saved[:12]}, this "
                                           f"file's {data.corpus_sha256[:12]}); resume with that run's --corpus")


def step_shape(config: TrainConfig, sampler: InstanceSampler, rank: int) -> RowBuckets | None:
    """The micro-batch shape of a run (None without --compile). In a CUDA-graph mode (one micro-batch per step:
    check_cuda_graph_split) up to 4 row buckets whose largest holds any step (packing.plan_row_buckets):
    no step needs a second micro-batch, at most 4 graphs. Otherwise None: the micro-batches are packed
    as in an eager run, and the trainer marks their first dimension dynamic, so one compiled graph takes
    every row count with no padding rows and no extra micro-batch."""
    if config.compile and config.compile_mode in CUDA_GRAPH_MODES:
        return plan_step_buckets(sampler, config.seed, rank, config.batch_size)
    return None
