"""CUDA-only checks (marker `cuda`: skipped without a CUDA device; scripts/gpu_check.sh runs them with
CUDA_VISIBLE_DEVICES set): mixed precision against fp32, fused AdamW, the packed loader's pinned
batches, --batch-size auto's probe, a kill-and-resume on CUDA, the export from a CUDA run, and a forced
NaN loss leaving the weights and the fused AdamW's state unchanged.

Tolerances: bf16 keeps 8 bits of mantissa, so losses within 2e-2 relative and gradients within a
cosine similarity of 0.99 of fp32; fp16 (10 bits, with GradScaler) within 1e-2 / 0.995. CUDA
kernels (embedding backward's atomics, SDPA backward) are not bit-deterministic, so a resumed CUDA
run equals the uninterrupted one within 1e-3 (relative) in every logged figure, not bit for bit
(the bit-exact resume is tested on CPU: tests/training/test_resume.py)."""

from __future__ import annotations

import signal

import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import read_json
from bertstudy.training.batch_fit import resolve_batch_split
from bertstudy.training.hf_export import load_exported
from bertstudy.pretraining.loader import batch_to_device, make_step_loader, step_micro_batches
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.training.config import preset_config
from tests.pretraining.test_loader import _sampler
from tests.training.test_nonfinite_skip import check_a_forced_nan_skips_the_step
from tests.training.test_resume import RUN, _start, _wait_for
from tests.train_helpers import tiny_args, tiny_documents, write_tiny_corpus

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def _model_and_batch(seed: int = 0, hidden: int = 64):
    sampler = _sampler(tiny_documents(30), max_seq_len=32)
    batch = batch_to_device(step_micro_batches(sampler, seed, 0, 0, 16, 1)[0], CUDA)
    torch.manual_seed(seed)
    model = BertForPretraining(BertConfig(vocab_size=sampler.vocab_size, hidden_size=hidden, num_layers=2, num_heads=4,
                                          intermediate_size=4 * hidden, max_position=32, dropout=0.0)).to(CUDA)
    return model, batch


def _loss_and_grads(model, batch, dtype=None, scaler=None):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = model(**batch).loss
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(torch.optim.SGD(model.parameters(), lr=0.0))
    return loss.detach().float(), torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("dtype, loss_rtol, min_cosine", [(torch.bfloat16, 2e-2, 0.99), (torch.float16, 1e-2, 0.995)])
def test_mixed_precision_losses_and_gradients_match_fp32(dtype, loss_rtol, min_cosine):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    model, batch = _model_and_batch()
    loss32, grads32 = _loss_and_grads(model, batch)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    loss_mixed, grads_mixed = _loss_and_grads(model, batch, dtype, scaler)
    torch.testing.assert_close(loss_mixed, loss32, rtol=loss_rtol, atol=1e-3)
    assert torch.isfinite(grads_mixed).all()
    assert torch.nn.functional.cosine_similarity(grads_mixed, grads32, dim=0) > min_cosine


def test_fused_adamw_on_cuda_takes_the_plain_steps():
    model, batch = _model_and_batch(seed=1)
    twin = BertForPretraining(model.config).to(CUDA)
    twin.load_state_dict(model.state_dict())
    fused = model.configure_optimizer(1e-3, 0.01, (0.9, 0.98), 1e-6, "cuda")
    plain = twin.configure_optimizer(1e-3, 0.01, (0.9, 0.98), 1e-6, "cpu")  # the for-each implementation
    assert fused.defaults.get("fused") is True
    for _ in range(3):
        for m, opt in ((model, fused), (twin, plain)):
            opt.zero_grad(set_to_none=True)
            m(**batch).loss.backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_loader_pins_and_prefetches_the_same_batches():
    sampler = _sampler(tiny_documents(20))
    loader = make_step_loader(sampler, 3, 0, 4, 2, 0, 3, CUDA, num_workers=2)
    for step, batches in loader:
        direct = step_micro_batches(sampler, 3, int(step), 0, 4, 2)
        for got, want in zip(batches, direct):
            assert all(got[k].is_pinned() and torch.equal(got[k], torch.from_numpy(want[k])) for k in want)


def test_batch_size_auto_probe_picks_a_divisor_of_the_global_batch():
    model, _ = _model_and_batch()
    config = preset_config("quick", batch_size=8, grad_accum=4, auto_batch=True, max_seq_len=32)
    chosen = resolve_batch_split(config, model, model.config.vocab_size, CUDA, lambda: torch.autocast("cuda", torch.bfloat16))
    assert chosen.batch_size * chosen.grad_accum == 32 and chosen.batch_size >= 8  # a GPU holds 32 tiny rows


def test_resume_on_cuda_matches_the_uninterrupted_run(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert train_large_100k.main(tiny_args(corpus, reference, tmp_path / "cache", device="cuda", compile=False, **RUN)) == 0
    args = tiny_args(corpus, resumed, tmp_path / "cache", device="cuda", compile=False, **RUN)
    process = _start(args, tmp_path / "unused", step_pause=0.5)
    log = resumed / "training_log_100k.jsonl"
    _wait_for(lambda: log.exists() and '"kind": "train", "step": 6' in log.read_text(encoding="utf-8"), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert train_large_100k.main(args + ["--resume"]) == 0
    a, b = read_json(reference / "training_history_100k.json"), read_json(resumed / "training_history_100k.json")
    assert a["steps"] == b["steps"] and a["eval_steps"] == b["eval_steps"]
    for key in ("loss", "mlm_acc", "nsp_acc", "mlm_loss", "eval_mlm_loss"):
        torch.testing.assert_close(torch.tensor(b[key]), torch.tensor(a[key]), rtol=1e-3, atol=1e-4, msg=key)


def test_export_from_a_cuda_run_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", device="cuda", compile=False, steps=4)) == 0
    ours, _ = load_exported(out / "export_hf")
    theirs = transformers.BertForPreTraining.from_pretrained(out / "export_hf").eval()
    ids = torch.randint(5, theirs.config.vocab_size, (2, 16))
    types = torch.zeros_like(ids)
    with torch.no_grad():
        expected = theirs(input_ids=ids, token_type_ids=types).prediction_logits
        got = ours.eval()(ids, types)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_sigterm_to_the_group_with_loader_workers_on_cuda_then_exact_resume(tmp_path):
    """On the GPU: two pinned-memory loader workers, SIGTERM to the whole process
    group mid-run: checkpoint, exit 130, no process left, and the resumed run's history and weights
    equal an uninterrupted run's (same device, same kernels: exact)."""
    import os
    import subprocess
    import sys
    import time

    from tests.training.test_resume import LAUNCHER, ROOT, _assert_same_as_reference, _group_alive

    corpus = write_tiny_corpus(tmp_path)
    reference, out = tmp_path / "reference", tmp_path / "terminated"
    run = {**RUN, "device": "cuda", "data_workers": 2, "compile": False}
    assert train_large_100k.main(tiny_args(corpus, reference, tmp_path / "cache", **run)) == 0
    args = tiny_args(corpus, out, tmp_path / "cache", **run)
    env = {**os.environ, "SLOW_STEP_SECONDS": "0.25", "SLOW_SAVE_STEP": "-1", "SLOW_SAVE_SECONDS": "0",
           "IN_WRITE_MARKER": str(tmp_path / "unused")}
    process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    log = out / "training_log_100k.jsonl"
    _wait_for(lambda: log.exists() and '"kind": "train", "step": 6' in log.read_text(encoding="utf-8"), process)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 130, process.stderr.read().decode()[-3000:]
    deadline = time.monotonic() + 15
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_alive(process.pid) == []
    assert train_large_100k.main(args + ["--resume"]) == 0
    _assert_same_as_reference(reference, out, extra_checkpoints=True)


@pytest.mark.parametrize("grad_accum, scaler", [(1, False), (2, False), (1, True)])
def test_a_forced_nan_leaves_weights_and_the_fused_optimizers_step_unchanged(grad_accum, scaler):
    """On the GPU the skip is decided on the device: found_inf handed to the fused AdamW kernel (bf16
    autocast), or the GradScaler's own found_inf (fp16's path); weights, `step` and moments stay bit-equal."""
    check_a_forced_nan_skips_the_step(CUDA, grad_accum, scaler=scaler)


def test_a_probe_fitted_on_the_gpu_predicts_what_the_cpus_fit_predicts():
    """probe.fit_linear_probe on CUDA (where a GPU pass fits): the same predictions as on the CPU, weights
    equal up to rounding, and the probe back on the CPU."""
    from bertstudy.downstream.probe import fit_linear_probe

    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 32, generator=generator) * 0.5
    labels = torch.randint(0, 4, (2000,), generator=generator)
    features = centers[labels] + torch.randn(2000, 32, generator=generator) * 2  # overlapping classes (70% right): a real fit
    on_cpu = fit_linear_probe(features[:1500], labels[:1500], 4)
    on_gpu = fit_linear_probe(features[:1500], labels[:1500], 4, device="cuda")
    assert on_gpu.weight.device.type == "cpu"
    assert torch.allclose(on_gpu.weight, on_cpu.weight, rtol=1e-2, atol=1e-2)
    agree = (on_gpu.log_probs(features[1500:]).argmax(-1) == on_cpu.log_probs(features[1500:]).argmax(-1)).float()
    assert agree.mean() >= 0.99
