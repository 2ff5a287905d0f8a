"""The pretraining step and evaluation (nanoGPT's train.py order); device, precision and ranks are in device.py.

One optimizer step = grad_accum micro-batches per process. The loss of each micro-batch is scaled so
that the summed gradient equals the gradient of ONE batch of batch_size x grad_accum x world_size:
MLM cross-entropy is a mean over masked tokens, whose number varies per micro-batch, so each
micro-batch's mean is re-weighted by (its masked tokens / the step's masked tokens over all
micro-batches and ranks) instead of a plain 1/grad_accum; DDP averages over ranks, hence x world.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist

from bertstudy.training.device import Distributed, autocast_context, precision_settings
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.loader import batch_to_device, step_micro_batches
from bertstudy.pretraining.packing import host_counts
from bertstudy.pretraining.instances import InstanceSampler
from bertstudy.training.config import TrainConfig

TOTAL_NAMES = ("mlm_correct", "mlm_count", "nsp_correct", "nsp_count", "mlm_loss_sum", "nsp_loss_sum", "tokens")


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to config.lr, then cosine decay to config.lr x min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - floor)


def model_config_for(config: TrainConfig, vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=config.hidden_size, num_layers=config.num_layers,
                      num_heads=config.num_heads, intermediate_size=config.intermediate_size,
                      max_position=config.max_seq_len, dropout=config.dropout)


@dataclass
class StepResult:
    finite: bool  # False: the step was skipped (no update)
    lr: float


class Trainer:
    """Holds model, optimizer and scaler; `train_step(step)` makes one optimizer update."""

    def __init__(self, config: TrainConfig, model: BertForPretraining, sampler: InstanceSampler,
                 dist: Distributed | None = None):
        self.config = config
        self.dist = dist or Distributed()
        self.raw_model = model
        self.sampler = sampler
        device = self.dist.device
        self.optimizer = model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2),
                                                   config.adam_eps, device.type)
        self.amp_dtype, use_scaler = precision_settings(device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.model = model
        self.totals = torch.zeros(len(TOTAL_NAMES), dtype=torch.float64, device=device)
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0

    def wrap(self) -> None:
        """DDP and torch.compile after any checkpoint was loaded into raw_model."""
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        if self.config.compile:
            self.model = torch.compile(self.model, mode=self.config.compile_mode)

    def autocast(self):
        return autocast_context(self.dist.device, self.amp_dtype)

    def _all_reduce(self, tensor: torch.Tensor, op=None) -> torch.Tensor:
        if self.dist.enabled:
            torch_dist.all_reduce(tensor, op=op or torch_dist.ReduceOp.SUM)
        return tensor

    def micro_batches(self, step: int) -> list[dict[str, np.ndarray]]:
        c = self.config
        return step_micro_batches(self.sampler, c.seed, step, self.dist.rank, c.batch_size, c.grad_accum)

    def train_step(self, step: int, batches: list[dict] | None = None) -> StepResult:
        """One optimizer update at `step` (0-based) on `batches` (the loader's; built here when None).
        A non-finite loss or gradient norm skips the update (counted); the caller stops the run after
        max_nonfinite in a row. The counts that weight the micro-batches come from the host, so
        nothing in the micro-batch loop waits for the device."""
        c, device = self.config, self.dist.device
        lr = lr_at(step, c)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self.micro_batches(step) if batches is None else batches
        local = [host_counts(b) for b in batches]
        step_mlm, step_nsp = sum(x[0] for x in local), sum(x[1] for x in local)
        if self.dist.enabled:  # weights stay on the device: no sync before the first micro-batch
            step_counts = self._all_reduce(torch.tensor([step_mlm, step_nsp], dtype=torch.float64, device=device))
            mlm_total, nsp_total = step_counts[0].clamp(min=1.0).float(), step_counts[1].float()
        else:
            mlm_total, nsp_total = float(max(step_mlm, 1)), float(step_nsp)
        step_totals = torch.zeros_like(self.totals)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        for m, host_batch in enumerate(batches):
            batch = batch_to_device(host_batch, device)
            last = m == len(batches) - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.model.no_sync()
            with sync:
                with self.autocast():
                    out = self.model(**batch)
                weight_mlm = local[m][0] / mlm_total * self.dist.world_size
                weight_nsp = local[m][1] / nsp_total * self.dist.world_size
                loss = out.mlm_loss * weight_mlm + out.nsp_loss * weight_nsp
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            loss_sum += loss.detach().float()
            step_totals += torch.stack([out.mlm_correct.double(), out.mlm_count.double(), out.nsp_correct.double(),
                                        out.nsp_count.double(), out.mlm_loss.detach().double() * local[m][0],
                                        out.nsp_loss.detach().double() * local[m][1], torch.zeros_like(loss_sum).double()])
        step_totals[6] += float(sum(x[2] for x in local))  # real tokens: a host count, one copy per step
        finite = torch.isfinite(loss_sum).float()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if c.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), c.grad_clip)
            if self.scaler is None:  # with fp16 the scaler itself skips inf gradients and lowers its scale
                finite = finite * torch.isfinite(norm).float()
        ok = self._all_reduce(finite, torch_dist.ReduceOp.MIN if self.dist.enabled else None).item() > 0
        if ok:
            if self.scaler:
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
            self.totals += step_totals
            self.nonfinite_in_a_row = 0
        else:
            self.nonfinite_in_a_row += 1
            self.nonfinite_total += 1
        if self.scaler:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(finite=ok, lr=lr)

    def take_totals(self) -> dict[str, float] | None:
        """Training metrics over every micro-batch (and rank) since the last call; None if none counted."""
        totals = self._all_reduce(self.totals.clone())
        self.totals.zero_()
        values = dict(zip(TOTAL_NAMES, totals.tolist()))
        if values["mlm_count"] == 0 or values["nsp_count"] == 0:
            return None
        mlm_loss = values["mlm_loss_sum"] / values["mlm_count"]
        nsp_loss = values["nsp_loss_sum"] / values["nsp_count"]
        return {"mlm_acc": values["mlm_correct"] / values["mlm_count"], "nsp_acc": values["nsp_correct"] / values["nsp_count"],
                "loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss, "tokens": values["tokens"]}

    @torch.no_grad()
    def evaluate(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Held-out MLM/NSP accuracy and MLM loss; dropout off; the raw model (no DDP hooks)."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        sums = torch.zeros(5, dtype=torch.float64, device=self.dist.device)
        for batch in batches:
            with self.autocast():
                out = self.raw_model(**batch)
            sums += torch.stack([out.mlm_correct.double(), out.mlm_count.double(), out.nsp_correct.double(),
                                 out.nsp_count.double(), out.mlm_loss.double() * out.mlm_count.double()])
        self.raw_model.train(was_training)
        correct, count, nsp_correct, nsp_count, loss_sum = sums.tolist()
        return {"mlm_acc": correct / max(count, 1), "nsp_acc": nsp_correct / max(nsp_count, 1),
                "mlm_loss": loss_sum / max(count, 1)}

    def state(self) -> dict:
        """What a checkpoint keeps of the trainer. Every rank calls it: the metric totals since the last
        log point are summed over ranks here, and load_state gives that sum back to rank 0 only."""
        return {"optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "totals": self._all_reduce(self.totals.clone()).tolist(),
                "nonfinite": [self.nonfinite_in_a_row, self.nonfinite_total]}

    def load_state(self, state: dict) -> None:
        """The optimizer's moments and step counts come from the checkpoint; its hyper-parameters (betas,
        eps, weight decay; lr is set at every step) and implementation flags (fused, foreach) stay those
        this trainer was built with from the run's config on this device. resume_config refuses a
        changed --lr/--beta1/--beta2/--adam-eps/--weight-decay, so the values agree; nothing is overridden
        silently in either direction."""
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        totals = torch.tensor(state["totals"], dtype=torch.float64, device=self.dist.device)
        self.totals = totals if self.dist.is_main else torch.zeros_like(totals)  # the saved sum counts once
        self.nonfinite_in_a_row, self.nonfinite_total = state["nonfinite"]


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a saved optimizer state into `optimizer` as built for this device, in either direction
    (a CPU checkpoint on CUDA, a CUDA one on the CPU). torch places each tensor by the *saved* param
    groups (Optimizer._process_value_according_to_param_policy is given state_dict["param_groups"]):
    a CPU checkpoint has `fused` unset, so `step` would stay on the CPU under the fused CUDA AdamW,
    which reads it through a device pointer. So the saved groups take this optimizer's settings
    (fused, foreach, capturable and the hyper-parameters; lr is set at every step) before loading:
    moments land on the parameters' device and `step` where this optimizer's kernel expects it."""
    built = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    if len(built) != len(saved["param_groups"]):
        raise ValueError(f"the checkpoint's optimizer has {len(saved['param_groups'])} parameter groups, this one {len(built)}")
    groups = [{**group, **settings} for group, settings in zip(saved["param_groups"], built)]
    optimizer.load_state_dict({**saved, "param_groups": groups})


class Stopwatch:
    """Elapsed training seconds, carried across resumes."""

    def __init__(self, already: float = 0.0):
        self.already = already
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return self.already + time.monotonic() - self.start
