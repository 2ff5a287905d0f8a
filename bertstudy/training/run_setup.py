"""A run's set-up, everything before its first step: data, model, the device's batch split, the
trainer, a checkpoint's state when resuming, the run folder's first files, the history and the log.
run.py then reads top to bottom: set_up -> step_loop -> finish."""

from __future__ import annotations

import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bertstudy.base.atomic_io import atomic_write_json
from bertstudy.base.errors import BadInputError
from bertstudy.base.run_files import (CHECKPOINT_DIR_NAME, HISTORY_NAME, LOG_NAME, RESOLVED_CONFIG_NAME, SPLIT_NAME,
                                      VOCAB_NAME)
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.heldout_split import split_record, write_split
from bertstudy.base.hashing import file_sha256
from bertstudy.pretraining.instances import (InstanceSampler, few_documents_warning, load_or_build_cache,
                                            split_documents)
from bertstudy.pretraining.loader import batch_to_device, eval_micro_batches, plan_step_buckets, plan_step_shape
from bertstudy.pretraining.packing import FixedShape, RowBuckets
from bertstudy.pretraining.shortcut import corpus_shortcut, training_id_counts, unigram_log_frequencies
from bertstudy.pretraining.vocab import Vocab, build_vocab, save_vocab
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training.batch_fit import resolve_batch_split
from bertstudy.training.config import (ARCHITECTURE_FIELDS, CUDA_GRAPH_MODES, TrainConfig,
                                       check_cuda_graph_split)
from bertstudy.training.device import Distributed, agree_or_fail, autocast_context, precision_settings
from bertstudy.training.run_folder import StartPlan
from bertstudy.training.run_log import HistoryFile, RunLog, new_history, truncate_history
from bertstudy.training.trainer import Stopwatch, Trainer, model_config_for


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


def _check_same_corpus(state: dict, data: PreparedData, config: TrainConfig) -> None:
    saved = state["history"]["meta"].get("corpus", {}).get("sha256")
    if saved and saved != data.corpus_sha256:
        raise BadInputError(config.corpus, f"is not the corpus the run was trained on (sha256 {saved[:12]}, this "
                                           f"file's {data.corpus_sha256[:12]}); resume with that run's --corpus")



@dataclass
class Run:
    """What set-up hands to the step loop and the finish: one record instead of closures over locals."""

    config: TrainConfig  # with the batch split resolved for the device
    dist: Distributed
    data: PreparedData
    model: BertForPretraining
    model_config: BertConfig
    trainer: Trainer
    history: dict
    log: RunLog | None  # rank 0 only
    resumed: bool
    step: int  # the next step to train; after the loop, the steps done
    milestone_steps: set[int]
    eval_batches: list  # rank 0's fixed held-out batches, on the device
    clock: Stopwatch
    history_file: HistoryFile | None = None  # rank 0: when the history JSON is rewritten (run_log.HistoryFile)

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR_NAME


# ---- set-up: data, model, batch split, trainer, resumed state, the run folder, history and log

def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_mlm_bias(model: BertForPretraining, id_counts: np.ndarray) -> None:
    """`--mlm-bias-init unigram`: the MLM output bias set to the training characters' log add-one frequencies
    (shortcut.unigram_log_frequencies), so a fresh model already answers with the most frequent character."""
    bias = torch.as_tensor(unigram_log_frequencies(id_counts), dtype=model.mlm_bias.dtype)
    with torch.no_grad():
        model.mlm_bias.copy_(bias.to(model.mlm_bias.device))


def _build_trainer(config: TrainConfig, data: PreparedData, dist: Distributed):
    """The model (the same initial weights on every rank), the device's batch split, then the Trainer."""
    _seed_all(config.seed)
    model_config = model_config_for(config, len(data.vocab))
    model = BertForPretraining(model_config).to(dist.device)
    torch.manual_seed(config.seed + dist.rank)  # dropout streams differ per rank
    amp_dtype, _ = precision_settings(dist.device, config.amp)
    config = resolve_batch_split(config, model, len(data.vocab), dist.device,  # the split follows a GPU
                                 lambda: autocast_context(dist.device, amp_dtype), verbose=dist.is_main, dist=dist)
    check_cuda_graph_split(config)  # the probe may have chosen accumulation (a small card)
    return config, model_config, model, Trainer(config, model, data.train_sampler, dist)


def _restore(state: dict, plan: StartPlan, config: TrainConfig, data: PreparedData, model, trainer: Trainer,
             dist: Distributed) -> tuple[int, float, dict]:
    """Load a checkpoint into model, optimizer and RNGs; (start step, elapsed seconds, history up to it)."""
    ckpt.check_compatible(state, plan.path, config.to_dict(), data.vocab.hash, ARCHITECTURE_FIELDS)
    _check_same_corpus(state, data, config)
    model.load_state_dict(state["model"])
    trainer.load_state(state)
    ckpt.restore_rng_states(ckpt.rank_rng_states(state, dist.rank), dist.device)
    if dist.is_main:
        print(f"resuming from {plan.path} (step {state['step']})", file=sys.stderr)
    return state["step"], state["elapsed_s"], truncate_history(state["history"], state["step"])


def _prepare_out_dir(config: TrainConfig, data: PreparedData, resumed: bool, overwrite: bool) -> None:
    """Rank 0, once the inputs are valid: from here on the run writes into out_dir."""
    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR_NAME
    if not resumed and overwrite:
        stale = ckpt.list_checkpoints(checkpoint_dir)
        if stale:  # --overwrite: old checkpoints would otherwise win a later --resume
            print(f"note: --overwrite: removing {len(stale)} checkpoint(s) of an earlier run in {checkpoint_dir}",
                  file=sys.stderr)
        # and an earlier run's milestones would mix two runs in a probe
        for _, path in stale + ms.list_milestones(checkpoint_dir):
            path.unlink(missing_ok=True)
    save_vocab(data.vocab, out_dir / VOCAB_NAME)
    write_split(out_dir, data.split)  # probes test only on the held-out documents


def _new_history(config: TrainConfig, data: PreparedData, model, dist: Distributed, milestone_steps) -> dict:
    return new_history({
        "preset": config.preset, "config": config.to_dict(), "total_steps": config.steps,
        "vocab_size": len(data.vocab), "vocab_hash": data.vocab.hash,
        "corpus": {"path": str(config.corpus), "sha256": data.corpus_sha256, "tokens": data.corpus_tokens,
                   "train_documents": data.train_documents, "heldout_documents": data.heldout_documents,
                   "heldout_split": SPLIT_NAME},
        "milestones": sorted(milestone_steps), "shortcut": data.shortcut,
        "parameters": model.num_parameters(), "device": str(dist.device), "world_size": dist.world_size,
        "global_batch": config.global_batch * dist.world_size, "torch": str(torch.__version__),
        "python": platform.python_version(), "started_at": time.time(), "finished_at": None,
        "nonfinite_skipped": 0,
    })


def _open_log(config: TrainConfig, model_config: BertConfig, dist: Distributed, start_step: int,
              resumed_from: int | None) -> RunLog:
    out_dir = Path(config.out_dir)
    atomic_write_json(out_dir / RESOLVED_CONFIG_NAME, {**config.to_dict(), "model": asdict(model_config),
                                                       "world_size": dist.world_size})
    log = RunLog(out_dir / LOG_NAME, resume_step=start_step if resumed_from is not None else None)
    log.write("start", total_steps=config.steps, preset=config.preset, resumed_from=resumed_from,
              config=config.to_dict())
    return log


def step_shape(config: TrainConfig, data: PreparedData, rank: int) -> FixedShape | RowBuckets:
    """The micro-batch shape under --compile: one fixed shape planned from the run's first steps, or in a
    CUDA-graph mode (one micro-batch per step: check_cuda_graph_split) up to 4 row buckets whose largest
    holds any step (packing.plan_row_buckets): no step needs a second micro-batch, at most 4 graphs."""
    if config.compile_mode in CUDA_GRAPH_MODES:
        return plan_step_buckets(data.train_sampler, config.seed, rank, config.batch_size)
    return plan_step_shape(data.train_sampler, config.seed, rank, config.batch_size, config.grad_accum)


def set_up(plan: StartPlan, dist: Distributed, overwrite: bool) -> Run:
    """Everything before the first step; a resumed run continues exactly where its checkpoint stopped."""
    config, state = plan.config, plan.state
    plan.state = None  # loaded below; do not keep a second copy alive
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config, dist)
    config, model_config, model, trainer = _build_trainer(config, data, dist)
    start_step, elapsed, history = 0, 0.0, None
    if state is not None:  # the checkpoint's weights, the bias included
        start_step, elapsed, history = _restore(state, plan, config, data, model, trainer, dist)
        del state
    elif config.mlm_bias_init == "unigram":  # a fresh start only; the same counts on every rank
        init_mlm_bias(model, data.id_counts)
    resumed = history is not None
    if dist.is_main:
        _prepare_out_dir(config, data, resumed, overwrite)
    milestone_steps = set(ms.milestone_steps(config.milestones, config.steps))
    if config.compile:  # one shape: compiled once, one CUDA graph (it costs ~10 points of padding: packing.py)
        trainer.shape = step_shape(config, data, dist.rank)
    trainer.wrap()
    history = history or _new_history(config, data, model, dist, milestone_steps)
    history["meta"]["total_steps"] = config.steps
    history["meta"].setdefault("shortcut", data.shortcut)  # a run begun before the field gains it on resume
    eval_batches = [batch_to_device(b, dist.device) for b in eval_micro_batches(
        data.eval_sampler, config.split_seed, config.eval_instances, config.batch_size)] if dist.is_main else []
    log = _open_log(config, model_config, dist, start_step, start_step if resumed else None) if dist.is_main else None
    history_file = HistoryFile(Path(config.out_dir) / HISTORY_NAME) if dist.is_main else None
    return Run(config, dist, data, model, model_config, trainer, history, log, resumed, start_step, milestone_steps,
               eval_batches, Stopwatch(elapsed), history_file)
