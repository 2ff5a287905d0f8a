"""The FLOPs of training steps from their batches: what the real (non-padding) tokens need, and what the
padded grid computes (model.training_flops on each count). A step of large_100k at 128 instances has
about 13,300 real tokens of its 16,384 positions, so a FLOP figure from the positions (or from
tokens x a per-token rate at the full length) overstates the work by a quarter or more."""

from __future__ import annotations

import numpy as np

from bertstudy.model import BertConfig, training_flops
from bertstudy.pretraining.packing import block_lengths, host_counts


def micro_batch_flops(config: BertConfig, batch: dict) -> dict[str, int]:
    """{flops, computed_flops, tokens, positions} of one micro-batch (numpy arrays or CPU tensors)."""
    batch = {key: np.asarray(value) for key, value in batch.items()}
    masked, sentences, tokens = host_counts(batch)
    lengths = block_lengths(batch).astype(np.int64)
    rows, row_len = batch["input_ids"].shape
    slots = len(batch["mlm_labels"])
    nsp_slots = len(batch["nsp_labels"])
    return {"flops": training_flops(config, tokens, int((lengths ** 2).sum()), masked, sentences),
            "computed_flops": training_flops(config, rows * row_len, rows * row_len ** 2, slots, nsp_slots),
            "tokens": tokens, "positions": rows * row_len}


def step_flops(config: BertConfig, batches: list[dict]) -> dict[str, int]:
    """The micro-batches' figures summed: one optimizer step (or any list of micro-batches)."""
    total = {"flops": 0, "computed_flops": 0, "tokens": 0, "positions": 0}
    for batch in batches:
        for key, value in micro_batch_flops(config, batch).items():
            total[key] += value
    return total
