"""The recipe options: the constant (trapezoid) schedule, --nsp-weight, --mlm-bias-init unigram,
--eval-mask-rate apart from --mask-rate, --pre-ln through a run, their validation and their resume rules."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import fields

import numpy as np
import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import EXIT_USAGE, UsageError
from bertstudy.model import BertForPretraining
from bertstudy.pretraining.token_cache import tokenize_documents
from bertstudy.pretraining.loader import eval_micro_batches
from bertstudy.pretraining.packing import host_counts
from bertstudy.pretraining.shortcut import training_id_counts, unigram_log_frequencies
from bertstudy.pretraining.vocab import NUM_SPECIAL, build_vocab
from bertstudy.training import checkpoint as ckpt
from bertstudy.training import milestones as ms
from bertstudy.training import run as training_run
from bertstudy.training import run_data
from bertstudy.training.config import TrainConfig, preset_config, resume_config
from bertstudy.training.device import Distributed
from bertstudy.training.trainer import Trainer, lr_at, model_config_for
from bertstudy.training.weights import OLDER_RUN_VALUES, load_milestone, migrate_config
from tests.train_helpers import tiny_documents, tiny_training_parts

torch.set_num_threads(1)

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32, max_predictions=5,
            dropout=0.0, warmup_steps=0, amp=False, device="cpu", batch_size=8, grad_accum=1)


# ---- the schedule

def test_constant_schedule_holds_the_peak_then_decays_linearly_over_the_last_fraction():
    config = preset_config("quick_plateau", lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1, schedule="constant",
                           decay_fraction=0.2)  # the decay starts at step 110 - 22 = 88
    assert lr_at(0, config) == pytest.approx(1e-4) and lr_at(9, config) == pytest.approx(1e-3)
    assert [lr_at(s, config) for s in (10, 50, 87, 88)] == [pytest.approx(1e-3)] * 4
    assert lr_at(99, config) == pytest.approx(1e-3 - 11 / 22 * 0.9e-3)  # half-way down: 0.55e-3
    assert lr_at(109, config) == pytest.approx(1e-3 - 21 / 22 * 0.9e-3)
    assert lr_at(110, config) == pytest.approx(1e-4)
    flat = preset_config("quick_plateau", lr=1e-3, warmup_steps=10, steps=110, schedule="constant", decay_fraction=0.0)
    assert lr_at(109, flat) == pytest.approx(1e-3)
    whole = preset_config("quick_plateau", lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.0, schedule="constant",
                          decay_fraction=1.0)  # never before the warm-up's end: linear from step 10 to 110
    assert lr_at(10, whole) == pytest.approx(1e-3) and lr_at(60, whole) == pytest.approx(0.5e-3)


def test_the_cosine_schedule_is_the_default_and_unchanged():
    config = preset_config("quick_plateau", lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert config.schedule == "cosine"
    assert lr_at(60, config) == pytest.approx(0.55e-3) and lr_at(110, config) == pytest.approx(1e-4)


# ---- NSP weight

def _trainer(**overrides):
    config, sampler, model = tiny_training_parts(TINY, **overrides)
    return Trainer(config, model, sampler)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_loss_is_mlm_plus_nsp_weight_times_nsp_and_nsp_is_still_measured(weight):
    trainer = _trainer(nsp_weight=weight)
    batches = trainer.micro_batches(0)
    assert len(batches) == 1
    model = trainer.raw_model
    with torch.no_grad():
        out = model(**{k: torch.as_tensor(v) for k, v in batches[0].items() if k != "instance_index"})
    _, loss_sum = trainer._forward_backward(batches, [host_counts(b) for b in batches])
    assert loss_sum.item() == pytest.approx(out.mlm_loss.item() + weight * out.nsp_loss.item(), rel=1e-5)
    nsp_grads = [p.grad for p in (*model.nsp.parameters(), *model.pooler.parameters())]
    assert all(g is not None for g in nsp_grads)
    assert all(torch.count_nonzero(g) == 0 for g in nsp_grads) == (weight == 0.0)  # 0: the NSP head is not trained
    assert torch.count_nonzero(model.mlm_dense.weight.grad) > 0
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.train_step(1)
    metrics = trainer.take_totals()
    assert metrics["nsp_loss"] > 0 and 0 <= metrics["nsp_acc"] <= 1  # measured whatever the weight
    assert metrics["loss"] == pytest.approx(metrics["mlm_loss"] + metrics["nsp_loss"])  # the log's sum, unweighted


# ---- the MLM bias from unigram frequencies

def test_unigram_log_frequencies_by_hand():
    counts = np.array([0, 5, 0, 0, 0, 10, 3, 0])  # [UNK] (id 1) was seen, but specials are never predicted
    expected = np.log(np.array([1, 1, 1, 1, 1, 11, 4, 1]) / (13 + 8))
    np.testing.assert_allclose(unigram_log_frequencies(counts), expected, rtol=1e-12)


def test_training_id_counts_are_the_training_documents_characters():
    docs = tiny_documents(12)
    vocab = build_vocab(s for d in docs for s in d.sentences)
    corpus = tokenize_documents(docs, vocab)
    chosen = [1, 4, 7]
    by_hand = Counter(char for d in chosen for s in docs[d].sentences for char in s)
    counts = training_id_counts(corpus, np.array(chosen), len(vocab))
    assert {vocab.tokens[i]: int(n) for i, n in enumerate(counts) if n} == dict(by_hand)


def test_a_fresh_model_with_the_unigram_bias_predicts_the_most_frequent_character():
    docs = tiny_documents(12)
    vocab = build_vocab(s for d in docs for s in d.sentences)
    counts = np.zeros(len(vocab), dtype=np.int64)
    counts[NUM_SPECIAL:] = np.arange(len(vocab) - NUM_SPECIAL) % 7 + 1
    top = NUM_SPECIAL + 17
    counts[top] = 40  # the most frequent character, by far
    torch.manual_seed(0)
    model = BertForPretraining(model_config_for(preset_config("quick_plateau", **TINY), len(vocab))).eval()
    training_run.init_mlm_bias(model, counts)
    np.testing.assert_allclose(model.mlm_bias.detach().numpy(), unigram_log_frequencies(counts), rtol=1e-6)
    assert int(torch.softmax(model.mlm_bias, -1).argmax()) == top
    ids = torch.tensor([[2, 9, 4, 11, 4, 3]])  # [CLS] x [MASK] y [MASK] [SEP]
    with torch.no_grad():
        logits, _ = model(ids, torch.zeros_like(ids))
    assert logits[0, [2, 4]].argmax(-1).tolist() == [top, top]


# ---- the held-out masking rate

def test_held_out_instances_are_masked_at_15_percent_whatever_training_uses(tmp_path):
    from tests.train_helpers import write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path)
    base = dict(corpus=str(corpus), cache_dir=str(tmp_path / "cache"), max_seq_len=32, max_predictions=20)
    default = run_data.prepare_data(preset_config("quick_plateau", **base), Distributed())
    heavier = run_data.prepare_data(preset_config("quick_plateau", mask_rate=0.4, **base), Distributed())
    assert (default.train_sampler.mask_rate, default.eval_sampler.mask_rate) == (0.15, 0.15)
    assert (heavier.train_sampler.mask_rate, heavier.eval_sampler.mask_rate) == (0.4, 0.15)
    a, b = (eval_micro_batches(d.eval_sampler, 42, 16, 8) for d in (default, heavier))
    assert len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)  # the same eval
    other = run_data.prepare_data(preset_config("quick_plateau", eval_mask_rate=0.3, **base), Distributed())
    assert other.eval_sampler.mask_rate == 0.3 and other.train_sampler.mask_rate == 0.15


# ---- validation and resume

@pytest.mark.parametrize("field,value,choices", [("schedule", "wsd", "cosine, constant"),
                                                 ("mlm_bias_init", "uniform", "zeros, unigram")])
def test_an_unknown_choice_is_a_usage_error_listing_the_choices(field, value, choices, capsys):
    with pytest.raises(UsageError, match=f"--{field.replace('_', '-')} must be one of {choices}, got '{value}'"):
        preset_config("quick_plateau", **{field: value})
    assert train_large_100k.main(["--preset", "quick", f"--{field.replace('_', '-')}", value]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and choices in err


NEW = {"pre_ln": True, "mlm_bias_init": "unigram", "schedule": "constant", "decay_fraction": 0.5,
       "nsp_weight": 0.5, "eval_mask_rate": 0.2}


def test_a_run_from_before_the_fields_resumes_with_what_it_trained_with():
    old = {k: v for k, v in preset_config("quick_plateau", mask_rate=0.25).to_dict().items() if k not in NEW}
    session = preset_config("quick_plateau")
    old = migrate_config(old)  # what loading its checkpoint does
    resumed = resume_config(old, {}, session, "ck.pth")
    assert {k: getattr(resumed, k) for k in OLDER_RUN_VALUES} == OLDER_RUN_VALUES
    assert resumed.eval_mask_rate == 0.25  # it evaluated at its mask rate: its curve stays one curve
    same = resume_config(old, {"pre_ln": False, "schedule": "cosine", "nsp_weight": 1.0}, session, "ck.pth")
    assert same == resumed
    assert set(OLDER_RUN_VALUES) | {"eval_mask_rate"} == set(NEW) <= {f.name for f in fields(TrainConfig)}


@pytest.mark.parametrize("name", sorted(NEW))
def test_resume_refuses_a_changed_recipe_field_as_any_other(name):
    saved = preset_config("quick_plateau").to_dict()
    session = preset_config("quick_plateau")
    with pytest.raises(UsageError, match=f"ck.pth was trained with {name} {saved[name]}; this command line gives "
                                         f"{name} {NEW[name]}"):
        resume_config(saved, {name: NEW[name]}, session, "ck.pth")
    old = migrate_config({k: v for k, v in saved.items() if k not in NEW})  # and a run from before the field
    with pytest.raises(UsageError, match=f"gives {name} {NEW[name]}"):
        resume_config(old, {name: NEW[name]}, session, "ck.pth")
    assert getattr(resume_config(saved, {name: saved[name]}, session, "ck.pth"), name) == saved[name]


# ---- a whole run with every option

@pytest.fixture(scope="module")
def recipe_run(tiny_run):
    return tiny_run("recipes", pre_ln=True, mlm_bias_init="unigram", schedule="constant", decay_fraction=0.5,
                    nsp_weight=0.5, mask_rate=0.3, milestones="0")


def test_a_run_with_every_option_finishes_without_an_export(recipe_run, capsys):
    _, _, out, code = recipe_run
    assert code == 0
    assert not (out / "export_hf").exists()
    final = ckpt.load_final_model(out / "stage4_large_100k_final.pth")
    assert final["model_config"]["pre_ln"] is True and "final_norm.weight" in final["model"]
    resolved = read_json(out / "resolved_config.json")
    assert {k: resolved[k] for k in NEW} == {**NEW, "pre_ln": True, "eval_mask_rate": 0.15}
    history = read_json(out / "training_history_100k.json")
    config = TrainConfig(**{k: v for k, v in resolved.items() if k in {f.name for f in fields(TrainConfig)}})
    # the lr of each log point is that of the step before it (0-based step s-1): warm-up, flat, linear decay
    assert history["lr"] == pytest.approx([lr_at(s - 1, config) for s in history["steps"]])
    assert history["lr"][-1] < history["lr"][-2] == pytest.approx(config.lr)


def test_the_unigram_bias_is_the_fresh_runs_start_and_a_resume_keeps_the_checkpoints(recipe_run, tmp_path,
                                                                                      monkeypatch, capsys):
    _, _, out, _ = recipe_run
    resolved = read_json(out / "resolved_config.json")
    config = TrainConfig(**{k: v for k, v in resolved.items() if k in {f.name for f in fields(TrainConfig)}})
    data = run_data.prepare_data(config, Distributed())
    start = load_milestone(ms.milestone_path(out / "checkpoints_100k", 0))
    np.testing.assert_allclose(start["model"]["mlm_bias"].numpy(), unigram_log_frequencies(data.id_counts), rtol=1e-6)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)

    def never(*args, **kwargs):
        raise AssertionError("a resumed run took the bias from the counts, not from its checkpoint")

    monkeypatch.setattr(training_run, "init_mlm_bias", never)
    assert train_large_100k.main(["--out-dir", str(copy), "--resume", "--steps", "8", "--threads", "1",
                                  "--no-progress"]) == 0
    capsys.readouterr()
    assert train_large_100k.main(["--out-dir", str(copy), "--resume", "--nsp-weight", "1.0"]) == EXIT_USAGE
    assert "trained with nsp_weight 0.5; this command line gives nsp_weight 1.0" in capsys.readouterr().err
