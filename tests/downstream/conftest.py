"""The downstream tests' shared run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def downstream_run(tmp_path_factory):
    """A tiny run on a tiny embedded-like corpus, trained once for every downstream test that reads it:
    (root, task data, corpus, run folder). 30% held out so a handful of articles and reviews are test
    material; milestones 0, 1, 2, 5, 6. Tests write their own files beside the run, never over its files."""
    import train_large_100k
    from bertstudy.base.errors import EXIT_OK
    from tests.downstream_helpers import embedded_like_corpus, write_task_data
    from tests.train_helpers import tiny_args

    root = tmp_path_factory.mktemp("downstream")
    task_data = write_task_data(root / "tasks")
    corpus = embedded_like_corpus(task_data, root / "corpus.jsonl")
    out = root / "run"
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache", milestones="log", heldout_fraction=0.3)) == EXIT_OK
    return root, task_data, corpus, out
