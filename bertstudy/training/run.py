"""One training run from corpus to final model, top to bottom, in nanoGPT's order:
run_training -> resolve_run (run_start.py: the final config and how the run starts) -> set_up (data,
model, trainer, a checkpoint's state, the run folder's first files) -> step_loop (update, log point,
held-out eval and milestone, checkpoint) -> finish (final model, export, summary).

A checkpoint at step s holds the history up to and including s, and the RNG states as they are just
before step s+1, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from bertstudy.base.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, StudyError
from bertstudy.base.run_files import CHECKPOINT_DIR_NAME, EXPORT_DIR_NAME, FINAL_MODEL_NAME, HISTORY_NAME
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.loader import LoaderClock, batch_to_device, eval_micro_batches, make_step_loader, resolve_workers
from bertstudy.pretraining.shortcut import unigram_log_frequencies
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training import weights
from bertstudy.training.config import ARCHITECTURE_FIELDS, TrainConfig
from bertstudy.training.device import Distributed, setup_distributed, teardown_distributed
from bertstudy.training.machine import EarlySpeed
from bertstudy.training.run_data import PreparedData, check_same_corpus, prepare_data, step_shape
from bertstudy.training.run_folder import finished_summary, new_run_history, open_log, prepare_out_dir
from bertstudy.training.run_log import HistoryFile, RunLog, add_eval_point, add_train_point, truncate_history
from bertstudy.training.run_start import StartPlan, resolve_run
from bertstudy.training.trainer import KIND_ACC_KEYS, Stopwatch, Trainer, model_config_for


@dataclass
class Run:
    """What set-up hands to the step loop and the finish: one record instead of closures over locals."""

    config: TrainConfig  # as resolve_run settled it; never replaced
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


# ---- set-up: data, model, trainer, a checkpoint's state, the run folder's first files

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


def _restore(state: dict, plan: StartPlan, config: TrainConfig, data: PreparedData, model, trainer: Trainer,
             dist: Distributed) -> tuple[int, float, dict]:
    """Load a checkpoint into model, optimizer and RNGs; (start step, elapsed seconds, history up to it)."""
    ckpt.check_compatible(state, plan.path, config.to_dict(), data.vocab.hash, ARCHITECTURE_FIELDS)
    check_same_corpus(state, data, config)
    model.load_state_dict(state["model"])
    trainer.load_state(state)
    ckpt.restore_rng_states(ckpt.rank_rng_states(state, dist.rank), dist.device)
    if dist.is_main:
        print(f"resuming from {plan.path} (step {state['step']})", file=sys.stderr)
    return state["step"], state["elapsed_s"], truncate_history(state["history"], state["step"])


def set_up(config: TrainConfig, plan: StartPlan, dist: Distributed, overwrite: bool) -> Run:
    """Everything before the first step; a resumed run continues exactly where its checkpoint stopped."""
    state, plan.state = plan.state, None  # loaded below; do not keep a second copy alive
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config, dist)
    _seed_all(config.seed)  # the same initial weights on every rank
    model_config = model_config_for(config, len(data.vocab))
    model = BertForPretraining(model_config).to(dist.device)
    torch.manual_seed(config.seed + dist.rank)  # dropout streams differ per rank
    shape = step_shape(config, data.train_sampler, dist.rank)  # compiled once, or in row buckets (packing.py)
    trainer = Trainer(config, model, data.train_sampler, dist, precision=(plan.amp_dtype, plan.use_scaler),
                      shape=shape)
    start_step, elapsed, history = 0, 0.0, None
    if state is not None:  # the checkpoint's weights, the bias included
        start_step, elapsed, history = _restore(state, plan, config, data, model, trainer, dist)
        del state
    elif config.mlm_bias_init == "unigram":  # a fresh start only; the same counts on every rank
        init_mlm_bias(model, data.id_counts)
    resumed = history is not None
    if dist.is_main:
        prepare_out_dir(config, data, resumed, overwrite)
    milestone_steps = set(ms.milestone_steps(config.milestones, config.steps))
    trainer.wrap()
    history = history or new_run_history(config, data, model, dist, milestone_steps)
    history["meta"]["total_steps"] = config.steps
    # the one upgrade weights.migrate cannot make: a history begun before the field needs this corpus's levels
    history["meta"].setdefault("shortcut", data.shortcut)
    eval_batches = [batch_to_device(b, dist.device) for b in eval_micro_batches(
        data.eval_sampler, config.split_seed, config.eval_instances, config.batch_size)] if dist.is_main else []
    log = open_log(config, model_config, dist, start_step, start_step if resumed else None) if dist.is_main else None
    history_file = HistoryFile(Path(config.out_dir) / HISTORY_NAME) if dist.is_main else None
    return Run(config, dist, data, model, model_config, trainer, history, log, resumed, start_step, milestone_steps,
               eval_batches, Stopwatch(elapsed), history_file)


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


def _any_rank(flag: bool, dist: Distributed) -> bool:
    """True on every rank when `flag` is true on any (a stop, a failed write: all ranks act at the same step)."""
    if not dist.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return value.item() > 0


# ---- what the loop does at some steps: held-out eval, milestone weights, checkpoint

def evaluate(run: Run, step: int) -> dict | None:
    """Rank 0: the held-out eval, logged and added to the history (None when non-finite)."""
    result = run.trainer.evaluate(run.eval_batches)
    if not all(math.isfinite(value) for value in result.values()):
        # JSON has no NaN; a diverged model's eval is left out (the non-finite stop follows)
        print(f"warning: held-out eval at step {step} is non-finite ({result}); not recorded", file=sys.stderr)
        return None
    add_eval_point(run.history, run.log.write("eval", step=step, **result))
    run.history_file.point(run.history)
    return result


def save_milestone(run: Run, step: int, heldout: dict | None) -> None:
    """Rank 0: weights for probing at a milestone step, with that step's held-out eval (logged too)."""
    path = ms.milestone_path(run.checkpoint_dir, step)
    weights.save_milestone(path, step, run.model.state_dict(), asdict(run.model_config), run.config.to_dict(),
                      run.data.vocab.hash, heldout)
    run.log.write("milestone", step=step, path=str(path), heldout_mlm_acc=(heldout or {}).get("mlm_acc"),
                  heldout_nsp_acc=(heldout or {}).get("nsp_acc"))


def save(run: Run, step: int) -> None:
    """Every rank: metric totals summed over ranks, each rank's RNG states gathered to rank 0, which
    writes; then all ranks learn whether the write worked (so none runs on or exits before it is done)."""
    config, dist = run.config, run.dist
    trainer_state = run.trainer.state()  # collective: the totals are all-reduced
    rng_by_rank = ckpt.gather_rng_states(dist)
    failure = None
    if dist.is_main:
        run.history["meta"]["nonfinite_skipped"] = run.trainer.nonfinite_total
        path = ckpt.checkpoint_path(run.checkpoint_dir, step)
        try:
            ckpt.save_checkpoint(path, {
                "format": ckpt.CHECKPOINT_FORMAT, "step": step, "model": run.model.state_dict(),
                "model_config": asdict(run.model_config), **trainer_state,
                "rng": rng_by_rank[0], "rng_by_rank": rng_by_rank, "config": config.to_dict(),
                "vocab_hash": run.data.vocab.hash, "history": run.history, "elapsed_s": run.clock.elapsed(),
                "data_position": {"next_step": step, "seed": config.seed, "batch_size": config.batch_size,
                                  "grad_accum": config.grad_accum, "world_size": dist.world_size},
            })
            run.log.write("checkpoint", step=step, path=str(path))
            run.history_file.save(run.history)  # the file's durable copy: what the checkpoint holds
            ckpt.prune_checkpoints(run.checkpoint_dir, config.keep_last)
        except StudyError as exc:
            failure = exc
    if _any_rank(failure is not None, dist):
        raise failure or StudyError(f"rank 0 could not write the checkpoint of step {step}", exit_code=EXIT_RUNTIME)


# ---- the step loop

def _check_nonfinite(run: Run, step: int, counters: dict | None = None) -> None:
    """Stop after max_nonfinite skipped updates in a row. `counters`: as read at a log point (the most
    in a row since the previous one); without, read now (every step where reading costs nothing)."""
    counters = counters or run.trainer.read_counters()
    worst, in_a_row = counters["skipped_worst"], counters["skipped_in_a_row"]
    if worst >= run.config.max_nonfinite:
        last = ckpt.list_checkpoints(run.checkpoint_dir)
        where = f"steps {step - in_a_row + 1}-{step}" if in_a_row == worst else f"before step {step}"
        raise StudyError(f"{worst} non-finite losses in a row ({where}); stopped. "
                         f"Last good checkpoint: {last[-1][1] if last else 'none'}; try a lower --lr",
                         exit_code=EXIT_RUNTIME)


def _log_point(run: Run, step: int, lr: float, step_seconds: float, loader: LoaderClock, bar,
               stop_requested: bool) -> tuple[bool, dict]:
    """A training log point: the metric totals since the last one, the stop flag and the skipped-update
    counters in one all-reduce (every rank); rank 0 writes. Returns (any rank asked to stop, counters)."""
    started = time.monotonic()
    totals, stopping, counters = run.trainer.log_point(stop_requested)
    step_seconds += time.monotonic() - started  # on a GPU, the queued steps finishing: their time too
    if not (run.dist.is_main and totals):
        return stopping, counters
    record = run.log.write("train", step=step, mlm_acc=totals["mlm_acc"], nsp_acc=totals["nsp_acc"],
                           loss=totals["loss"], mlm_loss=totals["mlm_loss"], nsp_loss=totals["nsp_loss"],
                           lr=lr, tokens_per_s=totals["tokens"] / max(step_seconds, 1e-9),
                           elapsed_s=run.clock.elapsed(), data_wait_s=loader.take_wait(),
                           skipped_steps=counters["skipped_since_log"],
                           **{key: totals[key] for key in KIND_ACC_KEYS if key in totals})
    add_train_point(run.history, record)
    run.history_file.point(run.history)  # not every point: the log has it (run_log.HistoryFile)
    bar.set_postfix(loss=f"{totals['loss']:.3f}", mlm=f"{totals['mlm_acc']:.3f}")
    return stopping, counters


def _after_step(run: Run, step: int) -> None:
    """Rank 0: the held-out eval on its interval, and a milestone's weights (with an eval of its own
    when the milestone is off the interval)."""
    config = run.config
    if not run.dist.is_main:
        return
    evaluated = evaluate(run, step) if (step % config.eval_interval == 0 or step == config.steps) else None
    if step in run.milestone_steps:
        save_milestone(run, step, evaluated if evaluated is not None else evaluate(run, step))


def step_loop(run: Run, stop: StopRequest, bar) -> bool:
    """Train from run.step to config.steps. Returns True when a stop was requested (checkpoint saved).
    Order per step: update -> log point -> held-out eval and milestone -> checkpoint."""
    config, trainer = run.config, run.trainer
    step_seconds = 0.0  # time in train_step since the last log point: tokens/s leaves evals and saves out
    loader = LoaderClock(make_step_loader(run.data.train_sampler, config.seed, run.dist.rank, config.batch_size,
                                          config.grad_accum, run.step, config.steps, run.dist.device,
                                          resolve_workers(config.data_workers, run.dist.device), trainer.shape))
    early = EarlySpeed(run.log, run.step, config.steps, run.dist.device.type, config.preset)  # a CPU run's estimate
    while run.step < config.steps:
        _, batches = loader.next_step()  # the loader's step is run.step: both start at the start step
        started = time.monotonic()
        result = trainer.train_step(run.step, batches)
        step_seconds += time.monotonic() - started
        run.step += 1
        step = run.step
        bar.update(1)
        early.after_step(step)
        stopping = False
        if trainer.syncs_are_free:  # on a GPU the counters are read at log points only
            _check_nonfinite(run, step)
        if step % config.log_interval == 0 or step == config.steps:
            stopped_here, counters = _log_point(run, step, result.lr, step_seconds, loader, bar, stop.requested)
            stopping = stopped_here
            _check_nonfinite(run, step, counters)
            step_seconds = 0.0
        _after_step(run, step)
        stopping = _stop_agreed(run, stop) or stopping
        # no periodic checkpoint during a run of non-finite losses: the last one stays the last good one
        if stopping or ((step % config.save_interval == 0 or step == config.steps) and not trainer.nonfinite_in_a_row):
            save(run, step)
        if stopping:
            return True
    return False


def _stop_agreed(run: Run, stop: StopRequest) -> bool:
    """Whether every rank stops after this step. One process: its own flag, every step. Several: an
    all-reduce each step where that costs nothing (CPU); on GPUs the flag travels with the log point's
    all-reduce instead, so a stop waits for the next log point (log_interval steps)."""
    if not run.dist.enabled:
        return stop.requested
    if run.trainer.syncs_are_free:
        return _any_rank(stop.requested, run.dist)
    return False


# ---- the finish

def finish(run: Run) -> None:
    """Rank 0: the final weights, the transformers export, the history's end time and the summary."""
    if not run.dist.is_main:
        return
    ckpt.save_final_model(run.out_dir / FINAL_MODEL_NAME, run.model.state_dict(), asdict(run.model_config),
                          run.data.vocab.hash, run.step)
    from bertstudy.training.hf_export import export_pretrained  # transformers' format, only at the end

    if run.model_config.pre_ln:  # transformers' BERT is post-LN only (hf_export.check_exportable)
        stale = run.out_dir / EXPORT_DIR_NAME  # left by an earlier run that --overwrite replaced: not this model
        if stale.is_dir():
            shutil.rmtree(stale)
        print(f"note: --pre-ln: no {EXPORT_DIR_NAME}/ (transformers' BERT is post-LN only); the final model is "
              f"{run.out_dir / FINAL_MODEL_NAME}", file=sys.stderr)
    else:
        export_pretrained(run.model, run.data.vocab.tokens, run.out_dir / EXPORT_DIR_NAME)
    run.history["meta"]["finished_at"] = time.time()
    run.history["meta"]["nonfinite_skipped"] = run.trainer.nonfinite_total
    run.history_file.save(run.history)
    print(finished_summary(run.history, run.out_dir, run.step, exported=not run.model_config.pre_ln))


def _train(config: TrainConfig, plan: StartPlan, dist: Distributed, overwrite: bool) -> int:
    run = set_up(config, plan, dist, overwrite)
    if dist.is_main and not run.resumed:
        initial = evaluate(run, 0)  # the untrained model's accuracy: the curve's first point
        if 0 in run.milestone_steps:
            save_milestone(run, 0, initial)
    stop = StopRequest()
    stop.install()
    bar = tqdm(total=run.config.steps, initial=run.step, disable=not (dist.is_main and run.config.progress),
               dynamic_ncols=True, desc="train", file=sys.stderr)
    status = "failed"
    try:
        if step_loop(run, stop, bar):
            status = "interrupted"
            bar.close()  # the message on its own line, and no redraw of the bar after it
            if dist.is_main:
                print(f"interrupted: checkpoint saved at step {run.step}; rerun with --resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        bar.close()
        finish(run)
        status = "done"
        return EXIT_OK
    finally:
        bar.close()
        stop.restore()
        if run.log is not None:
            run.log.write("end", step=run.step, status=status)
            run.log.close()


def run_training(config: TrainConfig, resume: str | None = None, *, given: dict | None = None,
                 overwrite: bool = False, if_possible: bool = False) -> int:
    """Train per `config`. resume: None (a new run), "auto" (the newest valid checkpoint in out_dir) or a
    checkpoint path; given: the flags set on the command line (on resume only some may change the run's
    config); if_possible: a new run when "auto" finds no checkpoint; overwrite: a new run may replace
    another run's files in out_dir. The rules are in run_start.py."""
    dist = setup_distributed(config.device)
    try:
        try:
            config, plan = resolve_run(config, resume, given or {}, overwrite, if_possible, dist)
        except StudyError as exc:
            if dist.is_main:
                raise
            return exc.exit_code  # rank 0 prints the one line
        code = _train(config, plan, dist, overwrite)
        if dist.enabled:  # a run that ended normally: every rank leaves the group together, after rank 0's
            torch_dist.barrier()  # finish (how a torchrun process then exits: base/cli.exit_script)
        return code
    finally:
        teardown_distributed(dist)
