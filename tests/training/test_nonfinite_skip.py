"""A step whose loss is non-finite makes no update: every weight and the optimizer's state (its `step`
count and both moments) stay exactly as they were, whichever path decides it (the host check before the
CPU's AdamW, found_inf handed to the fused AdamW kernel, the GradScaler's skip), also when only the last
micro-batch of an accumulated step is bad; the next good step then updates as usual. The loss is forced
to NaN by a forward hook, so the weights themselves stay finite and must stay bit-identical.
tests/training/test_cuda.py runs the same check on a GPU (fused AdamW, bf16 autocast)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bertstudy.training.device import Distributed
from bertstudy.training.trainer import Trainer
from tests.train_helpers import tiny_training_parts

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32, max_predictions=5,
            warmup_steps=0, dropout=0.0)


def _poison(model, bad_calls: set[int]):
    """A forward hook that makes the MLM loss NaN on the forward calls numbered in `bad_calls` (0-based)."""
    calls = []

    def hook(module, args, kwargs, out):
        calls.append(len(calls))
        if calls[-1] in bad_calls:
            return dataclasses.replace(out, mlm_loss=out.mlm_loss * float("nan"))
        return out

    return model.register_forward_hook(hook, with_kwargs=True)


def _optimizer_state(trainer: Trainer) -> list[dict]:
    return [{k: v.detach().clone() for k, v in trainer.optimizer.state[p].items()} for p in trainer.raw_model.parameters()]


def check_a_forced_nan_skips_the_step(device: torch.device, grad_accum: int = 1, fused: bool | None = None,
                                      scaler: bool = False) -> None:
    """The check itself, on `device` (shared with the CUDA test)."""
    config, sampler, model = tiny_training_parts(TINY, batch_size=4, grad_accum=grad_accum,
                                                 device=device.type, amp=None if device.type == "cuda" else False)
    trainer = Trainer(config, model.to(device), sampler, Distributed(device=device))
    if fused is not None:  # the CPU stands in for the GPU's fused kernel (it takes found_inf the same way)
        for group in trainer.optimizer.param_groups:
            group["fused"], group["foreach"] = fused, None
        trainer.optimizer.defaults["fused"] = fused
    if scaler:
        trainer.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**8)
    assert trainer.train_step(0).finite  # creates the optimizer's state
    weights = [p.detach().clone() for p in model.parameters()]
    state = _optimizer_state(trainer)
    hook = _poison(model, {grad_accum - 1})  # the step's last micro-batch only
    result = trainer.train_step(1)
    hook.remove()
    assert not result.finite and trainer.nonfinite_in_a_row == 1 and trainer.nonfinite_total == 1
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), weights))
    after = _optimizer_state(trainer)
    assert all(set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(after, state))
    assert all(torch.isfinite(w).all() for w in weights)  # the loss was bad, never the weights
    assert trainer.train_step(2).finite and trainer.nonfinite_in_a_row == 0
    for p, before in zip(model.parameters(), state):
        assert trainer.optimizer.state[p]["step"].item() == before["step"].item() + 1
    assert any(not torch.equal(p.detach(), w) for p, w in zip(model.parameters(), weights))


@pytest.mark.parametrize("grad_accum", [1, 2])
@pytest.mark.parametrize("fused", [False, True])
def test_a_forced_nan_leaves_weights_and_optimizer_step_unchanged_on_cpu(grad_accum, fused):
    check_a_forced_nan_skips_the_step(torch.device("cpu"), grad_accum, fused)


def test_with_the_grad_scaler_too():
    check_a_forced_nan_skips_the_step(torch.device("cpu"), 1, False, scaler=True)
