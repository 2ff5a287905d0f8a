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
from bertstudy.model import MLM_KINDS, BertConfig, BertForPretraining, PretrainingOutput
from bertstudy.pretraining.loader import batch_to_device, step_micro_batches
from bertstudy.pretraining.packing import host_counts
from bertstudy.pretraining.instances import InstanceSampler
from bertstudy.training.config import TrainConfig

# masked positions right / counted per kind of the 80/10/10 recipe: mask_correct, mask_count, random_correct, ...
KIND_TOTAL_NAMES = tuple(f"{kind}_{what}" for kind in MLM_KINDS for what in ("correct", "count"))
KIND_ACC_KEYS = tuple(f"{kind}_acc" for kind in MLM_KINDS)  # mask_acc, random_acc, unchanged_acc
TOTAL_NAMES = ("mlm_correct", "mlm_count", "nsp_correct", "nsp_count", "mlm_loss_sum", "nsp_loss_sum", "tokens",
               *KIND_TOTAL_NAMES)
COUNTER_NAMES = ("skipped_total", "skipped_in_a_row", "skipped_worst")


def kind_totals(out: PretrainingOutput, like: torch.Tensor) -> torch.Tensor:
    """[correct, count] per MLM kind as float64, in KIND_TOTAL_NAMES order; zeros when the batch had no kinds."""
    if out.mlm_kind_correct is None:
        return torch.zeros(len(KIND_TOTAL_NAMES), dtype=torch.float64, device=like.device)
    return torch.stack([out.mlm_kind_correct, out.mlm_kind_count], dim=1).reshape(-1).double()


def kind_accuracies(values: dict[str, float]) -> dict[str, float]:
    """mask_acc, random_acc, unchanged_acc from the KIND_TOTAL_NAMES sums; a kind with no counted position
    (or unknown counts: NaN, a checkpoint from before these counters) is left out."""
    out = {}
    for kind, key in zip(MLM_KINDS, KIND_ACC_KEYS):
        count = values[f"{kind}_count"]
        if count > 0 and math.isfinite(count):  # NaN > 0 is False
            out[key] = values[f"{kind}_correct"] / count
    return out


def lr_at(step: int, config: TrainConfig) -> float:
    """The lr of `step` (0-based): a linear warm-up to config.lr over warmup_steps, then
    - schedule "cosine": cosine decay to config.lr x min_lr_ratio at step config.steps;
    - schedule "constant" (trapezoid / warmup-stable-decay): config.lr until the last decay_fraction of the
      steps (from step decay_start = steps - round(decay_fraction x steps), never before the warm-up's end),
      then a linear decay reaching lr x min_lr_ratio at step config.steps (decay_fraction 0: no decay)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    if config.schedule == "constant":
        decay_start = max(config.warmup_steps, config.steps - round(config.decay_fraction * config.steps))
        if step < decay_start or decay_start >= config.steps:
            return config.lr
        progress = min(1.0, (step - decay_start) / (config.steps - decay_start))
        return config.lr - progress * (config.lr - floor)
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - floor)


def model_config_for(config: TrainConfig, vocab_size: int) -> BertConfig:
    """The model's shape from a run's config."""
    return BertConfig(vocab_size=vocab_size, hidden_size=config.hidden_size, num_layers=config.num_layers,
                      num_heads=config.num_heads, intermediate_size=config.intermediate_size,
                      max_position=config.max_seq_len, dropout=config.dropout,
                      pre_ln=config.pre_ln)


@dataclass
class StepResult:
    good: torch.Tensor  # 1.0: the update was made; 0.0: skipped (on the device: reading it waits for the step)
    lr: float

    @property
    def finite(self) -> bool:
        return bool(self.good.item() > 0)


def mark_first_dim_dynamic(batch: dict[str, torch.Tensor]) -> None:
    """Tell torch.compile that every input's first dimension (rows; masked and [CLS] slots) varies from
    step to step, so it compiles one graph for all of them instead of one per shape. maybe_: a dimension
    the graph has to specialise stays static rather than failing the step."""
    for tensor in batch.values():
        torch._dynamo.maybe_mark_dynamic(tensor, 0)


class Trainer:
    """Holds model, optimizer and scaler; `train_step(step)` makes one optimizer update."""

    def __init__(self, config: TrainConfig, model: BertForPretraining, sampler: InstanceSampler,
                 dist: Distributed | None = None, *, precision: tuple | None = None, shape=None):
        """precision: (autocast dtype or None, use a GradScaler) as the run resolved it (run_start.resolve_run);
        None: device.precision_settings for this device and config.amp. shape: in a CUDA-graph compile
        mode the packing.RowBuckets (run_data.step_shape); else None, the variable packed layout, whose
        first dimensions a compiled model takes as dynamic (one graph for every row count)."""
        self.config = config
        self.dist = dist or Distributed()
        self.raw_model = model
        self.sampler = sampler
        device = self.dist.device
        self.optimizer = model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2),
                                                   config.adam_eps, device.type)
        self.amp_dtype, use_scaler = precision or precision_settings(device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.model = model
        self.totals = torch.zeros(len(TOTAL_NAMES), dtype=torch.float64, device=device)
        # skipped updates (non-finite loss or gradients, or fp16 steps the GradScaler skipped), kept on
        # the device so the step never waits for it: [total, in a row now, most in a row since the last read]
        self.counters = torch.zeros(len(COUNTER_NAMES), dtype=torch.float64, device=device)
        # on the CPU reading a value costs nothing; on a GPU the loop reads only at log points and saves
        self.syncs_are_free = device.type == "cpu"
        self.skipped_logged = 0  # skipped_total at the last log point
        self.shape = shape
        self.dynamic_rows = config.compile and shape is None

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
        return step_micro_batches(self.sampler, c.seed, step, self.dist.rank, c.batch_size, c.grad_accum, self.shape)

    def train_step(self, step: int, batches: list[dict] | None = None) -> StepResult:
        """One optimizer update at `step` (0-based) on `batches` (the loader's; built here when None).
        A non-finite loss or gradient norm, or an fp16 step the GradScaler skips, makes no update and
        is counted (`counters`); the loop stops the run after max_nonfinite in a row. Nothing here waits
        for a GPU: the weights come from host counts, the skip is decided on the device (fused AdamW
        takes `found_inf`), metrics and counters stay there until a log point reads them."""
        lr = lr_at(step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self.micro_batches(step) if batches is None else batches
        local = [host_counts(b) for b in batches]
        step_totals, loss_sum = self._forward_backward(batches, local)
        good = self._update(loss_sum)
        self.totals += torch.where(good > 0, step_totals, 0.0)  # a skipped step adds nothing (NaN x 0 is NaN)
        bad = 1.0 - good.double().reshape(())
        in_a_row = (self.counters[1] + 1.0) * bad
        self.counters = torch.stack([self.counters[0] + bad, in_a_row, torch.maximum(self.counters[2], in_a_row)])
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(good=good, lr=lr)

    def _step_counts(self, local: list[tuple[int, int, int]]):
        """Masked tokens and NSP pairs of the whole step (all micro-batches and ranks): host numbers in
        one process; under DDP one all-reduce from pinned memory, so the host does not wait for it."""
        step_mlm, step_nsp = sum(x[0] for x in local), sum(x[1] for x in local)
        if not self.dist.enabled:
            return float(max(step_mlm, 1)), float(step_nsp)
        counts = torch.tensor([step_mlm, step_nsp], dtype=torch.float64)
        if self.dist.device.type == "cuda":
            counts = counts.pin_memory()
        counts = self._all_reduce(counts.to(self.dist.device, non_blocking=True))
        return counts[0].clamp(min=1.0).float(), counts[1].float()

    def _forward_backward(self, batches: list[dict], local: list[tuple[int, int, int]]):
        """Every micro-batch's forward and backward (DDP syncs gradients on the last only); returns the
        step's metric totals and its summed loss, both on the device."""
        device = self.dist.device
        mlm_total, nsp_total = self._step_counts(local)
        step_totals = torch.zeros_like(self.totals)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        on_device = batches.to_device(device) if hasattr(batches, "to_device") else None  # one copy per step
        for m, host_batch in enumerate(batches):
            batch = on_device[m] if on_device is not None else batch_to_device(host_batch, device)
            if self.dynamic_rows:
                mark_first_dim_dynamic(batch)
            last = m == len(batches) - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.model.no_sync()
            with sync:
                with self.autocast():
                    out = self.model(**batch)
                weight_mlm = local[m][0] / mlm_total * self.dist.world_size
                weight_nsp = local[m][1] / nsp_total * self.dist.world_size * self.config.nsp_weight
                loss = out.mlm_loss * weight_mlm + out.nsp_loss * weight_nsp  # MLM + nsp_weight x NSP
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            loss_sum += loss.detach().float()
            step_totals += torch.cat([torch.stack([
                out.mlm_correct.double(), out.mlm_count.double(), out.nsp_correct.double(), out.nsp_count.double(),
                out.mlm_loss.detach().double() * local[m][0], out.nsp_loss.detach().double() * local[m][1],
                torch.zeros_like(loss_sum).double()]), kind_totals(out, step_totals)])
        step_totals[6] += float(sum(x[2] for x in local))  # real tokens: a host count
        return step_totals, loss_sum

    def _update(self, loss_sum: torch.Tensor) -> torch.Tensor:
        """Clip, then update unless the loss or gradients are non-finite (on every rank alike). Returns
        1.0 (updated) or 0.0 (skipped) as a device tensor."""
        finite = torch.isfinite(loss_sum).float()  # 0-dim: the shape fused AdamW takes as found_inf
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip)
            if self.scaler is None:  # with fp16 the scaler itself skips inf gradients and lowers its scale
                finite = finite * torch.isfinite(norm).float()
        finite = self._all_reduce(finite, torch_dist.ReduceOp.MIN if self.dist.enabled else None)
        if self.scaler:  # the fp16 steps the scaler skips are skipped steps too (counted, no metrics)
            found = sum(self.scaler._per_optimizer_states[id(self.optimizer)]["found_inf_per_device"].values())
            self.scaler.step(self.optimizer)  # fused AdamW: found_inf goes to the kernel, no host sync
            self.scaler.update()
            return finite * (1.0 - found.float().reshape(()))
        if self.optimizer.defaults.get("fused"):  # the kernel skips the update (and the step count) itself
            self.optimizer.grad_scale, self.optimizer.found_inf = None, 1.0 - finite
            self.optimizer.step()
            self.optimizer.found_inf = None
        elif finite.item() > 0:  # unfused (the CPU's AdamW): a host decision, free where there is no device
            self.optimizer.step()
        return finite

    def read_counters(self, reset_worst: bool = True) -> dict[str, int]:
        """The skipped-update counters (a device read: call at log points and saves)."""
        values = dict(zip(COUNTER_NAMES, (int(v) for v in self.counters.tolist())))
        if reset_worst:
            self.counters[2] = self.counters[1]
        return values

    @property
    def nonfinite_in_a_row(self) -> int:
        return self.read_counters(reset_worst=False)["skipped_in_a_row"]

    @property
    def nonfinite_total(self) -> int:
        return self.read_counters(reset_worst=False)["skipped_total"]

    def log_point(self, stop_requested: bool = False) -> tuple[dict[str, float] | None, bool, dict[str, int]]:
        """At a log point, in one all-reduce and one read: the training metrics over every micro-batch
        (and rank) since the last one (None if none counted), whether any rank asked to stop, and the
        skipped-update counters (`skipped_since_log` added)."""
        device = self.dist.device
        flag = torch.full((1,), 1.0 if stop_requested else 0.0, dtype=torch.float64, device=device)
        values = self._all_reduce(torch.cat([self.totals, flag, self.counters])).tolist()
        self.totals.zero_()
        self.counters[2] = self.counters[1]  # "most in a row" restarts from the current run of skips
        n = len(TOTAL_NAMES)
        counters = {name: int(round(v / self.dist.world_size)) for name, v in zip(COUNTER_NAMES, values[n + 1:])}
        counters["skipped_since_log"] = counters["skipped_total"] - self.skipped_logged
        self.skipped_logged = counters["skipped_total"]
        return _metrics(dict(zip(TOTAL_NAMES, values[:n]))), values[n] > 0, counters

    def take_totals(self) -> dict[str, float] | None:
        """Training metrics over every micro-batch (and rank) since the last call; None if none counted."""
        return self.log_point()[0]

    @torch.no_grad()
    def evaluate(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Held-out MLM/NSP accuracy and MLM loss, and MLM accuracy by kind (mask_acc, random_acc,
        unchanged_acc); dropout off; the raw model (no DDP hooks)."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        sums = torch.zeros(5 + len(KIND_TOTAL_NAMES), dtype=torch.float64, device=self.dist.device)
        for batch in batches:
            with self.autocast():
                out = self.raw_model(**batch)
            sums += torch.cat([torch.stack([out.mlm_correct.double(), out.mlm_count.double(), out.nsp_correct.double(),
                                            out.nsp_count.double(), out.mlm_loss.double() * out.mlm_count.double()]),
                               kind_totals(out, sums)])
        self.raw_model.train(was_training)
        values = sums.tolist()
        correct, count, nsp_correct, nsp_count, loss_sum = values[:5]
        return {"mlm_acc": correct / max(count, 1), "nsp_acc": nsp_correct / max(nsp_count, 1),
                "mlm_loss": loss_sum / max(count, 1), **kind_accuracies(dict(zip(KIND_TOTAL_NAMES, values[5:])))}

    def state(self) -> dict:
        """What a checkpoint keeps of the trainer. Every rank calls it: the metric totals since the last
        log point are summed over ranks here, and load_state gives that sum back to rank 0 only."""
        return {"optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "totals": self._all_reduce(self.totals.clone()).tolist(),
                "nonfinite": [int(self.counters[1].item()), int(self.counters[0].item())]}

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
        in_a_row, total = state["nonfinite"]
        self.counters = torch.tensor([total, in_a_row, in_a_row], dtype=torch.float64, device=self.dist.device)
        self.skipped_logged = total


def _metrics(values: dict[str, float]) -> dict[str, float] | None:
    """The log point's metrics; `loss` is mlm_loss + nsp_loss whatever --nsp-weight the update uses, so the
    figure reads the same across runs (the objective minimised is mlm_loss + nsp_weight x nsp_loss)."""
    if values["mlm_count"] == 0 or values["nsp_count"] == 0:
        return None
    mlm_loss = values["mlm_loss_sum"] / values["mlm_count"]
    nsp_loss = values["nsp_loss_sum"] / values["nsp_count"]
    return {"mlm_acc": values["mlm_correct"] / values["mlm_count"], "nsp_acc": values["nsp_correct"] / values["nsp_count"],
            "loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss, "tokens": values["tokens"],
            **kind_accuracies(values)}


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
