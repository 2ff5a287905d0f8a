"""The optimizer step: accumulation equals one big batch, the schedule, non-finite losses, a full disk."""

from __future__ import annotations

import errno
import math

import numpy as np
import pytest
import torch

import train_large_100k
from bertstudy.training import checkpoint as ckpt
from bertstudy.base.atomic_io import iter_jsonl
from bertstudy.base.errors import EXIT_RUNTIME
from bertstudy.model import BertForPretraining
from bertstudy.pretraining.packing import host_counts, pack_micro_batches
from bertstudy.pretraining.instances import training_instances
from bertstudy.training.config import preset_config
from bertstudy.training.trainer import Trainer, lr_at
from bertstudy.training.weights import CHECKPOINT, format_name, migrate
from tests.train_helpers import tiny_args, tiny_training_parts, write_tiny_corpus

torch.set_num_threads(1)

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32, max_predictions=5,
            dropout=0.0, warmup_steps=0, grad_clip=1.0, amp=False, device="cpu")


def _setup(**overrides):
    return tiny_training_parts(TINY, **overrides)


def _capture_grads(trainer: Trainer) -> list:
    """Record the gradients the optimizer is about to apply (after accumulation and clipping)."""
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append([p.grad.clone() for p in trainer.raw_model.parameters()])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return seen


def test_accumulating_4_by_8_equals_one_batch_of_32():
    config, sampler, model = _setup(batch_size=8, grad_accum=4)
    instances = training_instances(sampler, 3, 0, 0, 32)
    micro = pack_micro_batches(instances, config.max_seq_len, 4)
    assert len(micro) == 4
    masked_counts = [host_counts(b)[0] for b in micro]
    assert len(set(masked_counts)) > 1  # unequal masked tokens: a plain 1/accum weighting would be wrong
    accumulating = Trainer(config, model, sampler)
    grads_accumulated = _capture_grads(accumulating)
    accumulating.train_step(0, micro)

    config32, _, model32 = _setup(batch_size=32, grad_accum=1)
    whole = pack_micro_batches(instances, config.max_seq_len, 1)[0]
    single = Trainer(config32, model32, sampler)
    grads_whole = _capture_grads(single)
    single.train_step(0, [whole])

    for g_acc, g_one in zip(grads_accumulated[0], grads_whole[0]):
        torch.testing.assert_close(g_acc, g_one, rtol=1e-4, atol=1e-6)
    for p_acc, p_one in zip(model.parameters(), model32.parameters()):
        torch.testing.assert_close(p_acc, p_one, rtol=1e-4, atol=1e-6)
    totals_acc, totals_one = accumulating.take_totals(), single.take_totals()
    for key in totals_acc:
        assert totals_acc[key] == pytest.approx(totals_one[key], rel=1e-5)


def test_schedule_warms_up_linearly_then_cosine_to_the_floor():
    config = preset_config("quick_plateau", lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4) and lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(60, config) == pytest.approx(0.55e-3)  # half-way down the cosine
    assert lr_at(110, config) == pytest.approx(1e-4)
    values = [lr_at(s, config) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_non_finite_loss_skips_the_update_and_is_counted():
    config, sampler, model = _setup(batch_size=4, grad_accum=1)
    trainer = Trainer(config, model, sampler)
    assert trainer.train_step(0).finite
    with torch.no_grad():
        saved = model.mlm_bias.clone()
        model.mlm_bias[3] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    for step in (1, 2):
        result = trainer.train_step(step)
        assert not result.finite
    assert trainer.nonfinite_in_a_row == 2 and trainer.nonfinite_total == 2
    for p, q in zip(model.parameters(), before):  # no update, no optimizer state change from the bad steps
        assert torch.equal(p.detach(), q) or (torch.isnan(p).any() and torch.isnan(q).any())
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.mlm_bias.copy_(saved)
    assert trainer.train_step(3).finite and trainer.nonfinite_in_a_row == 0 and trainer.nonfinite_total == 2
    assert 0 <= trainer.take_totals()["mlm_acc"] <= 1


def test_run_stops_after_k_non_finite_losses_in_a_row(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    # an absurd learning rate: the first update blows the weights to ~1e30, every later loss is NaN
    code = train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", lr=1e30, warmup_steps=0, steps=20,
                                           save_interval=1, max_nonfinite=3, grad_clip=0))
    assert code == EXIT_RUNTIME
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 3 non-finite losses in a row") and "step_000001.pth" in err[-1]
    # the last good checkpoint is the one of the one finite step; the skipped steps saved nothing newer
    steps = [s for s, _ in ckpt.list_checkpoints(out / "checkpoints_100k")]
    assert steps and steps[0] == 1
    records = [r for _, r in iter_jsonl(out / "training_log_100k.jsonl")]
    assert records[-1]["kind"] == "end" and records[-1]["status"] == "failed"
    assert not (out / "stage4_large_100k_final.pth").exists()
    # the skipped updates are in the log and in check_progress.py's report
    assert [r["skipped_steps"] for r in records if r["kind"] == "train"] == [1]  # step 2 (step 3 raised first)
    import check_progress

    assert check_progress.main([str(out)]) == 0
    assert "1 update(s) (non-finite loss or fp16 overflow)" in capsys.readouterr().out


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def save_then_fill_the_disk(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: half written, then ENOSPC
            handle.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_then_fill_the_disk)
    code = train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", steps=6, save_interval=3))
    assert code == EXIT_RUNTIME
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "step_000006.pth" in err and "No space left" in err
    folder = out / "checkpoints_100k"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000003.pth"]  # no temp file left behind
    assert ckpt.load_checkpoint(folder / "step_000003.pth")["step"] == 3
    assert math.isfinite(ckpt.find_resume_checkpoint(folder)[0]["elapsed_s"])


def _optimizer_tensors(optimizer) -> dict:
    return {(i, key): value for i, per_param in enumerate(optimizer.state.values())
            for key, value in per_param.items() if torch.is_tensor(value)}


def test_resume_places_every_optimizer_tensor_for_this_device_in_both_directions():
    """torch places a loaded optimizer's tensors by the *saved* param groups
    (optimizer.py, _process_value_according_to_param_policy(..., state_dict["param_groups"])): a CPU
    checkpoint has no `fused`, so on CUDA `step` stayed on the CPU under the fused AdamW. The meta device
    stands in for the GPU: parameters there, the groups as configure_optimizer builds them on CUDA."""
    config, sampler, model = _setup()
    cpu = Trainer(config, model, sampler)
    cpu.train_step(0)
    saved = ckpt_roundtrip(cpu.state())
    assert all(not g.get("fused") for g in saved["optimizer"]["param_groups"])

    config, sampler, model = _setup()
    gpu_like = Trainer(config, model, sampler)
    model.to("meta")  # the stand-in device; the optimizer is built again on these parameters
    gpu_like.optimizer = model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2),
                                                   config.adam_eps, "cpu")
    for group in gpu_like.optimizer.param_groups:
        group.update(fused=True, foreach=None)  # AdamW(fused=True), as on CUDA
    gpu_like.load_state(saved)  # CPU -> "CUDA"
    placed = _optimizer_tensors(gpu_like.optimizer)
    assert {key for _, key in placed} == {"step", "exp_avg", "exp_avg_sq"}
    for (_, key), value in placed.items():
        assert value.device.type == "meta", (key, value.device)
        assert value.dtype == torch.float32
    assert all(g["fused"] is True for g in gpu_like.optimizer.param_groups)

    fused_saved = {**saved["optimizer"], "param_groups": [{**g, "fused": True} for g in saved["optimizer"]["param_groups"]]}
    config, sampler, model = _setup()
    back = Trainer(config, model, sampler)  # "CUDA" -> CPU: a checkpoint whose groups say fused
    back.load_state({**saved, "optimizer": fused_saved})
    for (_, key), value in _optimizer_tensors(back.optimizer).items():
        assert value.device.type == "cpu", key  # step on the CPU, as the unfused CPU AdamW wants it
    assert all(not g.get("fused") for g in back.optimizer.param_groups)
    back.train_step(1)  # and it steps


def ckpt_roundtrip(state: dict) -> dict:
    """A trainer state as a checkpoint file gives it back (torch.save / load_checkpoint's torch.load)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


def test_fp16_steps_the_grad_scaler_skips_are_counted_not_added():
    """With fp16 the GradScaler skips a step whose scaled gradients overflow; that step
    made no update, so its metrics must not be added and it counts as skipped (before: the loss was
    finite, so the step counted as good and reset the counter). A CPU GradScaler with a scale that
    overflows stands in for CUDA's."""
    config, sampler, model = _setup(batch_size=4, grad_accum=1)
    trainer = Trainer(config, model, sampler)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1e38)  # loss x 1e38 = inf in fp32
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.train_step(0)
    assert not result.finite
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))  # the scaler skipped it
    assert (trainer.nonfinite_total, trainer.nonfinite_in_a_row) == (1, 1)
    assert trainer.scaler.get_scale() < 1e38  # and lowered its scale
    totals, _, counters = trainer.log_point()
    assert totals is None and counters["skipped_since_log"] == 1
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    assert trainer.train_step(1).finite and trainer.nonfinite_in_a_row == 0 and trainer.nonfinite_total == 1
    totals, _, counters = trainer.log_point()
    assert totals is not None and counters["skipped_since_log"] == 0


SYNC_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


@pytest.mark.parametrize("world_size", [1, 2])
def test_the_step_reads_nothing_back_from_the_device(monkeypatch, world_size):
    """With the fused AdamW of a GPU run no value goes from the device to the host
    during a step (each read is a host-device sync that leaves the GPU idle while the host launches
    the next step). The fused AdamW also exists on the CPU, so the CPU stands in; every Tensor method
    that reads a value back is counted, and so are the collectives (a fake one under DDP)."""
    config, sampler, model = _setup(batch_size=4, grad_accum=1)
    trainer = Trainer(config, model, sampler)
    trainer.optimizer = model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2),
                                                  config.adam_eps, "cpu")
    for group in trainer.optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
    trainer.optimizer.defaults["fused"] = True
    collectives = []
    if world_size > 1:
        from bertstudy.training.device import Distributed

        trainer.dist = Distributed(rank=0, world_size=world_size)
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, op=None: collectives.append(op))
    batches = [trainer.micro_batches(s) for s in range(3)]
    trainer.train_step(0, batches[0])  # warm-up: optimizer state created
    reads = []
    for name in SYNC_METHODS:
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            reads.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    collectives.clear()
    for step in (1, 2):
        trainer.train_step(step, batches[step])
    monkeypatch.undo()
    assert reads == []
    assert len(collectives) == (0 if world_size == 1 else 4)  # per step: the masked-token counts, the skip flag
    with torch.no_grad():  # and the skip still works, on the device: a non-finite loss makes no update
        model.mlm_bias[3] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    trainer.dist = __import__("bertstudy.training.device", fromlist=["Distributed"]).Distributed()
    assert not trainer.train_step(3, batches[0]).finite
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q) or (torch.isnan(p).any() and torch.isnan(q).any())
    assert trainer.nonfinite_in_a_row == 1


# ---------------------------------------------------------------- MLM accuracy by position kind
def _hand_built_batch(answer: int, other: int) -> dict:
    """Two instances whose predicted positions are labelled by hand: [MASK] positions with labels
    answer, other, answer, answer; a random position labelled other; unchanged positions labelled
    answer, answer. A model that always predicts `answer` gets 3/4, 0/1 and 2/2 of them."""
    from bertstudy.pretraining.masking import KIND_MASK, KIND_RANDOM, KIND_UNCHANGED, NO_KIND
    from bertstudy.pretraining.packing import collate_packed
    from bertstudy.pretraining.vocab import CLS_ID, MASK_ID, SEP_ID

    def instance(tokens, predicted):  # predicted: {position: (label, kind)}
        ids = np.array([CLS_ID, *tokens, SEP_ID, tokens[0], SEP_ID])
        labels, kinds = np.full(len(ids), -100), np.full(len(ids), NO_KIND)
        for pos, (label, kind) in predicted.items():
            labels[pos], kinds[pos] = label, kind
            ids[pos] = MASK_ID if kind == KIND_MASK else ids[pos]
        types = np.r_[np.zeros(len(tokens) + 2, dtype=np.int64), np.ones(2, dtype=np.int64)]
        return ids, types, labels, 0, kinds

    first = instance([answer, other, answer, other, answer],
                     {1: (answer, KIND_MASK), 2: (other, KIND_MASK), 3: (answer, KIND_UNCHANGED), 4: (other, KIND_RANDOM)})
    second = instance([answer, answer, other], {1: (answer, KIND_MASK), 2: (answer, KIND_UNCHANGED),
                                                 3: (answer, KIND_MASK)})
    return collate_packed([first, second], [[0, 1]], 32)


def _always_predicts(model: BertForPretraining, token: int) -> None:
    with torch.no_grad():
        model.mlm_bias.zero_()
        model.mlm_bias[token] = 1e4  # the argmax at every position, whatever the hidden state


def test_accuracy_by_position_kind_on_a_hand_built_batch():
    from bertstudy.pretraining.loader import batch_to_device

    config, sampler, model = _setup(batch_size=4, grad_accum=1)
    answer, other = 10, 11
    _always_predicts(model, answer)
    trainer = Trainer(config, model, sampler)
    batch = _hand_built_batch(answer, other)
    result = trainer.evaluate([batch_to_device(batch, torch.device("cpu"))])
    assert result["mask_acc"] == pytest.approx(3 / 4)
    assert result["random_acc"] == 0.0
    assert result["unchanged_acc"] == 1.0
    assert result["mlm_acc"] == pytest.approx(5 / 7)  # the original's figure over all predicted positions
    # the same counts flow through a training step into the log point's totals
    with torch.no_grad():
        model.mlm_bias.requires_grad_(False)  # keep the forced answer through the update
    trainer.train_step(0, [batch])
    totals = trainer.take_totals()
    assert (totals["mask_acc"], totals["random_acc"], totals["unchanged_acc"]) == (pytest.approx(0.75), 0.0, 1.0)


def test_a_batch_without_kinds_and_an_old_checkpoints_totals_leave_the_kinds_out():
    config, sampler, model = _setup(batch_size=4, grad_accum=1)
    trainer = Trainer(config, model, sampler)
    batch = _hand_built_batch(10, 11)
    trainer.train_step(0, [{k: v for k, v in batch.items() if k != "mlm_kinds"}])
    totals = trainer.take_totals()
    assert "mlm_acc" in totals and not {"mask_acc", "random_acc", "unchanged_acc"} & set(totals)
    # a checkpoint written before the kind counters existed: 7 totals; padded as unknown, not as zero
    state = {**trainer.state(), "format": format_name(CHECKPOINT, 1)}
    state["totals"] = state["totals"][:7]
    state["totals"][1] = 3.0  # 3 masked positions counted before the checkpoint
    trainer.load_state(migrate(state))  # what loading the checkpoint file does
    trainer.train_step(1, [batch])
    first = trainer.take_totals()
    assert "mask_acc" not in first and "mlm_acc" in first  # this interval's kind counts are incomplete
    trainer.train_step(2, [batch])
    assert "mask_acc" in trainer.take_totals()  # the next interval has them whole
