"""Keyed random streams: a key (seed, stream, step, micro_step, index) gives a numpy Generator on its own
stream, so every instance drawn from it is a pure function of the key.

That is what lets a resumed run draw exactly the batches an uninterrupted run would, and lets DDP ranks
and micro-batches take disjoint slices of one global batch without changing which instances a step
trains on. TRAIN_STREAM and EVAL_STREAM keep the training draws and the fixed held-out set apart.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

TRAIN_STREAM, EVAL_STREAM = 0, 1  # keep training draws and the fixed held-out set independent

_KEY = struct.Struct("<5q")


def _keyed_state(seed: int, stream: int, step: int, micro_step: int, index: int) -> dict:
    """A PCG64 state hashed from the key: independent streams without building a SeedSequence and a new
    Generator for every instance (setting the state of one reused Generator is much cheaper)."""
    digest = hashlib.blake2b(_KEY.pack(seed, stream, step, micro_step, index), digest_size=32).digest()
    return {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
            "state": {"state": int.from_bytes(digest[:16], "little"), "inc": int.from_bytes(digest[16:], "little") | 1}}


class KeyedRng:
    """One Generator re-seeded per key: `at(key)` returns it set to the key's stream. Reused, so
    each caller takes its draws before asking for the next key (the loops here do)."""

    def __init__(self):
        self.bit_generator = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bit_generator)

    def at(self, seed: int, stream: int, step: int, micro_step: int, index: int) -> np.random.Generator:
        self.bit_generator.state = _keyed_state(seed, stream, step, micro_step, index)
        return self.generator


def instance_rng(seed: int, stream: int, step: int, micro_step: int, index: int) -> np.random.Generator:
    """A fresh Generator on the key's stream (the same stream KeyedRng.at gives)."""
    return KeyedRng().at(seed, stream, step, micro_step, index)
