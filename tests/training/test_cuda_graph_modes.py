"""CUDA-graph compile modes (reduce-overhead, max-autotune) train one micro-batch per step: accumulation is
refused in one line before any work, and their fixed shape is one that no step can overflow (a step that
needed a second micro-batch would overwrite the first's gradients in the graph's memory pool)."""

from __future__ import annotations

import numpy as np
import pytest

import train_large_100k
from bertstudy.base.errors import EXIT_USAGE, UsageError
from bertstudy.pretraining.masking import IGNORE_INDEX, NO_KIND
from bertstudy.pretraining.loader import first_overflow_step, plan_step_buckets, plan_step_shape, step_micro_batches
from bertstudy.pretraining.packing import (FixedShape, RowBuckets, no_overflow_shape, pack_fixed, plan_row_buckets,
                                           shape_can_overflow)
from bertstudy.training.config import check_cuda_graph_split, preset_config
from tests.pretraining.test_loader import embedded_sampler  # noqa: F401  (the module-scoped fixture)
from tests.train_helpers import tiny_args, write_tiny_corpus


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_a_cuda_graph_mode_with_accumulation_is_refused_in_one_line_before_any_work(tmp_path, capsys, mode):
    corpus = write_tiny_corpus(tmp_path)
    out, cache = tmp_path / "run", tmp_path / "cache"
    code = train_large_100k.main(tiny_args(corpus, out, cache, compile=True, compile_mode=mode, batch_size=4,
                                           grad_accum=2))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert len(err) == 1 and f"--compile-mode {mode} (CUDA graphs)" in err[0] and "4 x 2" in err[0]
    assert "--batch-size 8 --grad-accum 1" in err[0]
    assert not out.exists() and not cache.exists()  # nothing read into a cache, nothing written


def test_the_rule_itself():
    bad = preset_config("large_100k", compile=True, compile_mode="reduce-overhead", batch_size=64, grad_accum=2)
    with pytest.raises(UsageError, match="64 x 2"):
        check_cuda_graph_split(bad)
    for fine in (dict(compile=True, compile_mode="default", batch_size=64, grad_accum=2),  # no CUDA graphs
                 dict(compile=True, compile_mode="max-autotune-no-cudagraphs", batch_size=64, grad_accum=2),
                 dict(compile=True, compile_mode="reduce-overhead", batch_size=128, grad_accum=1),
                 dict(compile=False, compile_mode="reduce-overhead", batch_size=32, grad_accum=4)):
        check_cuda_graph_split(preset_config("large_100k", **fine))


def test_a_split_the_batch_probe_chose_is_refused_too(tmp_path, capsys, monkeypatch):
    """On a GPU the batch probe may choose accumulation (a small card): refused once it has, before a step."""
    from bertstudy.training import run_start
    from bertstudy.training.batch_fit import split_for

    monkeypatch.setattr(run_start, "with_device_split", lambda config, *a, **k: split_for(config, 4))
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    code = train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", compile=True, compile_mode="reduce-overhead",
                                           batch_size=8, grad_accum=1))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(err) == 1 and "4 x 2" in err[0]
    assert not (out / "training_log_100k.jsonl").exists()  # refused before the run's first file


def _full_instances(count: int, row_len: int, predictions: int) -> list[tuple]:
    """The worst case for a shape: every instance fills a row and has the most masked positions."""
    out = []
    for i in range(count):
        ids = np.full(row_len, 7 + i, dtype=np.int64)
        labels = np.full(row_len, IGNORE_INDEX, dtype=np.int64)
        labels[1:1 + predictions] = 9
        kinds = np.where(labels != IGNORE_INDEX, 0, NO_KIND)
        out.append((ids, np.zeros(row_len, dtype=np.int64), labels, i % 2, kinds))
    return out


def test_the_no_overflow_shape_holds_the_worst_step_in_one_micro_batch():
    worst = _full_instances(16, 32, 5)
    shape = no_overflow_shape(16, 5)
    assert shape == FixedShape(16, 128, 16) and not shape_can_overflow(shape, 16, 5)
    assert len(pack_fixed(worst, 32, shape)) == 1
    sampled = FixedShape(12, 128, 16)  # what a planner sampling short instances gives: fewer rows
    assert shape_can_overflow(sampled, 16, 5) and len(pack_fixed(worst, 32, sampled)) == 2
    assert shape_can_overflow(FixedShape(16, 64, 16), 16, 5) and len(pack_fixed(worst, 32, FixedShape(16, 64, 16))) == 2


@pytest.mark.slow  # the embedded corpus tokenised and sampled
def test_on_the_study_corpus_the_sampled_shape_overflows_and_the_cuda_graph_shape_does_not(embedded_sampler):  # noqa: F811
    """large_100k at 128 x 1: the shape planned from steps 0-31 meets a step needing a second micro-batch
    within 300 steps (where a CUDA-graph run crashed); the CUDA-graph modes' shape meets none."""
    sampled = plan_step_shape(embedded_sampler, 42, 0, 128, 1)
    first = first_overflow_step(embedded_sampler, 42, 0, 128, sampled, 0, 300)
    assert first is not None and first >= 32 and shape_can_overflow(sampled, 128, 20)
    safe = no_overflow_shape(128, 20)
    assert first_overflow_step(embedded_sampler, 42, 0, 128, safe, first, first + 1) is None
    assert first_overflow_step(embedded_sampler, 42, 0, 128, safe, 0, 60) is None


def test_the_row_bucket_planner_wastes_the_fewest_rows():
    counts = [10, 10, 11, 12, 12, 12, 14, 16]
    # two free buckets: (10, 12) pads 11 -> 12 and 14 -> 16, 3 rows; (11, 12) 4, (12, 14) 5, (10, 14) 9
    assert plan_row_buckets(counts, 16, 5, buckets=3) == RowBuckets((10, 12, 16), 128, 16)
    assert plan_row_buckets(counts, 16, 5, buckets=4).rows == (10, 12, 14, 16)  # only 11 -> 12 left
    assert plan_row_buckets([3, 3, 3], 16, 5).rows == (3, 16)  # no bucket that nothing needs
    assert plan_row_buckets([16, 20], 16, 5).rows == (16,)  # the worst case is always the last


@pytest.mark.slow  # the embedded corpus tokenised, then 300 steps planned
def test_row_buckets_over_300_steps_of_large_100k(embedded_sampler):  # noqa: F811
    """The CUDA-graph modes' shapes at 128 x 1, planned from steps 0-31: every one of 300 steps is one
    micro-batch (no overflow), in at most 4 shapes whose MLM and NSP slots are fixed, holding exactly its
    instances, at a fraction of the worst-case shape's padding."""
    from bertstudy.pretraining.instances import training_instances
    from bertstudy.pretraining.packing import PACKED_KEYS, padding_fraction
    from tests.pretraining.test_loader import _same, _unpack

    buckets = plan_step_buckets(embedded_sampler, 42, 0, 128)
    assert len(buckets.rows) <= 4 and buckets.rows[-1] == 128 and buckets == plan_step_buckets(embedded_sampler, 42, 0, 128)
    batches, shapes = [], set()
    for step in range(300):
        micro = step_micro_batches(embedded_sampler, 42, step, 0, 128, 1, buckets)
        assert len(micro) == 1
        shapes.add(tuple(micro[0][k].shape for k in PACKED_KEYS))
        batches += micro
        if step < 5:
            instances = training_instances(embedded_sampler, 42, step, 0, 128)
            b = micro[0]
            unpacked = list(zip(b["instance_index"][b["instance_index"] >= 0], _unpack(b)))
            assert sorted(int(i) for i, _ in unpacked) == list(range(128))
            assert all(_same(inst, instances[int(i)]) for i, inst in unpacked)
    assert len(shapes) <= 4 and {s[4:] for s in shapes} == {((buckets.mlm_slots,),) * 3 + ((buckets.nsp_slots,),) * 2}
    padding = padding_fraction(batches)
    worst = padding_fraction([pack_fixed(training_instances(embedded_sampler, 42, s, 0, 128), 128,
                                         no_overflow_shape(128, 20))[0] for s in range(0, 300, 10)])
    print(f"row buckets {buckets.rows}: padding {padding:.2%} over 300 steps (worst-case shape {worst:.2%})")
    assert padding < 0.07 and worst > 0.15


def test_a_cuda_graph_mode_run_trains_on_row_buckets_as_an_eager_run(tmp_path, monkeypatch):
    """The run's path in a CUDA-graph mode (torch.compile itself stood in for: the CPU cannot capture CUDA
    graphs, and compiling here takes minutes): its batches come in row buckets, one micro-batch a step, and
    the losses equal those of the same run without --compile (padding rows and slots change no number)."""
    import torch

    from bertstudy.base.atomic_io import read_json
    from bertstudy.training import run_data

    planned = []
    real_plan = run_data.plan_step_buckets
    monkeypatch.setattr(run_data, "plan_step_buckets", lambda *a: planned.append(real_plan(*a)) or planned[-1])
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    corpus = write_tiny_corpus(tmp_path)
    losses = {}
    for name, flags in (("eager", {}), ("graphs", dict(compile=True, compile_mode="reduce-overhead"))):
        out = tmp_path / name
        assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", batch_size=8, grad_accum=1, steps=6,
                                               **flags)) == 0
        losses[name] = read_json(out / "training_history_100k.json")["loss"]
    assert len(planned) == 1 and planned[0].rows[-1] == 8
    assert losses["graphs"] == pytest.approx(losses["eager"], rel=1e-5)
