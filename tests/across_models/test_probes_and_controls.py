"""The across-model test's controls, probes and decoders on synthetic data."""

import numpy as np
import pytest
import torch

from bertstudy.across_models import probes, scoring
from bertstudy.downstream import ner, probe
from bertstudy.downstream.tasks import SegSentence


def test_random_projection_has_the_features_width_and_is_fixed():
    table = probes.projection(50, 128)
    assert table.shape == (50, 128)
    assert torch.equal(table, probes.projection(50, 128))
    assert not torch.equal(probes.projection(50, 64), table[:, :64])


def test_control_labels_are_fixed_per_character_type_and_differ_from_the_task():
    texts = ["中国人民", "人民日报", "中华人民共和国"]
    counts = np.array([10.0, 5.0, 3.0, 2.0])
    labels = probes.control_labels(texts, counts)
    again = probes.control_labels(list(reversed(texts)) + ["新字"], counts)
    assert set(labels) == set("".join(texts))
    assert all(again[c] == labels[c] for c in labels)  # a type keeps its label whatever else is in the data
    # the task labels a character differently in different words; the control task never does
    task = {"人": {"b", "e"}}
    assert len({labels["人"]}) == 1 < len(task["人"])


def test_control_labels_follow_the_task_label_frequencies():
    texts = [chr(0x4E00 + i) for i in range(3000)]
    labels = probes.control_labels(texts, np.array([8.0, 2.0]))
    share = np.mean([labels[c] == 0 for c in texts])
    assert 0.76 < share < 0.84


def _token_data(rng, n_sent, length, types):
    """Sentences of random character types; a character's label is whether the next character's type is a
    multiple of 3: the character itself says nothing about it."""
    ids = rng.integers(1, types, size=(n_sent, length))
    nxt = np.concatenate([ids[:, 1:], np.ones((n_sent, 1), dtype=ids.dtype)], 1) % 3 == 0
    return torch.tensor(ids.reshape(-1)), torch.tensor(nxt.reshape(-1).astype(np.int64)), nxt.reshape(-1)


@pytest.mark.parametrize("carries_neighbour", [False, True])
def test_context_gain_is_zero_for_identity_features_and_positive_for_a_neighbours_label(carries_neighbour):
    rng = np.random.default_rng(0)
    types = 40
    ids, labels, nxt = _token_data(rng, 300, 12, types)
    test_ids, test_labels, test_nxt = _token_data(rng, 300, 12, types)
    embedding = torch.randn(types, 16, generator=torch.Generator().manual_seed(1))

    def features(ids_, nxt_):
        x = embedding[ids_]  # a function of the character's identity alone ...
        if carries_neighbour:  # ... plus what the next character is (context)
            x = torch.cat([x, torch.tensor(nxt_, dtype=torch.float32)[:, None]], 1)
        return x

    identity = probes.fit_mixed_probe(None, ids, labels, 2, types)
    both = probes.fit_mixed_probe(features(ids, nxt), ids, labels, 2, types, start=identity)
    acc_identity = probes.char_accuracy(identity.log_probs(None, test_ids), test_labels)
    acc_both = probes.char_accuracy(both.log_probs(features(test_ids, test_nxt), test_ids), test_labels)
    gain = acc_both - acc_identity
    if carries_neighbour:
        assert gain > 0.2
    else:
        assert abs(gain) < 0.02


def test_batch_viterbi_returns_what_the_one_sentence_decoders_return():
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 25, size=150)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    lp = np.log(rng.dirichlet(np.ones(len(ner.LABELS)), size=lengths.sum()))
    decoded = probes.batch_viterbi(lp, lengths, ner._ALLOWED, ner._START)
    assert all(tuple(ner.LABELS[j] for j in row) == ner.viterbi_bio(lp[a:b])
               for row, a, b in zip(decoded, bounds[:-1], bounds[1:]))
    lp4 = np.log(rng.dirichlet(np.ones(4), size=lengths.sum()))
    decoded = probes.batch_viterbi(lp4, lengths, probe._ALLOWED, probe._START, probe._END)
    assert all("".join("bmes"[j] for j in row) == probe.viterbi_tags(lp4[a:b])
               for row, a, b in zip(decoded, bounds[:-1], bounds[1:]))


def test_bootstrap_f1_of_all_items_is_the_micro_f1_and_its_interval_holds_it():
    counts = np.array([[3, 4, 5], [0, 1, 2], [2, 2, 2], [1, 3, 1]])
    whole = probes.resampled_scores(counts, np.arange(4)[None])[0]
    assert whole == pytest.approx(2 * 6 / (10 + 10))
    ci = probes.interval(probes.resampled_scores(counts, probes.bootstrap_indices(4, 500)))
    assert ci[0] <= whole <= ci[1]


def test_segmentation_controls_on_a_tiny_set_have_the_stated_widths():
    words = ["中国", "人民", "的", "好", "朋友", "们"]
    rng = np.random.default_rng(0)

    def sentence(i):
        chosen = [words[j] for j in rng.integers(0, len(words), 6)]
        chars = "".join(chosen)
        tags = "".join("s" if len(w) == 1 else "b" + "m" * (len(w) - 2) + "e" for w in chosen)
        return SegSentence("pd-x", i, chars, tags)

    task = scoring.prepare_token_task("segmentation", [sentence(i) for i in range(60)], [sentence(i) for i in range(20)])
    assert task.controls["identity_projected"]["dimensions"] == scoring.WIDTH
    assert task.controls["identity_wide"]["dimensions"] == len(task.types)
    assert task.controls["identity_wide"]["score_ci"][0] <= task.controls["identity_wide"]["score"]
    assert len(task.control_train) == len(task.y_train)
