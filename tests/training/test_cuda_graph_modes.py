"""CUDA-graph compile modes (reduce-overhead, max-autotune) train one micro-batch per step: accumulation is
refused in one line before any work, and their fixed shape is one that no step can overflow (a step that
needed a second micro-batch would overwrite the first's gradients in the graph's memory pool)."""

from __future__ import annotations

import numpy as np
import pytest

import train_large_100k
from bertstudy.base.errors import EXIT_USAGE, UsageError
from bertstudy.pretraining.instances import IGNORE_INDEX, NO_KIND
from bertstudy.pretraining.loader import first_overflow_step, plan_step_shape
from bertstudy.pretraining.packing import FixedShape, no_overflow_shape, pack_fixed, shape_can_overflow
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
    from bertstudy.training import run_setup
    from bertstudy.training.batch_fit import split_for

    monkeypatch.setattr(run_setup, "resolve_batch_split", lambda config, *a, **k: split_for(config, 4))
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


def test_on_the_study_corpus_the_sampled_shape_overflows_and_the_cuda_graph_shape_does_not(embedded_sampler):  # noqa: F811
    """large_100k at 128 x 1: the shape planned from steps 0-31 meets a step needing a second micro-batch
    within 300 steps (where a CUDA-graph run crashed); the CUDA-graph modes' shape meets none."""
    sampled = plan_step_shape(embedded_sampler, 42, 0, 128, 1)
    first = first_overflow_step(embedded_sampler, 42, 0, 128, sampled, 0, 300)
    assert first is not None and first >= 32 and shape_can_overflow(sampled, 128, 20)
    safe = no_overflow_shape(128, 20)
    assert first_overflow_step(embedded_sampler, 42, 0, 128, safe, first, first + 1) is None
    assert first_overflow_step(embedded_sampler, 42, 0, 128, safe, 0, 60) is None
