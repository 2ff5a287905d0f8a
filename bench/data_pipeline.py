"""Data-pipeline figures for bench/throughput.py: how long one global batch takes to build on one
core (thread CPU time, so other processes' load does not count), and how much of it is padding,
for the packed batches the trainer uses and for the plain one-instance-per-row layout."""

from __future__ import annotations

import statistics
import time


from bertstudy.corpus.corpus_io import load_documents
from bertstudy.pretraining.loader import step_micro_batches
from bertstudy.pretraining.packing import collate_padded, padding_fraction
from bertstudy.pretraining.heldout_split import split_documents
from bertstudy.pretraining.instances import InstanceSampler, training_instances
from bertstudy.pretraining.token_cache import load_or_build_cache
from bertstudy.training.config import TrainConfig
from bertstudy.pretraining.vocab import build_vocab


def corpus_sampler(config: TrainConfig, corpus_path: str, cache_dir: str) -> tuple[InstanceSampler, int]:
    """The training sampler exactly as a run builds it (vocabulary, token cache, held-out split)."""
    documents = load_documents(corpus_path)
    vocab = build_vocab((s for d in documents for s in d.sentences), config.min_freq)
    corpus, _, _ = load_or_build_cache(documents, corpus_path, vocab, cache_dir, config.wwm)
    train, _ = split_documents(corpus, config.heldout_fraction, config.seed)
    sampler = InstanceSampler(corpus, train, len(vocab), config.max_seq_len, config.mask_rate, config.max_predictions,
                              config.short_seq_prob, config.wwm)
    return sampler, len(vocab)


def _plain_step(sampler: InstanceSampler, seed: int, step: int, batch_size: int, grad_accum: int) -> list[dict]:
    instances = training_instances(sampler, seed, step, 0, batch_size * grad_accum)
    return [collate_padded(instances[m * batch_size:(m + 1) * batch_size], sampler.max_seq_len) for m in range(grad_accum)]


def build_figures(sampler: InstanceSampler, config: TrainConfig, num_steps: int = 20) -> dict:
    """Median thread-CPU milliseconds per global batch (batch_size x grad_accum instances, one process)
    and the padding share of computed positions, packed (the trainer's) vs plain padded rows."""
    result = {"batch_size": config.batch_size, "grad_accum": config.grad_accum, "max_seq_len": config.max_seq_len,
              "steps_measured": num_steps, "clock": "time.thread_time (one core's CPU time)"}
    for name, build in (("packed", lambda s: step_micro_batches(sampler, config.seed, s, 0, config.batch_size,
                                                                 config.grad_accum)),
                        ("plain", lambda s: _plain_step(sampler, config.seed, s, config.batch_size, config.grad_accum))):
        build(10_000)  # first-touch of the memory-mapped token cache
        times, batches = [], []
        for step in range(num_steps):
            started = time.thread_time()
            micro = build(step)
            times.append(time.thread_time() - started)
            batches += micro
        result[name] = {"build_ms": 1000 * statistics.median(times), "build_ms_max": 1000 * max(times),
                        "padding": padding_fraction(batches),
                        "rows_per_step": sum(len(b["input_ids"]) for b in batches) / num_steps}
    return result
