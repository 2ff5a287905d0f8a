"""How a training run starts, resumes, refuses and ends: nothing is ever lost, every message is
one whole line that says what to do."""

from __future__ import annotations

import argparse
import os
import re
import signal
import stat

import numpy as np
import pytest
import torch

import train_large_100k
from bertstudy.training import checkpoint as ckpt
from bertstudy.base import cli
from bertstudy.training import trainer
from bertstudy.base.atomic_io import iter_jsonl, read_json
from bertstudy.training.device import Distributed
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from bertstudy.model import BertForPretraining
from bertstudy.pretraining.instances import InstanceSampler
from bertstudy.pretraining.token_cache import tokenize_documents
from bertstudy.training.config import PRESETS, preset_config, preset_drift, resume_config
from bertstudy.training.trainer import Trainer, model_config_for
from bertstudy.training.weights import migrate_config
from bertstudy.pretraining.vocab import build_vocab
from tests.train_helpers import tiny_args, tiny_documents

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def finished(tiny_run):
    """A finished tiny run (4 steps, checkpoints at 2 and 4) and its corpus."""
    root, corpus, out, code = tiny_run("start", steps=4, save_interval=2, eval_interval=2)
    assert code == 0
    return root, corpus, out


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_new_run_in_a_folder_of_another_run_is_refused_and_nothing_changes(finished, capsys):
    root, corpus, out = finished
    before = _snapshot(out)
    code = train_large_100k.main(tiny_args(corpus, out, root / "cache", steps=2))
    assert code == EXIT_USAGE
    line = _one_error_line(capsys)
    assert "--resume" in line and "--overwrite" in line and "training_history_100k.json" in line
    assert _snapshot(out) == before  # byte for byte: nothing deleted, nothing rewritten


def test_only_a_history_left_is_refused_too(finished, tmp_path, capsys):
    root, corpus, out = finished
    other = tmp_path / "other"
    other.mkdir()
    (other / "training_history_100k.json").write_bytes((out / "training_history_100k.json").read_bytes())
    before = _snapshot(other)
    assert train_large_100k.main(tiny_args(corpus, other, root / "cache", steps=2)) == EXIT_USAGE
    assert "--overwrite" in _one_error_line(capsys)
    assert _snapshot(other) == before
    # --resume-if-possible finds no checkpoint there: a new run, and so the same refusal
    assert train_large_100k.main(tiny_args(corpus, other, root / "cache", steps=2) + ["--resume-if-possible"]) == EXIT_USAGE
    assert _snapshot(other) == before


def test_resume_without_a_checkpoint_fails_in_one_line(finished, tmp_path, capsys):
    root, corpus, _ = finished
    empty = tmp_path / "empty"
    code = train_large_100k.main(tiny_args(corpus, empty, root / "cache") + ["--resume"])
    assert code == EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "nothing to resume" in line and "--resume-if-possible" in line
    assert not empty.exists()


def test_resume_if_possible_starts_fresh_then_resumes(finished, tmp_path, capsys):
    root, corpus, _ = finished
    out = tmp_path / "auto"
    args = tiny_args(corpus, out, root / "cache", steps=2, save_interval=2) + ["--resume-if-possible"]
    assert train_large_100k.main(args) == EXIT_OK
    capsys.readouterr()
    before = _snapshot(out)
    assert train_large_100k.main(args) == EXIT_OK  # finished run: nothing to do, nothing touched
    said = capsys.readouterr()
    assert "already complete" in said.out and "--steps" in said.out and not said.err
    assert _snapshot(out) == before  # no new log record, no rewritten finished_at or training time
    starts = [r["resumed_from"] for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r["kind"] == "start"]
    assert starts == [None]


def test_rerunning_a_finished_run_with_resume_changes_nothing(finished, capsys):
    root, corpus, out = finished
    before = _snapshot(out)
    assert train_large_100k.main(["--out-dir", str(out), "--resume", "--no-progress", "--threads", "1"]) == EXIT_OK
    assert "already complete (4 of 4 steps" in capsys.readouterr().out
    assert _snapshot(out) == before


def test_resume_with_steps_below_the_runs_step_is_refused(finished, capsys):
    root, corpus, out = finished
    before = _snapshot(out)
    code = train_large_100k.main(["--out-dir", str(out), "--resume", "--steps", "2", "--no-progress", "--threads", "1"])
    assert code == EXIT_USAGE
    line = _one_error_line(capsys)
    assert "--steps 2 is below the step this run has reached (4" in line
    assert _snapshot(out) == before


def test_resume_takes_the_runs_config_and_may_extend_steps(finished, tmp_path, capsys):
    root, corpus, out = finished
    longer = tmp_path / "longer"
    args = tiny_args(corpus, longer, root / "cache", steps=4, save_interval=2, eval_interval=2, hidden_size=48,
                     num_heads=4, lr=3e-3)
    assert train_large_100k.main(args) == EXIT_OK
    capsys.readouterr()
    # only the folder and the new length: the model shape, lr, corpus and cache come from the checkpoint
    code = train_large_100k.main(["--out-dir", str(longer), "--resume", "--steps", "6", "--no-progress", "--threads", "1"])
    assert code == EXIT_OK, capsys.readouterr().err
    resolved = read_json(longer / "resolved_config.json")
    assert (resolved["hidden_size"], resolved["lr"], resolved["steps"], resolved["corpus"]) == (48, 3e-3, 6, str(corpus))
    history = read_json(longer / "training_history_100k.json")
    assert history["steps"] == [2, 4, 6] and history["meta"]["total_steps"] == 6


def test_resume_names_what_a_json_file_is(finished, capsys):
    root, corpus, out = finished
    history = out / "training_history_100k.json"
    code = train_large_100k.main(tiny_args(corpus, out, root / "cache") + ["--resume", str(history)])
    assert code == EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "is a JSON file (a training history?), not a checkpoint" in line and line.endswith("--out-dir)")
    final = out / ckpt.FINAL_MODEL_NAME
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache") + ["--resume", str(final)]) == EXIT_BAD_INPUT
    assert "final model" in _one_error_line(capsys)
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache") + ["--resume", str(out)]) == EXIT_BAD_INPUT
    assert "is a folder" in _one_error_line(capsys)


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unusable_out_dir_is_refused_before_any_work(finished, tmp_path, capsys, where):
    root, corpus, _ = finished
    if where == "under_a_file":
        blocker = tmp_path / "README.md"
        blocker.write_text("a file")
        out = blocker / "run"
    else:
        out = "/sys/chinese-bert-run"  # sysfs takes no new files, even for root
    code = train_large_100k.main(tiny_args(corpus, out, root / "cache"))
    assert code == EXIT_USAGE
    line = _one_error_line(capsys)
    assert "--out-dir" in line and ("is a file" in line or "not writable" in line)
    assert not (tmp_path / "cache").exists()


def test_device_typo_is_a_usage_error_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_large_100k.main(["--device", "gpu"])
    assert exit_info.value.code == EXIT_USAGE
    assert "auto, cpu, cuda, cuda:N" in capsys.readouterr().err


def test_device_cuda_without_cuda_is_one_line(finished, tmp_path, capsys):
    root, corpus, _ = finished
    assert not torch.cuda.is_available()
    code = train_large_100k.main(tiny_args(corpus, tmp_path / "o", root / "cache", device="cuda"))
    assert code == EXIT_USAGE
    assert "CUDA is not available" in _one_error_line(capsys)


def test_finished_run_prints_held_out_accuracies_and_files(finished, tmp_path, capsys):
    root, corpus, _ = finished
    out = tmp_path / "printed"
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache", steps=2, eval_interval=2)) == EXIT_OK
    printed = capsys.readouterr().out.strip().splitlines()
    history = read_json(out / "training_history_100k.json")
    assert printed[0].startswith("done: 2 steps; held-out [MASK] accuracy")  # the headline metric first
    assert "MLM accuracy (all positions)" in printed[0]
    assert f"{history['eval_mlm_acc'][-1]:.1%}" in printed[0] and f"{history['eval_nsp_acc'][-1]:.1%}" in printed[0]
    assert printed[1].startswith(f"wrote in {out}:") and "stage4_large_100k_final.pth" in printed[1]


def test_ctrl_c_message_is_on_its_own_line_after_the_bar(finished, tmp_path, capsys, monkeypatch):
    root, corpus, _ = finished
    real_step = trainer.Trainer.train_step

    def step_then_ctrl_c(self, step, *args, **kwargs):
        result = real_step(self, step, *args, **kwargs)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the run's own handler
        return result

    monkeypatch.setattr(trainer.Trainer, "train_step", step_then_ctrl_c)
    args = [a for a in tiny_args(corpus, tmp_path / "c", root / "cache", steps=6) if a != "--no-progress"]
    assert train_large_100k.main(args) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    where = err.index("interrupted: checkpoint saved at step 3")
    assert "train:" in err[:where] and err[where - 1] == "\n"  # the bar came first, closed with a newline
    assert "\r" not in err[where:] and "train:" not in err[where:]  # and was not redrawn after the message


def test_show_preset_prints_its_values(capsys):
    assert train_large_100k.main(["--show-preset", "quick"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "preset quick" in out and "--hidden-size 128" in out and "--steps 1000" in out and "--no-wwm" in out


def test_an_integer_in_float_notation_is_read_and_a_fraction_refused(capsys):
    args = train_large_100k.build_parser().parse_args(["--steps", "2e3"])
    assert args.steps == 2000
    assert cli.positive_int("2e3") == 2000 and cli.non_negative_int("1_000") == 1000
    for parse, text, message in [(cli.positive_int, "1.5", "expected an integer, got '1.5'"),
                                 (cli.positive_int, "x", "expected an integer, got 'x'"),
                                 (cli.positive_float, "fast", "expected a number, got 'fast'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)
    with pytest.raises(SystemExit):
        train_large_100k.main(["--steps", "2.5"])
    assert "expected an integer, got '2.5'" in capsys.readouterr().err


def test_a_run_that_fails_on_its_input_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "sentences": ["一二三"]}\nnot json\n', encoding="utf-8")
    out = tmp_path / "never"
    assert train_large_100k.main(tiny_args(bad, out, tmp_path / "cache")) == EXIT_BAD_INPUT
    assert "bad.jsonl:2" in _one_error_line(capsys)
    assert not out.exists()
    assert train_large_100k.main(tiny_args(tmp_path / "missing.jsonl", out, tmp_path / "cache")) == EXIT_BAD_INPUT
    assert "rare_char_fetch.py" in _one_error_line(capsys)
    assert not out.exists()


def test_export_folder_has_the_usual_permissions(finished):
    _, _, out = finished
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "export_hf").stat().st_mode) == 0o777 & ~umask


def test_resume_config_takes_the_runs_values_and_only_safe_changes():
    saved = preset_config("quick", hidden_size=48, lr=3e-3, steps=100, threads=1, device="cpu").to_dict()
    session = preset_config("large_100k", out_dir="runs/x", threads=2, steps=500)  # the resume line's own config
    resumed = resume_config(saved, {"steps": 500, "lr": 3e-3, "out_dir": "runs/x", "threads": 2}, session, "ck.pth")
    assert (resumed.hidden_size, resumed.lr, resumed.steps, resumed.preset) == (48, 3e-3, 500, "quick")
    assert (resumed.out_dir, resumed.threads, resumed.device) == ("runs/x", 2, "auto")  # this session's
    with pytest.raises(UsageError, match=r"ck.pth was trained with batch_size 64, preset quick; this command line "
                                         r"gives batch_size 32, preset large_100k"):
        resume_config(saved, {"batch_size": 32, "preset": "large_100k", "steps": 9}, session, "ck.pth")


def test_preset_drift_names_the_presets_values_that_changed_since_the_run_started():
    older_quick = preset_config("quick_plateau", steps=1000).to_dict() | {"preset": "quick"}
    session = preset_config("quick")

    def drift_of(saved, given):
        return preset_drift(resume_config(saved, given, session, "ck.pth"), given)

    drift = dict((name, (run, today)) for name, run, today in drift_of(older_quick, {"preset": "quick"}))
    assert drift == {"max_predictions": (10, 16), "lr": (2e-3, 4e-3), "schedule": ("cosine", "constant"),
                     "mlm_bias_init": ("zeros", "unigram"), "mask_rate": (0.15, 0.25), "nsp_weight": (1.0, 0.0)}
    # a checkpoint from before the recipe fields existed reads them as the values it trained with
    before_fields = migrate_config({k: v for k, v in older_quick.items()
                                    if k not in ("schedule", "mlm_bias_init", "nsp_weight")})  # as loading it does
    assert dict((n, r) for n, r, _ in drift_of(before_fields, {"preset": "quick"}))["schedule"] == "cosine"
    # what the line sets itself, what a resume may change, a line without --preset or naming another: no note
    assert "lr" not in dict((n, r) for n, r, _ in drift_of(older_quick, {"preset": "quick", "lr": 2e-3}))
    assert drift_of(preset_config("quick", steps=5, threads=1).to_dict(), {"preset": "quick"}) == []
    assert drift_of(older_quick, {}) == []
    assert preset_drift(resume_config(older_quick, {}, session, "ck.pth"), {"preset": "quick_plateau"}) == []


def test_resuming_a_run_whose_preset_changed_since_says_so_and_keeps_the_runs_values(finished, capsys, monkeypatch):
    root, corpus, out = finished
    before = _snapshot(out)
    monkeypatch.setitem(PRESETS, "quick_plateau", {**PRESETS["quick_plateau"], "lr": 5e-4})
    assert train_large_100k.main(tiny_args(corpus, out, root / "cache", steps=4) + ["--resume-if-possible"]) == EXIT_OK
    said = capsys.readouterr()
    assert "already complete" in said.out and _snapshot(out) == before
    note = [line for line in said.err.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "--preset quick_plateau" in note[0] and "lr 0.002 (preset now 0.0005)" in note[0]
    assert "another --out-dir" in note[0]


def test_resumed_optimizer_keeps_the_configs_hyper_parameters_and_rank_0_alone_gets_the_totals():
    config = preset_config("quick", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, device="cpu",
                           beta2=0.95, adam_eps=1e-8, weight_decay=0.02)
    docs = tiny_documents(10)
    vocab = build_vocab(s for d in docs for s in d.sentences)
    sampler = InstanceSampler(tokenize_documents(docs, vocab), np.arange(10), len(vocab), 32, 0.15, 5, 0.1, False)
    model = BertForPretraining(model_config_for(config, len(vocab)))
    first = Trainer(config, model, sampler)
    first.train_step(0)
    first.totals += 1.0
    state = first.state()
    for group in state["optimizer"]["param_groups"]:  # a checkpoint whose optimizer says otherwise
        group.update(betas=(0.5, 0.5), eps=1.0, weight_decay=9.0, lr=7.0)
    for rank in (0, 1):
        resumed = Trainer(config, model, sampler, Distributed(rank=rank, world_size=2))
        resumed.load_state(state)
        decay, no_decay = resumed.optimizer.param_groups
        assert decay["betas"] == (0.9, 0.95) and decay["eps"] == 1e-8 and decay["weight_decay"] == 0.02
        assert no_decay["weight_decay"] == 0.0
        moments = resumed.optimizer.state[decay["params"][0]]["exp_avg"]
        assert torch.equal(moments, first.optimizer.state[decay["params"][0]]["exp_avg"])  # the moments are the run's
        assert resumed.totals.tolist() == (state["totals"] if rank == 0 else [0.0] * len(state["totals"]))
