"""sha256 of a file, read in blocks: what pins a corpus, a data file or a vocabulary to a run."""

from __future__ import annotations

import hashlib


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
