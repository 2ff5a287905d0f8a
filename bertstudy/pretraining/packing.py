"""Pack unpadded instances into full rows, so almost no computed position is padding.

Many instances are shorter than max_seq_len (short documents end a chunk early; a share
short_seq_prob is drawn short on purpose, as BERT does), so a padded batch spends much of its compute
on padding (docs/PERFORMANCE.md has the figures). Here several instances share a row of max_seq_len
positions, each keeping what it would have had alone:

  * positions restart at 0 for each instance (`position_ids`), token types are the instance's own;
  * `instance_ids` numbers the instances of a row 1, 2, ... (0 = padding) and the model lets a
    position attend only to positions with the same number (a block-diagonal mask), so an
    instance never sees its neighbours: every output equals that of the instance in a row of its own;
  * the masked positions and the [CLS] positions are flat indices into the [rows x max_seq_len]
    grid, computed here on the host with their labels, so the model gathers them without a
    data-dependent shape (no device-to-host sync, no torch.compile graph break).

Rows are filled first-fit-decreasing (longest instance first, ties by index), a pure function of
the instances: a step's batch stays a pure function of (seed, step, micro-step, rank).

Under --compile the packed layout stays as it is (a variable row count, slots rounded up to multiples
of 64 and 8): the trainer marks every input's first dimension dynamic, so torch.compile compiles one
graph for every row count, with no padding rows beyond what packing leaves and no extra micro-batch.
The CUDA-graph compile modes (`reduce-overhead`, `max-autotune`) capture one graph per shape and cannot
take a second micro-batch in a step (its forward reuses the graph's memory pool, where the first
micro-batch's gradients live), so they train one micro-batch per step in `RowBuckets`: up to 4 row
counts planned from the first steps (`plan_row_buckets`), the largest one row per instance
(`no_overflow_shape`, which no step can overflow), MLM and NSP slots fixed at the most a step can
need. `FixedShape` cut into micro-batches (`pack_fixed`, `plan_fixed_shape`) is the one-shape plan
these replaced; it stays to find the steps where such a plan overflows (the GPU check runs through
one). The padding of each layout is in docs/PERFORMANCE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertstudy.pretraining.masking import IGNORE_INDEX, NO_KIND
from bertstudy.pretraining.vocab import PAD_ID

PACKED_KEYS = ("input_ids", "token_type_ids", "position_ids", "instance_ids", "mlm_positions", "mlm_labels",
               "mlm_kinds", "cls_positions", "nsp_labels")


def pack_rows(lengths: np.ndarray, row_len: int) -> list[list[int]]:
    """First-fit decreasing: each instance (longest first, ties by index) goes into the first row with
    room for it. Returns the rows as lists of instance indices, in the order they were opened."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    rows: list[list[int]] = []
    room: list[int] = []  # free positions of each row, in row order
    for i in order.tolist():
        n = int(lengths[i])
        if n > row_len:
            raise ValueError(f"instance {i} has {n} tokens, more than a row's {row_len}")
        for r, free in enumerate(room):
            if free >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(row_len - n)
    return rows


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class FixedShape:
    """Every micro-batch: `rows` rows, `mlm_slots` masked-position slots, `nsp_slots` [CLS] slots."""
    rows: int
    mlm_slots: int
    nsp_slots: int


# what the fixed counts add to the sample's most per micro-batch: rows none (a row costs far more than an
# MLM or NSP slot; a step with more rows than sampled gets one more micro-batch), the cheap MLM and NSP
# slots 25%, so that they do not close a micro-batch before its rows are full
SHAPE_SLACK = (0.0, 0.25, 0.25)


def plan_fixed_shape(steps: list[list[tuple]], row_len: int, num_micro: int) -> FixedShape:
    """The fixed shape for a run from a sample of its steps' instances: the most rows, masked tokens
    and instances any sampled step needs, per micro-batch, plus SHAPE_SLACK, rounded up (MLM slots to
    64, NSP slots to 8); never below what the fullest single row of the sample needs."""
    most = np.zeros(3)
    one_row = np.zeros(3)
    for instances in steps:
        rows = pack_rows(np.asarray([len(inst[0]) for inst in instances]), row_len)
        needs = np.array([_row_needs(instances, row) for row in rows])
        most = np.maximum(most, [len(rows), needs[:, 0].sum(), needs[:, 1].sum()])
        one_row = np.maximum(one_row, [1, needs[:, 0].max(), needs[:, 1].max()])
    per_micro = np.maximum(np.ceil(most / num_micro * (1 + np.asarray(SHAPE_SLACK))), one_row).astype(int)
    return FixedShape(int(per_micro[0]), _round_up(int(per_micro[1]), 64), _round_up(int(per_micro[2]), 8))


def no_overflow_shape(instances_per_micro: int, max_predictions: int) -> FixedShape:
    """The shape that holds any micro-batch of `instances_per_micro` instances in one: a row per instance
    at most, max_predictions masked positions and one [CLS] each. The CUDA-graph compile modes train on
    it with one micro-batch per step (a second micro-batch in a step would overwrite the first's gradients
    in the graph's memory pool), paying padding for the rows a step does not fill."""
    return FixedShape(instances_per_micro, _round_up(instances_per_micro * max_predictions, 64),
                      _round_up(instances_per_micro, 8))


def shape_can_overflow(shape: FixedShape, instances_per_micro: int, max_predictions: int) -> bool:
    """Whether some step of `instances_per_micro` instances could need a second micro-batch of `shape`."""
    worst = no_overflow_shape(instances_per_micro, max_predictions)
    return shape.rows < worst.rows or shape.mlm_slots < instances_per_micro * max_predictions or \
        shape.nsp_slots < instances_per_micro


@dataclass(frozen=True)
class RowBuckets:
    """One micro-batch per step in one of a few shapes: `rows` ascending (the last holds any step), the MLM
    and NSP slots fixed at what any step can need. Each step takes the smallest row count its packed rows
    fit: a few compiled graphs instead of one shape padded to the worst step."""
    rows: tuple[int, ...]
    mlm_slots: int
    nsp_slots: int

    def shape_for(self, rows_needed: int) -> FixedShape:
        return FixedShape(next(r for r in self.rows if r >= rows_needed), self.mlm_slots, self.nsp_slots)


def plan_row_buckets(row_counts: list[int], instances_per_micro: int, max_predictions: int,
                     buckets: int = 4) -> RowBuckets:
    """The row buckets that waste the fewest padding rows over a sample of steps' packed row counts: up to
    buckets - 1 of the sampled counts (chosen exactly, by dynamic programming over the distinct counts)
    and the worst case, one row per instance, so no step ever needs a second micro-batch."""
    worst = no_overflow_shape(instances_per_micro, max_predictions)
    values, counts = np.unique(np.minimum(np.asarray(row_counts, dtype=int), worst.rows), return_counts=True)
    values, counts = values[values < worst.rows].tolist(), counts[values < worst.rows].tolist()
    # cost[i][j]: padding rows when the sampled counts values[i..j] all take the bucket values[j]
    cost = [[sum(c * (values[j] - v) for v, c in zip(values[i:j + 1], counts[i:j + 1])) for j in range(len(values))]
            for i in range(len(values))]
    best = {(-1, 0): (0, ())}  # (last chosen index, buckets used) -> (padding rows, chosen values)
    for j in range(len(values)):
        for used in range(1, buckets):
            options = [(best[(i, used - 1)][0] + cost[i + 1][j], best[(i, used - 1)][1] + (values[j],))
                       for i in range(-1, j) if (i, used - 1) in best]
            if options:
                best[(j, used)] = min(options)
    # counts above the last chosen bucket take the worst case
    def total(key):
        last = key[0]
        tail = sum(c * (worst.rows - v) for v, c in zip(values[last + 1:], counts[last + 1:]))
        return best[key][0] + tail
    chosen = best[min(best, key=lambda key: (total(key), key[1]))][1]
    return RowBuckets((*chosen, worst.rows), worst.mlm_slots, worst.nsp_slots)


def pack_bucketed(instances: list[tuple], row_len: int, buckets: RowBuckets) -> dict[str, np.ndarray]:
    """All instances packed into rows (as every layout: first-fit decreasing), as one micro-batch of the
    smallest bucket that holds them."""
    rows = pack_rows(np.asarray([len(inst[0]) for inst in instances]), row_len)
    return collate_packed(instances, rows, row_len, shape=buckets.shape_for(len(rows)))


def _row_needs(instances: list[tuple], row: list[int]) -> tuple[int, int]:
    """(masked positions, instances) of one packed row."""
    return sum(int((np.asarray(instances[i][2]) != IGNORE_INDEX).sum()) for i in row), len(row)


def pack_fixed(instances: list[tuple], row_len: int, shape: FixedShape) -> list[dict[str, np.ndarray]]:
    """Pack all instances into rows, then cut the rows, in order, into micro-batches of `shape`: a
    micro-batch closes when the next row would pass its row, MLM or NSP count."""
    rows = pack_rows(np.asarray([len(inst[0]) for inst in instances]), row_len)
    chunks: list[list[list[int]]] = [[]]
    used = np.zeros(2, dtype=int)
    for row in rows:
        need = np.array(_row_needs(instances, row))
        if need[0] > shape.mlm_slots or need[1] > shape.nsp_slots:
            raise ValueError(f"one packed row needs {need.tolist()} MLM/NSP slots, more than the fixed shape's {shape}")
        if len(chunks[-1]) == shape.rows or (used + need > [shape.mlm_slots, shape.nsp_slots]).any():
            chunks.append([])
            used[:] = 0
        chunks[-1].append(row)
        used += need
    return [collate_packed(instances, chunk, row_len, shape=shape) for chunk in chunks]


def collate_packed(instances: list[tuple], rows: list[list[int]], row_len: int, mlm_multiple: int = 64,
                   nsp_multiple: int = 8, shape: FixedShape | None = None) -> dict[str, np.ndarray]:
    """The packed micro-batch of `rows` (indices into `instances`, each (ids, types, labels, nsp, kinds)).

    mlm_positions/mlm_labels/mlm_kinds and cls_positions/nsp_labels are padded (IGNORE_INDEX labels,
    NO_KIND kinds) to a multiple of mlm_multiple / nsp_multiple, so a run sees few distinct shapes
    (torch.compile, CUDA graphs), or to exactly `shape`'s counts, rows included (padding rows: [PAD],
    instance id 0). `instance_index` says which instance each NSP slot holds (-1: padding slot)."""
    num_rows = len(rows) if shape is None else shape.rows
    ids = np.full((num_rows, row_len), PAD_ID, dtype=np.int64)
    types = np.zeros((num_rows, row_len), dtype=np.int64)
    positions = np.zeros((num_rows, row_len), dtype=np.int64)
    instance_ids = np.zeros((num_rows, row_len), dtype=np.int64)
    labels_grid = np.full((num_rows, row_len), IGNORE_INDEX, dtype=np.int64)
    kinds_grid = np.full((num_rows, row_len), NO_KIND, dtype=np.int64)
    cls, nsp, which = [], [], []
    for r, row in enumerate(rows):
        start = 0
        for k, i in enumerate(row):
            inst_ids, inst_types, inst_labels, label, inst_kinds = instances[i]
            n = len(inst_ids)
            ids[r, start:start + n] = inst_ids
            types[r, start:start + n] = inst_types
            positions[r, start:start + n] = np.arange(n)
            instance_ids[r, start:start + n] = k + 1
            labels_grid[r, start:start + n] = inst_labels
            kinds_grid[r, start:start + n] = inst_kinds
            cls.append(r * row_len + start)
            nsp.append(label)
            which.append(i)
            start += n
    mlm = _flat_predictions(labels_grid, kinds_grid, mlm_multiple, None if shape is None else shape.mlm_slots)
    num_nsp = _round_up(max(len(cls), 1), nsp_multiple) if shape is None else shape.nsp_slots
    cls_positions = np.zeros(num_nsp, dtype=np.int64)
    cls_positions[:len(cls)] = cls
    nsp_labels = np.full(num_nsp, IGNORE_INDEX, dtype=np.int64)
    nsp_labels[:len(cls)] = nsp
    instance_index = np.full(num_nsp, -1, dtype=np.int64)
    instance_index[:len(cls)] = which
    return {"input_ids": ids, "token_type_ids": types, "position_ids": positions, "instance_ids": instance_ids,
            **mlm, "cls_positions": cls_positions, "nsp_labels": nsp_labels, "instance_index": instance_index}


def _flat_predictions(labels_grid: np.ndarray, kinds_grid: np.ndarray, multiple: int,
                      size: int | None = None) -> dict[str, np.ndarray]:
    """mlm_positions (flat indices into the grid), mlm_labels and mlm_kinds of the predicted positions,
    padded to a multiple of `multiple`, or to `size` (position 0, label IGNORE_INDEX, kind NO_KIND)."""
    flat_labels = labels_grid.reshape(-1)
    masked = np.flatnonzero(flat_labels != IGNORE_INDEX)
    size = size or _round_up(max(len(masked), 1), multiple)
    positions = np.zeros(size, dtype=np.int64)
    positions[:len(masked)] = masked
    labels = np.full(size, IGNORE_INDEX, dtype=np.int64)
    labels[:len(masked)] = flat_labels[masked]
    kinds = np.full(size, NO_KIND, dtype=np.int64)
    kinds[:len(masked)] = kinds_grid.reshape(-1)[masked]
    return {"mlm_positions": positions, "mlm_labels": labels, "mlm_kinds": kinds}


def pack_micro_batches(instances: list[tuple], row_len: int, num_micro: int) -> list[dict[str, np.ndarray]]:
    """Pack all instances into rows, then split the rows into at most num_micro micro-batches of
    near-equal row counts (never more rows in one than instances were planned for it)."""
    rows = pack_rows(np.asarray([len(inst[0]) for inst in instances]), row_len)
    chunks = [chunk for chunk in np.array_split(np.arange(len(rows)), min(num_micro, len(rows))) if len(chunk)]
    return [collate_packed(instances, [rows[r] for r in chunk], row_len) for chunk in chunks]


def host_counts(batch: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(masked positions, NSP pairs, real tokens) of a micro-batch, packed or padded [B, T] layout."""
    nsp = batch["nsp_labels"]
    real = batch["instance_ids"] > 0 if "instance_ids" in batch else batch["attention_mask"] != 0
    return (int((np.asarray(batch["mlm_labels"]) != IGNORE_INDEX).sum()), int((np.asarray(nsp) != IGNORE_INDEX).sum()),
            int(np.asarray(real).sum()))


def block_lengths(batch: dict[str, np.ndarray]) -> np.ndarray:
    """The lengths of the attention blocks of a micro-batch's real tokens: each packed instance (its run of
    one instance id in a row), or each padded row's unmasked tokens in the [B, T] layout."""
    if "instance_ids" not in batch:
        lengths = np.asarray(batch["attention_mask"]).sum(axis=1)
        return lengths[lengths > 0]
    ids = np.asarray(batch["instance_ids"])
    counts = [np.bincount(row)[1:] for row in ids]  # instance ids are 1, 2, ... within a row; 0 is padding
    lengths = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    return lengths[lengths > 0]


def padding_fraction(batches: list[dict[str, np.ndarray]]) -> float:
    """Share of the computed token positions that are padding."""
    grid = sum(b["input_ids"].size for b in batches)
    return 1.0 - sum(host_counts(b)[2] for b in batches) / max(grid, 1)


def collate_padded(instances: list[tuple], row_len: int) -> dict[str, np.ndarray]:
    """The plain layout for comparison: one instance per row, padded to row_len ([B, T] attention_mask),
    with the masked positions still gathered on the host (flat mlm_positions, like the packed layout)."""
    num = len(instances)
    ids = np.full((num, row_len), PAD_ID, dtype=np.int64)
    types = np.zeros((num, row_len), dtype=np.int64)
    mask = np.zeros((num, row_len), dtype=np.int64)
    labels_grid = np.full((num, row_len), IGNORE_INDEX, dtype=np.int64)
    kinds_grid = np.full((num, row_len), NO_KIND, dtype=np.int64)
    for r, (inst_ids, inst_types, inst_labels, _, inst_kinds) in enumerate(instances):
        n = len(inst_ids)
        ids[r, :n], types[r, :n], mask[r, :n], labels_grid[r, :n] = inst_ids, inst_types, 1, inst_labels
        kinds_grid[r, :n] = inst_kinds
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
            **_flat_predictions(labels_grid, kinds_grid, 64),
            "nsp_labels": np.asarray([inst[3] for inst in instances], dtype=np.int64)}
