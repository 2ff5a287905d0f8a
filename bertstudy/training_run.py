"""One training run from corpus to final model: data, resume, the step loop, logs, checkpoints, export.

Order per step (nanoGPT's): update -> log point (rank 0) -> held-out eval (rank 0) -> checkpoint.
A checkpoint at step s therefore holds the history up to and including s, and the RNG states as
they are just before step s+1, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import platform
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from . import checkpoint as ckpt
from . import milestones as ms
from .atomic_io import atomic_write_json
from .corpus_io import load_documents
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, StudyError
from .heldout_split import SPLIT_NAME, split_record, write_split
from .model import BertForPretraining
from .pretraining_data import (InstanceSampler, fixed_eval_batches, file_sha256, load_or_build_cache,
                               split_documents)
from .run_log import HISTORY_NAME, LOG_NAME, RunLog, add_eval_point, add_train_point, new_history, \
    truncate_history, write_history
from .train_config import ARCHITECTURE_FIELDS, TrainConfig
from .trainer import Distributed, Stopwatch, Trainer, model_config_for, setup_distributed, teardown_distributed, \
    to_device
from .vocab import Vocab, build_vocab, save_vocab

RESOLVED_CONFIG_NAME = "resolved_config.json"
EXPORT_DIR_NAME = "export_hf"


@dataclass
class PreparedData:
    vocab: Vocab
    train_sampler: InstanceSampler
    eval_sampler: InstanceSampler
    corpus_sha256: str
    train_documents: int
    heldout_documents: int
    corpus_tokens: int


def prepare_data(config: TrainConfig, dist: Distributed) -> PreparedData:
    """Vocabulary (written by rank 0), token cache, held-out split and the two samplers."""
    documents = load_documents(config.corpus)
    vocab = build_vocab((s for d in documents for s in d.sentences), config.min_freq)
    if dist.is_main:
        save_vocab(vocab, Path(config.out_dir) / "vocab.txt")
    for turn in ("main", "others") if dist.enabled else ("main",):
        if (turn == "main") == dist.is_main:  # rank 0 builds the cache; the others then read it
            corpus, _, _ = load_or_build_cache(documents, config.corpus, vocab, config.cache_dir, config.wwm)
        if dist.enabled:
            torch_dist.barrier()
    train_docs, heldout_docs = split_documents(corpus, config.heldout_fraction, config.seed)
    corpus_sha256 = file_sha256(config.corpus)
    if dist.is_main:  # which documents were held out, by id: probes test only on those (heldout_split.py)
        write_split(config.out_dir, split_record(documents, heldout_docs, config.corpus, corpus_sha256,
                                                 config.seed, config.heldout_fraction))
    common = dict(vocab_size=len(vocab), max_seq_len=config.max_seq_len, mask_rate=config.mask_rate,
                  max_predictions=config.max_predictions, short_seq_prob=config.short_seq_prob, wwm=config.wwm)
    return PreparedData(vocab, InstanceSampler(corpus, train_docs, **common), InstanceSampler(corpus, heldout_docs, **common),
                        corpus_sha256, len(train_docs), len(heldout_docs), int(len(corpus.tokens)))


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the end of the current step and exits 130."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _agree(flag: bool, dist: Distributed) -> bool:
    """Any rank asking to stop stops them all at the same step."""
    if not dist.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return value.item() > 0


def _load_resume_state(resume: str, checkpoint_dir: Path):
    if resume != "auto":
        return ckpt.load_checkpoint(resume), Path(resume)
    return ckpt.find_resume_checkpoint(checkpoint_dir)


def run_training(config: TrainConfig, resume: str | None = None) -> int:
    """Train per `config`; resume: None (fresh), "auto" (newest valid checkpoint) or a checkpoint path."""
    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / ckpt.CHECKPOINT_DIR_NAME
    dist = setup_distributed(config.device)
    try:
        return _train(config, resume, dist, out_dir, checkpoint_dir)
    finally:
        teardown_distributed(dist)


def _train(config: TrainConfig, resume: str | None, dist: Distributed, out_dir: Path, checkpoint_dir: Path) -> int:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config, dist)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model_config = model_config_for(config, len(data.vocab))
    model = BertForPretraining(model_config).to(dist.device)
    torch.manual_seed(config.seed + dist.rank)  # dropout streams differ per rank
    trainer = Trainer(config, model, data.train_sampler, dist)
    vocab_hash = data.vocab.hash

    start_step, elapsed, history, resumed_from = 0, 0.0, None, None
    found = _load_resume_state(resume, checkpoint_dir) if resume else None
    if resume and found is None:
        print(f"note: no checkpoint in {checkpoint_dir}; starting from step 0", file=sys.stderr)
    if found:
        state, path = found
        ckpt.check_compatible(state, path, config.to_dict(), vocab_hash, ARCHITECTURE_FIELDS)
        model.load_state_dict(state["model"])
        trainer.load_state(state)
        ckpt.restore_rng_states(state["rng"])
        start_step, elapsed, resumed_from = state["step"], state["elapsed_s"], state["step"]
        history = truncate_history(state["history"], start_step)
        if dist.is_main:
            print(f"resuming from {path} (step {start_step})", file=sys.stderr)
    if not found and dist.is_main:
        stale = ckpt.list_checkpoints(checkpoint_dir)
        if stale:  # a fresh run restarts the log too; old checkpoints would otherwise win a later --resume
            print(f"note: a fresh run: removing {len(stale)} checkpoint(s) of an earlier run in {checkpoint_dir}",
                  file=sys.stderr)
            for _, path in stale:
                path.unlink(missing_ok=True)
    if not found and dist.is_main:  # an earlier run's milestones would mix two runs in a probe
        for _, path in ms.list_milestones(checkpoint_dir):
            path.unlink(missing_ok=True)
    milestone_steps = set(ms.milestone_steps(config.milestones, config.steps))
    trainer.wrap()
    if history is None:
        history = new_history({
            "preset": config.preset, "config": config.to_dict(), "total_steps": config.steps,
            "vocab_size": len(data.vocab), "vocab_hash": vocab_hash,
            "corpus": {"path": str(config.corpus), "sha256": data.corpus_sha256, "tokens": data.corpus_tokens,
                       "train_documents": data.train_documents, "heldout_documents": data.heldout_documents,
                       "heldout_split": SPLIT_NAME},
            "milestones": sorted(milestone_steps),
            "parameters": model.num_parameters(), "device": str(dist.device), "world_size": dist.world_size,
            "global_batch": config.global_batch * dist.world_size, "torch": str(torch.__version__),
            "python": platform.python_version(), "started_at": time.time(), "finished_at": None,
            "nonfinite_skipped": 0,
        })
    history["meta"]["total_steps"] = config.steps
    eval_batches = [to_device(b, dist.device) for b in fixed_eval_batches(
        data.eval_sampler, config.seed, config.eval_instances, config.batch_size)] if dist.is_main else []

    log = None
    if dist.is_main:
        atomic_write_json(out_dir / RESOLVED_CONFIG_NAME, {**config.to_dict(), "model": asdict(model_config),
                                                           "world_size": dist.world_size})
        log = RunLog(out_dir / LOG_NAME, resume_step=start_step if found else None)
        log.write("start", total_steps=config.steps, preset=config.preset, resumed_from=resumed_from,
                  config=config.to_dict())
    history_path = out_dir / HISTORY_NAME

    def save(step: int) -> None:
        if not dist.is_main:
            return
        history["meta"]["nonfinite_skipped"] = trainer.nonfinite_total
        path = ckpt.checkpoint_path(checkpoint_dir, step)
        ckpt.save_checkpoint(path, {
            "format": ckpt.CHECKPOINT_FORMAT, "step": step, "model": model.state_dict(), **trainer.state(),
            "rng": ckpt.capture_rng_states(), "config": config.to_dict(), "vocab_hash": vocab_hash,
            "history": history, "elapsed_s": clock.elapsed(),
            "data_position": {"next_step": step, "seed": config.seed, "batch_size": config.batch_size,
                              "grad_accum": config.grad_accum, "world_size": dist.world_size},
        })
        log.write("checkpoint", step=step, path=str(path))
        ckpt.prune_checkpoints(checkpoint_dir, config.keep_last)

    def evaluate(step: int) -> dict | None:
        result = trainer.evaluate(eval_batches)
        if not all(math.isfinite(value) for value in result.values()):
            # JSON has no NaN; a diverged model's eval is left out (the non-finite stop follows)
            print(f"warning: held-out eval at step {step} is non-finite ({result}); not recorded", file=sys.stderr)
            return None
        add_eval_point(history, log.write("eval", step=step, **result))
        write_history(history_path, history)
        return result

    def save_milestone(step: int, heldout: dict | None) -> None:
        """Weights for probing at a milestone step, with that step's held-out eval (logged too)."""
        path = ms.milestone_path(checkpoint_dir, step)
        ms.save_milestone(path, step, model.state_dict(), asdict(model_config), config.to_dict(), vocab_hash, heldout)
        log.write("milestone", step=step, path=str(path), heldout_mlm_acc=(heldout or {}).get("mlm_acc"),
                  heldout_nsp_acc=(heldout or {}).get("nsp_acc"))

    clock = Stopwatch(elapsed)
    if dist.is_main and not found:
        initial = evaluate(0)  # the untrained model's accuracy: the curve's first point
        if 0 in milestone_steps:
            save_milestone(0, initial)
    stop = StopRequest()
    stop.install()
    bar = tqdm(total=config.steps, initial=start_step, disable=not (dist.is_main and config.progress),
               dynamic_ncols=True, desc="train", file=sys.stderr)
    status, step = "failed", start_step
    step_seconds = 0.0  # time in train_step since the last log point: tokens/s leaves evals and saves out
    try:
        while step < config.steps:
            started = time.monotonic()
            result = trainer.train_step(step)
            step_seconds += time.monotonic() - started
            step += 1
            bar.update(1)
            if trainer.nonfinite_in_a_row >= config.max_nonfinite:
                last = ckpt.list_checkpoints(checkpoint_dir)
                raise StudyError(f"{trainer.nonfinite_in_a_row} non-finite losses in a row (steps "
                                 f"{step - trainer.nonfinite_in_a_row + 1}-{step}); stopped. Last good checkpoint: "
                                 f"{last[-1][1] if last else 'none'}; try a lower --lr", exit_code=EXIT_RUNTIME)
            if step % config.log_interval == 0 or step == config.steps:
                totals = trainer.take_totals()
                if dist.is_main and totals:
                    record = log.write("train", step=step, mlm_acc=totals["mlm_acc"], nsp_acc=totals["nsp_acc"],
                                       loss=totals["loss"], mlm_loss=totals["mlm_loss"], nsp_loss=totals["nsp_loss"],
                                       lr=result.lr, tokens_per_s=totals["tokens"] / max(step_seconds, 1e-9),
                                       elapsed_s=clock.elapsed())
                    add_train_point(history, record)
                    write_history(history_path, history)
                    bar.set_postfix(loss=f"{totals['loss']:.3f}", mlm=f"{totals['mlm_acc']:.3f}")
                step_seconds = 0.0
            evaluated = None
            if dist.is_main and (step % config.eval_interval == 0 or step == config.steps):
                evaluated = evaluate(step)
            if dist.is_main and step in milestone_steps:  # an extra eval when the milestone is off the interval
                save_milestone(step, evaluated if evaluated is not None else evaluate(step))
            stopping = _agree(stop.requested, dist)
            # no periodic checkpoint during a run of non-finite losses: the last one stays the last good one
            if stopping or ((step % config.save_interval == 0 or step == config.steps) and not trainer.nonfinite_in_a_row):
                save(step)
            if stopping:
                status = "interrupted"
                print(f"interrupted: checkpoint saved at step {step}; rerun with --resume", file=sys.stderr)
                return EXIT_INTERRUPTED
        if dist.is_main:
            raw_state = model.state_dict()
            ckpt.save_final_model(out_dir / ckpt.FINAL_MODEL_NAME, raw_state, asdict(model_config), vocab_hash, step)
            from .hf_export import export_pretrained

            export_pretrained(model, data.vocab.tokens, out_dir / EXPORT_DIR_NAME)
            history["meta"]["finished_at"] = time.time()
            history["meta"]["nonfinite_skipped"] = trainer.nonfinite_total
            write_history(history_path, history)
        status = "done"
        return EXIT_OK
    finally:
        bar.close()
        stop.restore()
        if log is not None:
            log.write("end", step=step, status=status)
            log.close()
