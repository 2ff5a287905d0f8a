"""FLOPs from a step's real tokens (model.training_flops, training/flops.py): a shape counted by hand, and
large_100k's steps on the study corpus against the per-token figure at the full length."""

from __future__ import annotations

import numpy as np
import pytest

from bertstudy.model import BertConfig, BertForPretraining, training_flops, training_flops_per_token
from bertstudy.pretraining.masking import IGNORE_INDEX
from bertstudy.pretraining.loader import plan_step_shape, step_micro_batches
from bertstudy.pretraining.packing import block_lengths
from bertstudy.training.flops import micro_batch_flops, step_flops
from tests.pretraining.test_loader import embedded_sampler  # noqa: F401  (the module-scoped fixture)

TINY = BertConfig(vocab_size=10, hidden_size=4, num_layers=2, num_heads=2, intermediate_size=8, max_position=8)


def _hand_batch() -> dict:
    """One row of 8 positions: instance 1 of 3 tokens, instance 2 of 2, 3 padding; 2 of 4 MLM slots used,
    2 of 3 NSP slots."""
    return {"input_ids": np.ones((1, 8), dtype=np.int64), "instance_ids": np.array([[1, 1, 1, 2, 2, 0, 0, 0]]),
            "mlm_labels": np.array([5, 6, IGNORE_INDEX, IGNORE_INDEX]), "nsp_labels": np.array([0, 1, IGNORE_INDEX])}


def test_a_hand_counted_micro_batch():
    # multiply-adds per layer and token: Q, K, V, output 4 x 4^2 = 64, feed-forward 2 x 4 x 8 = 64 -> 128
    # real: 5 tokens x 128 + attention (3^2 + 2^2 = 13) x 2 x 4 = 104 -> 744 a layer, 1,488 for two layers;
    # 2 masked x (4^2 + 4 x 10) = 112; 2 sentences x (4^2 + 2 x 4) = 48; 1,648 multiply-adds x 6 = 9,888
    # computed: 8 positions x 128 + 8^2 x 8 = 1,536 a layer, 3,072; 4 slots x 56 = 224; 3 slots x 24 = 72 -> 3,368 x 6
    assert list(block_lengths(_hand_batch())) == [3, 2]
    assert micro_batch_flops(TINY, _hand_batch()) == {"flops": 9_888, "computed_flops": 20_208, "tokens": 5,
                                                      "positions": 8}
    assert training_flops(TINY, 5, 13, 2, 2) == 9_888
    assert step_flops(TINY, [_hand_batch(), _hand_batch()])["flops"] == 2 * 9_888


def test_the_padded_layout_counts_its_rows():
    batch = {"input_ids": np.ones((2, 8), dtype=np.int64), "attention_mask": np.array([[1] * 3 + [0] * 5, [1] * 8]),
             "mlm_labels": np.array([5, IGNORE_INDEX]), "nsp_labels": np.array([0, 1])}
    assert list(block_lengths(batch)) == [3, 8]
    assert micro_batch_flops(TINY, batch)["flops"] == training_flops(TINY, 11, 9 + 64, 1, 2)


@pytest.mark.slow  # the embedded corpus tokenised and sampled
def test_large_100k_steps_need_fewer_flops_than_the_positions_suggest(embedded_sampler):  # noqa: F811
    """On the study corpus a step of 128 instances has ~13,000 real tokens: about 3.1-3.2 TFLOP, not the
    3.9 of 16,384 positions at the full-length per-token rate; the fixed shape computes more than it needs."""
    config = BertConfig(vocab_size=embedded_sampler.vocab_size, hidden_size=512, num_layers=12, num_heads=8,
                        intermediate_size=2048, max_position=128)
    shape = plan_step_shape(embedded_sampler, 42, 0, 128, 1)
    steps = [step_flops(config, step_micro_batches(embedded_sampler, 42, s, 0, 128, 1, shape)) for s in range(8)]
    per_step = np.mean([s["flops"] for s in steps])
    tokens = np.mean([s["tokens"] for s in steps])
    assert 12_000 < tokens < 14_500 and 2.8e12 < per_step < 3.5e12
    full_rate = 16_384 * training_flops_per_token(BertForPretraining(config), 128)
    assert 3.8e12 < full_rate < 4.0e12 and per_step < 0.9 * full_rate  # the figure the docs quoted, and why wrong
    assert all(s["computed_flops"] > 1.05 * s["flops"] for s in steps)
