"""No device-to-host sync in the model: the forward with labels is one graph under torch._dynamo
(no graph break), and `--compile` trains on CPU (inductor's C++ backend: g++, installed by
scripts/install_system_deps.sh)."""

from __future__ import annotations

import shutil

import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import read_json
from bertstudy.pretraining.loader import batch_to_device, step_micro_batches
from bertstudy.model import BertConfig, BertForPretraining
from tests.pretraining.test_loader import _sampler
from tests.train_helpers import tiny_args, tiny_documents, write_tiny_corpus

torch.set_num_threads(1)


@pytest.mark.slow  # torch.compile builds C++ kernels
@pytest.mark.parametrize("training", [True, False])
def test_forward_with_labels_has_no_graph_break(training):
    sampler = _sampler(tiny_documents(20))
    batch = batch_to_device(step_micro_batches(sampler, 1, 0, 0, 8, 1)[0], torch.device("cpu"))
    model = BertForPretraining(BertConfig(vocab_size=sampler.vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                                          intermediate_size=64, max_position=32)).train(training)

    def loss_and_counts(**inputs):
        out = model(**inputs)
        return out.loss, out.mlm_correct, out.mlm_count, out.nsp_correct, out.nsp_count

    explained = torch._dynamo.explain(loss_and_counts)(**batch)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow  # torch.compile builds C++ kernels
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (scripts/install_system_deps.sh installs g++)")
def test_compile_trains_on_cpu(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "compiled"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", compile=True, steps=2, grad_accum=1,
                                           log_interval=1, eval_interval=2, save_interval=2)) == 0
    history = read_json(out / "training_history_100k.json")
    assert history["meta"]["config"]["compile"] is True and history["steps"] == [1, 2]
    assert all(0 < loss < 20 for loss in history["loss"])


def test_a_step_reads_one_value_back_from_the_device_not_one_per_micro_batch(monkeypatch):
    """The micro-batch loop never waits for the device: with the CPU's unfused AdamW the only value our
    code reads back is the step's finiteness check (before optimizer.step), not one per micro-batch;
    with the fused AdamW of a GPU none (tests/training/test_trainer.py)."""
    import traceback
    from pathlib import Path

    import numpy as np

    from bertstudy.training.config import preset_config
    from bertstudy.training.trainer import Trainer, model_config_for

    sampler = _sampler(tiny_documents(30))
    config = preset_config("quick", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32,
                           batch_size=4, grad_accum=4, device="cpu", amp=False, warmup_steps=0)
    trainer = Trainer(config, BertForPretraining(model_config_for(config, sampler.vocab_size)), sampler)
    batches = trainer.micro_batches(0)
    assert len(batches) == 4
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            caller = traceback.extract_stack()[-2]  # who asked; torch.optim's CPU step counters are host tensors
            if "bertstudy" in caller.filename:
                reads.append((_name, Path(caller.filename).name, caller.line))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    result = trainer.train_step(0, batches)
    monkeypatch.undo()
    assert result.finite  # read after the step (StepResult.good stays on the device until asked)
    assert len(reads) == 1 and reads[0][:2] == ("item", "trainer.py") and "finite" in reads[0][2], reads
    assert np.isfinite(trainer.take_totals()["loss"])


def test_default_compile_mode_takes_every_row_count_in_one_graph(tmp_path, monkeypatch):
    """Under --compile (not a CUDA-graph mode) the micro-batches keep the packed layout, whose row and slot
    counts change from step to step, and torch.compile compiles the model once for all of them (the
    trainer marks their first dimension dynamic): no padding rows, no extra micro-batch, no recompiles.
    The compiler's graph capture is real; its graphs run eagerly (a counting backend), as inductor's
    C++ build would take minutes here. The losses equal those of the same run without --compile."""
    from torch._dynamo.testing import CompileCounter

    from bertstudy.training import trainer as trainer_module

    counter, shapes = CompileCounter(), set()
    real_compile, real_mark = torch.compile, trainer_module.mark_first_dim_dynamic
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: real_compile(model, backend=counter))

    def marking(batch):
        shapes.add(tuple(tuple(t.shape) for t in batch.values()))
        real_mark(batch)

    monkeypatch.setattr(trainer_module, "mark_first_dim_dynamic", marking)
    torch._dynamo.reset()
    corpus = write_tiny_corpus(tmp_path)
    losses = {}
    for name, flags in (("eager", {}), ("compiled", dict(compile=True))):
        out = tmp_path / name
        assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", batch_size=4, grad_accum=2, steps=8,
                                               log_interval=1, **flags)) == 0
        losses[name] = read_json(out / "training_history_100k.json")["loss"]
    assert len(shapes) >= 2 and counter.frame_count == 1, (shapes, counter.frame_count)  # unmarked: 2 compiles
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
