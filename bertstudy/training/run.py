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

from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training.batch_fit import resolve_batch_split
from bertstudy.base.atomic_io import atomic_write_json
from bertstudy.base.run_files import (EXPORT_DIR_NAME, HISTORY_NAME, LOG_NAME, RESOLVED_CONFIG_NAME, SPLIT_NAME,
                                      VOCAB_NAME)
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.training.device import Distributed, setup_distributed, teardown_distributed
from bertstudy.base.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, BadInputError, StudyError
from bertstudy.pretraining.heldout_split import split_record, write_split
from bertstudy.model import BertForPretraining
from bertstudy.pretraining.loader import LoaderClock, batch_to_device, eval_micro_batches, make_step_loader, resolve_workers
from bertstudy.pretraining.instances import InstanceSampler, file_sha256, load_or_build_cache, split_documents
from bertstudy.training.run_folder import StartPlan, plan_start
from bertstudy.training.run_log import RunLog, add_eval_point, add_train_point, new_history, \
    truncate_history, write_history
from bertstudy.training.config import ARCHITECTURE_FIELDS, TrainConfig
from bertstudy.training.trainer import Stopwatch, Trainer, model_config_for
from bertstudy.pretraining.vocab import Vocab, build_vocab, save_vocab



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


def prepare_data(config: TrainConfig, dist: Distributed) -> PreparedData:
    """Vocabulary, token cache, held-out split and the two samplers (nothing written in out_dir yet)."""
    documents = load_documents(config.corpus)
    vocab = build_vocab((s for d in documents for s in d.sentences), config.min_freq)
    for turn in ("main", "others") if dist.enabled else ("main",):
        if (turn == "main") == dist.is_main:  # rank 0 builds the cache; the others then read it
            corpus, _, _ = load_or_build_cache(documents, config.corpus, vocab, config.cache_dir, config.wwm)
        if dist.enabled:
            torch_dist.barrier()
    train_docs, heldout_docs = split_documents(corpus, config.heldout_fraction, config.seed)
    corpus_sha256 = file_sha256(config.corpus)
    split = split_record(documents, heldout_docs, config.corpus, corpus_sha256, config.seed, config.heldout_fraction)
    common = dict(vocab_size=len(vocab), max_seq_len=config.max_seq_len, mask_rate=config.mask_rate,
                  max_predictions=config.max_predictions, short_seq_prob=config.short_seq_prob, wwm=config.wwm)
    return PreparedData(vocab, InstanceSampler(corpus, train_docs, **common), InstanceSampler(corpus, heldout_docs, **common),
                        corpus_sha256, len(train_docs), len(heldout_docs), int(len(corpus.tokens)), split)


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


def run_training(config: TrainConfig, resume: str | None = None, *, given: dict | None = None,
                 overwrite: bool = False, if_possible: bool = False) -> int:
    """Train per `config`. resume: None (a new run), "auto" (the newest valid checkpoint in out_dir) or a
    checkpoint path; given: the flags set on the command line (on resume only some may change the run's
    config); if_possible: a new run when "auto" finds no checkpoint; overwrite: a new run may replace
    another run's files in out_dir. The rules are in run_folder.py."""
    dist = setup_distributed(config.device)
    try:
        try:
            plan = plan_start(config, resume, given or {}, overwrite, if_possible, dist)
        except StudyError as exc:
            if dist.is_main:
                raise
            return exc.exit_code  # rank 0 prints the one line
        return _train(plan, dist, overwrite)
    finally:
        teardown_distributed(dist)


def _check_same_corpus(state: dict, data: PreparedData, config: TrainConfig) -> None:
    saved = state["history"]["meta"].get("corpus", {}).get("sha256")
    if saved and saved != data.corpus_sha256:
        raise BadInputError(config.corpus, f"is not the corpus the run was trained on (sha256 {saved[:12]}, this "
                                           f"file's {data.corpus_sha256[:12]}); resume with that run's --corpus")


def _summary(history: dict, out_dir: Path, step: int) -> str:
    """What a finished run prints: the final held-out accuracies and the files it wrote."""
    lines = [f"done: {step} steps"]
    if history["eval_steps"]:
        lines[0] += (f"; held-out MLM accuracy {history['eval_mlm_acc'][-1]:.1%}, NSP accuracy "
                     f"{history['eval_nsp_acc'][-1]:.1%} (step {history['eval_steps'][-1]})")
    if history["loss"]:
        lines[0] += f"; training loss {history['loss'][-1]:.3f}"
    names = [HISTORY_NAME, LOG_NAME, RESOLVED_CONFIG_NAME, VOCAB_NAME, ckpt.FINAL_MODEL_NAME, EXPORT_DIR_NAME + "/"]
    checkpoints = ckpt.list_checkpoints(out_dir / ckpt.CHECKPOINT_DIR_NAME)
    if checkpoints:
        names.append(f"{ckpt.CHECKPOINT_DIR_NAME}/ ({len(checkpoints)} checkpoint(s))")
    lines.append(f"wrote in {out_dir}: {', '.join(names)}")
    return "\n".join(lines)


def _train(plan: StartPlan, dist: Distributed, overwrite: bool) -> int:
    config, state = plan.config, plan.state
    plan.state = None  # the checkpoint is loaded below; do not keep a second copy alive
    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / ckpt.CHECKPOINT_DIR_NAME
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
    config = trainer.config = resolve_batch_split(config, model, len(data.vocab), dist.device, trainer.autocast,
                                                  verbose=dist.is_main)  # --batch-size auto (CUDA)
    vocab_hash = data.vocab.hash

    start_step, elapsed, history, resumed_from = 0, 0.0, None, None
    found = state is not None
    if found:
        ckpt.check_compatible(state, plan.path, config.to_dict(), vocab_hash, ARCHITECTURE_FIELDS)
        _check_same_corpus(state, data, config)
        model.load_state_dict(state["model"])
        trainer.load_state(state)
        ckpt.restore_rng_states(ckpt.rank_rng_states(state, dist.rank), dist.device)
        start_step, elapsed, resumed_from = state["step"], state["elapsed_s"], state["step"]
        history = truncate_history(state["history"], start_step)
        if dist.is_main:
            print(f"resuming from {plan.path} (step {start_step})", file=sys.stderr)
        del state
    if dist.is_main:  # the inputs are valid: from here on the run writes into out_dir
        stale = ckpt.list_checkpoints(checkpoint_dir) if not found and overwrite else []
        if stale:  # --overwrite: old checkpoints would otherwise win a later --resume
            print(f"note: --overwrite: removing {len(stale)} checkpoint(s) of an earlier run in {checkpoint_dir}",
                  file=sys.stderr)
            for _, path in stale:
                path.unlink(missing_ok=True)
        if not found and overwrite:  # an earlier run's milestones would mix two runs in a probe
            for _, path in ms.list_milestones(checkpoint_dir):
                path.unlink(missing_ok=True)
        save_vocab(data.vocab, out_dir / VOCAB_NAME)
        write_split(out_dir, data.split)  # probes test only on the held-out documents
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
    eval_batches = [batch_to_device(b, dist.device) for b in eval_micro_batches(
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
        """Every rank: metric totals summed over ranks, each rank's RNG states gathered to rank 0, which
        writes; then all ranks learn whether the write worked (so none runs on or exits before it is done)."""
        trainer_state = trainer.state()  # collective: the totals are all-reduced
        rng = ckpt.capture_rng_states(dist.device)
        rng_by_rank = [rng]
        if dist.enabled:
            rng_by_rank = [None] * dist.world_size if dist.is_main else None
            torch_dist.gather_object(rng, rng_by_rank, dst=0)
        failure = None
        if dist.is_main:
            history["meta"]["nonfinite_skipped"] = trainer.nonfinite_total
            path = ckpt.checkpoint_path(checkpoint_dir, step)
            try:
                ckpt.save_checkpoint(path, {
                    "format": ckpt.CHECKPOINT_FORMAT, "step": step, "model": model.state_dict(), **trainer_state,
                    "rng": rng_by_rank[0], "rng_by_rank": rng_by_rank, "config": config.to_dict(),
                    "vocab_hash": vocab_hash, "history": history, "elapsed_s": clock.elapsed(),
                    "data_position": {"next_step": step, "seed": config.seed, "batch_size": config.batch_size,
                                      "grad_accum": config.grad_accum, "world_size": dist.world_size},
                })
                log.write("checkpoint", step=step, path=str(path))
                ckpt.prune_checkpoints(checkpoint_dir, config.keep_last)
            except StudyError as exc:
                failure = exc
        if _agree(failure is not None, dist):
            raise failure or StudyError(f"rank 0 could not write the checkpoint of step {step}", exit_code=EXIT_RUNTIME)

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
    loader = LoaderClock(make_step_loader(data.train_sampler, config.seed, dist.rank, config.batch_size,
                                          config.grad_accum, start_step, config.steps, dist.device,
                                          resolve_workers(config.data_workers, dist.device)))
    try:
        while step < config.steps:
            _, batches = loader.next_step()  # the loader's step is `step`: both start at start_step
            started = time.monotonic()
            result = trainer.train_step(step, batches)
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
                                       elapsed_s=clock.elapsed(), data_wait_s=loader.take_wait())
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
                bar.close()  # the message on its own line, and no redraw of the bar after it
                if dist.is_main:
                    print(f"interrupted: checkpoint saved at step {step}; rerun with --resume", file=sys.stderr)
                return EXIT_INTERRUPTED
        if dist.is_main:
            raw_state = model.state_dict()
            ckpt.save_final_model(out_dir / ckpt.FINAL_MODEL_NAME, raw_state, asdict(model_config), vocab_hash, step)
            from bertstudy.training.hf_export import export_pretrained

            export_pretrained(model, data.vocab.tokens, out_dir / EXPORT_DIR_NAME)
            history["meta"]["finished_at"] = time.time()
            history["meta"]["nonfinite_skipped"] = trainer.nonfinite_total
            write_history(history_path, history)
            bar.close()
            print(_summary(history, out_dir, step))
        status = "done"
        return EXIT_OK
    finally:
        bar.close()
        stop.restore()
        if log is not None:
            log.write("end", step=step, status=status)
            log.close()
