"""Pack unpadded instances into full rows, so almost no computed position is padding.

About half the instances of the study's corpus are shorter than max_seq_len (short documents end
a chunk early; 10% are drawn short on purpose, as BERT does), so a padded [B, 128] batch is ~22%
padding. Here several instances share a row of max_seq_len positions, each keeping what it would
have had alone:

  * positions restart at 0 for each instance (`position_ids`), token types are the instance's own;
  * `instance_ids` numbers the instances of a row 1, 2, ... (0 = padding) and the model lets a
    position attend only to positions with the same number (a block-diagonal mask), so an
    instance never sees its neighbours: every output equals that of the instance in a row of its own;
  * the masked positions and the [CLS] positions are flat indices into the [rows x max_seq_len]
    grid, computed here on the host with their labels, so the model gathers them without a
    data-dependent shape (no device-to-host sync, no torch.compile graph break).

Rows are filled first-fit-decreasing (longest instance first, ties by index), a pure function of
the instances: a step's batch stays a pure function of (seed, step, micro-step, rank).
"""

from __future__ import annotations

import numpy as np

from bertstudy.pretraining.instances import IGNORE_INDEX, NO_KIND, PAD_ID

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


def collate_packed(instances: list[tuple], rows: list[list[int]], row_len: int, mlm_multiple: int = 64,
                   nsp_multiple: int = 8) -> dict[str, np.ndarray]:
    """The packed micro-batch of `rows` (indices into `instances`, each (ids, types, labels, nsp, kinds)).

    mlm_positions/mlm_labels/mlm_kinds and cls_positions/nsp_labels are padded (IGNORE_INDEX labels,
    NO_KIND kinds) to a multiple of mlm_multiple / nsp_multiple, so a run sees few distinct shapes
    (torch.compile, CUDA graphs). `instance_index` says which instance each NSP slot holds (-1: padding slot)."""
    num_rows = len(rows)
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
    mlm = _flat_predictions(labels_grid, kinds_grid, mlm_multiple)
    num_nsp = _round_up(max(len(cls), 1), nsp_multiple)
    cls_positions = np.zeros(num_nsp, dtype=np.int64)
    cls_positions[:len(cls)] = cls
    nsp_labels = np.full(num_nsp, IGNORE_INDEX, dtype=np.int64)
    nsp_labels[:len(cls)] = nsp
    instance_index = np.full(num_nsp, -1, dtype=np.int64)
    instance_index[:len(cls)] = which
    return {"input_ids": ids, "token_type_ids": types, "position_ids": positions, "instance_ids": instance_ids,
            **mlm, "cls_positions": cls_positions, "nsp_labels": nsp_labels, "instance_index": instance_index}


def _flat_predictions(labels_grid: np.ndarray, kinds_grid: np.ndarray, multiple: int) -> dict[str, np.ndarray]:
    """mlm_positions (flat indices into the grid), mlm_labels and mlm_kinds of the predicted positions,
    padded to a multiple of `multiple` (position 0, label IGNORE_INDEX, kind NO_KIND)."""
    flat_labels = labels_grid.reshape(-1)
    masked = np.flatnonzero(flat_labels != IGNORE_INDEX)
    size = _round_up(max(len(masked), 1), multiple)
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
