"""A run's record of the shortcut measures: accuracy by position kind in the history and the log, the
predicted shortcut level in the history's meta, and a held-out split that --seed does not move."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import train_large_100k
from bertstudy.analysis.history import load_history, predicted_shortcut
from bertstudy.base.atomic_io import iter_jsonl, read_json
from bertstudy.base.errors import BadInputError
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.training.config import preset_config, resume_config
from bertstudy.training.weights import migrate_config
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)

KINDS = ("mask_acc", "random_acc", "unchanged_acc")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    corpus = write_tiny_corpus(folder)
    out = folder / "run"
    # batches of 16 instances, a point every 2 steps: every kind has positions in every interval
    assert train_large_100k.main(tiny_args(corpus, out, folder / "cache", batch_size=8, steps=4)) == 0
    return corpus, out


def test_history_and_log_hold_accuracy_by_kind(tiny_run):
    _, out = tiny_run
    history = read_json(out / "training_history_100k.json")
    for key in KINDS:
        assert len(history[key]) == len(history["steps"]) and all(0 <= v <= 1 for v in history[key])
        assert len(history["eval_" + key]) == len(history["eval_steps"])
    # the original's figure is the kinds' counts pooled: it lies between the lowest and highest kind
    for i, acc in enumerate(history["mlm_acc"]):
        assert min(history[k][i] for k in KINDS) <= acc <= max(history[k][i] for k in KINDS)
    records = [r for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r["kind"] in ("train", "eval")]
    assert all(set(KINDS) <= set(r) for r in records)
    for path in (out / "training_history_100k.json", out / "training_log_100k.jsonl"):
        loaded = load_history(path)
        steps, values = loaded.metric("eval_mask_acc")
        assert list(steps) == history["eval_steps"] and list(values) == pytest.approx(history["eval_mask_acc"])
        assert list(loaded.metric("unchanged_acc")[1]) == pytest.approx(history["unchanged_acc"])


def test_meta_shortcut_counts_the_training_documents(tiny_run):
    corpus, out = tiny_run
    heldout = set(read_json(out / "heldout_documents.json")["heldout_ids"])
    counts = Counter(c for d in load_documents(corpus) if d.id not in heldout for s in d.sentences for c in s
                     if not c.isspace())
    top, top_count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    shortcut = predicted_shortcut(load_history(out / "training_history_100k.json"))
    assert shortcut["top_char"] == top and shortcut["characters"] == sum(counts.values())
    assert shortcut["mask_level"] == pytest.approx(top_count / sum(counts.values()))
    vocab_size = read_json(out / "training_history_100k.json")["meta"]["vocab_size"]
    assert shortcut["overall_level"] == pytest.approx(0.8 * top_count / sum(counts.values()) + 0.1 / (vocab_size - 5) + 0.1)


def test_a_malformed_shortcut_is_refused_naming_the_file(tiny_run, tmp_path):
    _, out = tiny_run
    history = read_json(out / "training_history_100k.json")
    history["meta"]["shortcut"]["mask_level"] = 4.6  # a percentage
    bad = tmp_path / "history.json"
    bad.write_text(__import__("json").dumps(history))
    with pytest.raises(BadInputError, match="meta.shortcut.mask_level") as caught:
        predicted_shortcut(load_history(bad))
    assert str(bad) in str(caught.value)
    del history["meta"]["shortcut"]
    bad.write_text(__import__("json").dumps(history))
    assert predicted_shortcut(load_history(bad)) is None


def test_the_pretraining_seed_does_not_move_the_heldout_split(tiny_run, tmp_path):
    corpus, out = tiny_run
    other = tmp_path / "seed7"
    assert train_large_100k.main(tiny_args(corpus, other, tmp_path / "cache", steps=2, seed=7)) == 0
    split, split7 = read_json(out / "heldout_documents.json"), read_json(other / "heldout_documents.json")
    assert split7["heldout_ids"] == split["heldout_ids"] and split7["seed"] == 42
    moved = tmp_path / "split7"
    assert train_large_100k.main(tiny_args(corpus, moved, tmp_path / "cache", steps=2, split_seed=7)) == 0
    assert read_json(moved / "heldout_documents.json")["heldout_ids"] != split["heldout_ids"]


def test_a_run_from_before_split_seed_resumes_with_its_own_seed():
    saved = preset_config("quick", seed=7).to_dict()
    del saved["split_seed"]  # a checkpoint written before the field existed split with its seed
    resumed = resume_config(migrate_config(saved), {}, preset_config("quick"), "step_000010.pth")  # as loading it does
    assert (resumed.seed, resumed.split_seed) == (7, 7)
