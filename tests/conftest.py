"""Shared test set-up: CPU only, few threads (CI has 2 cores), the repo root importable."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one; scripts/gpu_check.sh runs them)")
    # `make test-fast` (pytest -m "not slow", 2 minutes on 2 cores) leaves these out; `make test` and CI run them.
    # A test is marked when it cannot be small (torchrun pairs, the real MediaWiki, kill-and-resume and the
    # README's and make's pipelines as subprocesses) or when it takes over ~1 s of CPU (full analyses with
    # bootstrap refits, rendered charts, probes of a trained run, torch.compile).
    config.addinivalue_line("markers", "slow: left out of make test-fast: a subprocess pipeline, torchrun, the real "
                                       "MediaWiki, or over ~1 s of CPU")


def pytest_collection_modifyitems(config, items):
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (CUDA_VISIBLE_DEVICES is empty unless set; see scripts/gpu_check.sh)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny finished run the training tests share: `tiny_run(name, **flags)` trains once per name
    and flags (tests.train_helpers.tiny_args with those overrides) and returns (root, corpus, run folder,
    exit code). Tests that change the run folder copy it first or make their own."""
    made = {}

    def make(name: str, **overrides):
        key = (name, tuple(sorted(overrides.items())))
        if key not in made:
            import train_large_100k
            from tests.train_helpers import tiny_args, write_tiny_corpus

            root = tmp_path_factory.mktemp(name)
            corpus = write_tiny_corpus(root)
            out = root / "run"
            code = train_large_100k.main(tiny_args(corpus, out, root / "cache", **overrides))
            made[key] = (root, corpus, out, code)
        return made[key]

    return make
