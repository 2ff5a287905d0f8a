"""scripts/quick_recipes.py and bertstudy/recipe_search: tiny candidates trained end to end, one JSON line each,
skipped on a rerun; an interrupted candidate resumes; bad input is one line naming the file; the built-in
list; the run folders' names and each run's config stay what the command-line round trip gave."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

import train_large_100k
from bertstudy.base.atomic_io import iter_jsonl
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_USAGE, BadInputError
from bertstudy.recipe_search import recipes
from bertstudy.training.config import config_from_args, given_fields, preset_config
from bertstudy.training.trainer import Trainer
from tests.train_helpers import write_tiny_corpus

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32, max_predictions=5,
            batch_size=4, grad_accum=1, warmup_steps=2, log_interval=2, eval_interval=2, save_interval=2,
            eval_instances=8, dropout=0.0, keep_last=0)
CANDIDATES = [{"name": "plain", "overrides": TINY},
              {"name": "pre-ln-constant-unigram", "overrides": {**TINY, "pre_ln": True, "schedule": "constant",
                                                                "mlm_bias_init": "unigram"}}]


def load_script():
    spec = importlib.util.spec_from_file_location("quick_recipes", ROOT / "scripts" / "quick_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quick_recipes = load_script()


@pytest.fixture()
def search(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps(CANDIDATES), encoding="utf-8")
    argv = ["--candidates", str(candidates), "--steps", "4", "--seeds", "1", "--corpus", str(corpus),
            "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "runs"), "--threads", "1"]
    return tmp_path, argv, tmp_path / "runs" / "recipes.jsonl"


def _lines(path: Path) -> list[dict]:
    return [record for _, record in iter_jsonl(path)]


def test_two_tiny_candidates_give_one_line_each_and_a_rerun_skips_them(search, monkeypatch, capsys):
    tmp_path, argv, results = search
    assert quick_recipes.main(argv) == 0
    lines = _lines(results)
    assert [(r["name"], r["seed"], r["steps"], r["status"]) for r in lines] == [
        ("plain", 1, 4, "done"), ("pre-ln-constant-unigram", 1, 4, "done")]
    for record, candidate in zip(lines, CANDIDATES):
        assert record["overrides"] == candidate["overrides"] and record["steps_done"] == 4
        assert {k: record["config"][k] for k in candidate["overrides"]} == candidate["overrides"]
        assert record["config"]["seed"] == 1 and record["config"]["steps"] == 4
        assert record["seconds"] > 0 and 0 <= record["final_mask_acc"] <= record["best_mask_acc"] <= 1
        assert record["eval"]["steps"] == [0, 2, 4] and record["eval"]["mask_acc"][-1] == record["final_mask_acc"]
        assert record["best_mask_acc"] == max(record["eval"]["mask_acc"])
        assert 0 < record["shortcut_mask_level"] < 1 and record["target"] == 2 * record["shortcut_mask_level"]
        reached = record["step_to_target"]
        if reached is None:
            assert record["seconds_to_target"] is None
        else:
            index = record["eval"]["steps"].index(reached)
            assert record["eval"]["mask_acc"][index] >= record["target"]
            assert all(a < record["target"] for a in record["eval"]["mask_acc"][:index])
            assert record["seconds_to_target"] == record["eval"]["seconds"][index]
        assert [p["text"] for p in record["probes"]] == list(recipes.PROBE_SENTENCES)
        assert all(len(p["masks"]) == 1 and len(p["masks"][0]) == 3 for p in record["probes"])
        assert Path(record["run_dir"]).parent == tmp_path / "runs"
    assert not (Path(lines[1]["run_dir"]) / "export_hf").exists()  # pre-LN: probed from the final model
    out = capsys.readouterr().out
    assert out.count("(seed 1, 4 steps, ") == 2 and "中国[MASK]民 -> " in out

    def no_training(config, given):
        raise AssertionError("a recorded candidate was trained again")

    monkeypatch.setattr(recipes, "train_candidate", no_training)
    before = results.read_bytes()
    assert quick_recipes.main(argv) == 0
    assert results.read_bytes() == before
    assert capsys.readouterr().out.count("already; skipped") == 2
    assert quick_recipes.main([*argv, "--steps", "6", "--only", "plain", "--list"]) == 0  # --list trains nothing
    assert capsys.readouterr().out.startswith("plain: {")


def test_an_interrupted_candidate_resumes_from_its_checkpoint(search, monkeypatch, capsys):
    tmp_path, argv, results = search
    argv = [*argv, "--only", "plain"]
    real_step = Trainer.train_step
    calls = {"interrupted": False}

    def interrupt_at_step_2(self, step, batches=None):
        if step == 2 and not calls["interrupted"]:  # after the checkpoint of step 2
            calls["interrupted"] = True
            raise KeyboardInterrupt
        return real_step(self, step, batches)

    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_2)
    assert quick_recipes.main(argv) == EXIT_INTERRUPTED
    assert not results.exists()
    [checkpoint] = (tmp_path / "runs").rglob("step_000002.pth")
    capsys.readouterr()
    assert quick_recipes.main(argv) == 0
    assert f"resuming from {checkpoint} (step 2)" in capsys.readouterr().err
    [record] = _lines(results)
    assert record["name"] == "plain" and record["steps_done"] == 4 and record["eval"]["steps"] == [0, 2, 4]


@pytest.mark.parametrize("content,message", [
    ("{}", "must be a non-empty JSON list"),
    ('[{"overrides": {}}]', 'needs a non-empty "name"'),
    ('[{"name": "a", "overrides": {"learning_rate": 1}}]', "'learning_rate' is not a training option"),
    ('[{"name": "a", "overrides": {"seed": 3}}]', "'seed' is set by the search"),
    ('[{"name": "a", "overrides": {"lr": "fast"}}]', "candidate 'a': lr: expected a number, got 'fast'"),
    ('[{"name": "a", "overrides": {"pre_ln": 1}}]', "pre_ln must be true or false"),
    ('[{"name": "a", "overrides": {"schedule": "wsd"}}]', "--schedule must be one of cosine, constant"),
    ('[{"name": "a"}, {"name": "a"}]', "the name repeats"),
    ('[{"name": "a", "extra": 1}]', "unknown key(s) extra"),
    ("[", "invalid JSON"),
])
def test_a_bad_candidates_file_is_one_line_naming_it(search, capsys, content, message):
    tmp_path, argv, _ = search
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    assert quick_recipes.main([*argv, "--candidates", str(bad)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}") and message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_other_bad_input_is_refused_before_any_training(search, capsys):
    tmp_path, argv, results = search
    assert quick_recipes.main([*argv, "--only", "plain,nope"]) == EXIT_USAGE
    assert "--only: no candidate named nope; the candidates are plain, pre-ln-constant-unigram" in capsys.readouterr().err
    assert quick_recipes.main([*argv, "--corpus", str(tmp_path / "none.jsonl")]) == EXIT_BAD_INPUT
    assert "none.jsonl: no such corpus file" in capsys.readouterr().err
    results.parent.mkdir()
    results.write_text('{"name": "plain"}\n', encoding="utf-8")
    assert quick_recipes.main(argv) == EXIT_BAD_INPUT
    assert f"{results}:1: not a results line" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quick_recipes.main([*argv, "--seeds", "1,1"])


def test_the_built_in_candidates_cover_every_knob_and_parse():
    candidates = recipes.load_candidates(None)
    assert candidates[0].name == "baseline" and candidates[0].overrides == {}
    changed = {key for c in candidates for key in c.overrides}
    assert {"warmup_steps", "schedule", "lr", "pre_ln", "mlm_bias_init", "mask_rate", "max_seq_len", "hidden_size",
            "num_layers", "nsp_weight", "decay_fraction"} <= changed
    assert any(len(c.overrides) >= 3 for c in candidates)  # combinations
    singles = [c for c in candidates[1:] if len(c.overrides) == 1]
    assert len(singles) >= 8
    names = [c.name for c in candidates]
    assert len(set(names)) == len(names)
    everything = {c.name: c.overrides for c in candidates}["all"]
    ablations = [c for c in candidates if c.name.startswith("all-no-")]
    assert len(ablations) == 6  # "all" less each of its six knobs (the mask rate brings its max_predictions)
    for c in ablations:
        removed = set(everything) - set(c.overrides)
        assert removed and removed <= {"pre_ln", "mlm_bias_init", "schedule", "lr", "nsp_weight", "mask_rate", "max_predictions"}
        assert all(everything[k] == v for k, v in c.overrides.items())
    assert {k for c in ablations for k in set(everything) - set(c.overrides)} == set(everything)


def test_equal_flops_scales_the_steps():
    deep = recipes.Candidate("deep", {"num_layers": 4}, equal_flops=True)
    ratio = recipes.flops_per_step(preset_config(recipes.PRESET)) / recipes.flops_per_step(preset_config(recipes.PRESET, num_layers=4))
    assert 0.4 < ratio < 0.6
    assert recipes.candidate_steps(deep, None) == round(1200 * ratio)
    assert recipes.candidate_steps(deep, 100) == round(100 * ratio)
    assert recipes.candidate_steps(recipes.Candidate("same", {}, equal_flops=True), 300) == 300
    assert recipes.candidate_steps(recipes.Candidate("own", {"steps": 50}), None) == 50


def test_run_folders_keep_their_names():
    """The folder name hashes the run key: runs/across_models and runs/recipes are found again by it, so a
    change here would retrain every finished run in a new folder."""
    settings = recipes.SearchSettings("c", Path("runs/across_models"), Path("r"), "cache", (1,), 1000, None)
    quick = recipes.Candidate("quick", {"mlm_bias_init": "unigram", "schedule": "constant", "lr": 0.004,
                                        "nsp_weight": 0.0, "mask_rate": 0.25, "max_predictions": 16,
                                        "milestones": "300,500,700,1000"})
    key = recipes.run_key(quick, 1, 1000)
    assert key == {"name": "quick", "seed": 1, "overrides": quick.overrides, "steps": 1000}
    assert recipes.run_folder(settings, key) == Path("runs/across_models/quick_seed1_c00a9785")
    other = recipes.run_key(recipes.Candidate("x", {"pre_ln": True, "lr": 0.003, "batch_size": 32}), 7, 90)
    assert recipes.run_folder(settings, other).name == "x_seed7_8a56077a"
    from bertstudy.across_models.plan import STEPS, planned_runs

    names = {recipes.run_folder(settings, recipes.run_key(r.candidate, r.seed, recipes.candidate_steps(r.candidate, STEPS))).name
             for r in planned_runs()}
    assert {"baseline_seed1_93a35ea7", "all-no-mask-25_seed2_b3d73da4", "quick-no-constant_seed3_cc97083f",
            "quick_seed6_e8b0dc0b"} <= names and len(names) == 21


def _old_train_argv(settings, candidate, seed, steps, folder) -> list[str]:
    """The command line the search used to give train_large_100k.main: the config it parsed to is the one
    train_fields and train_config must still give."""
    argv = ["--preset", recipes.PRESET, "--corpus", str(settings.corpus), "--cache-dir", str(settings.cache_dir),
            "--out-dir", str(folder), "--seed", str(seed), "--resume-if-possible", "--no-progress"]
    for key, value in candidate.overrides.items():
        if key == "steps":
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag if value else "--no-" + key.replace("_", "-")] if isinstance(value, bool) else [flag, str(value)]
    argv += ["--steps", str(steps)]
    return argv + (["--threads", str(settings.threads)] if settings.threads is not None else [])


@pytest.mark.parametrize("candidate,threads", [
    (recipes.Candidate("x", {"pre_ln": True, "wwm": False, "dropout": 0.0, "lr": 3e-3, "schedule": "constant",
                             "batch_size": 32}), None),
    (recipes.Candidate("deep-4", {"num_layers": 4}, equal_flops=True), 1),
    (recipes.Candidate("auto", {"batch_size": "auto", "steps": 50, "lr": "0.001", "milestones": "10,20"}), 2),
    (recipes.Candidate("all-no-pre-ln", {k: v for k, v in recipes.ALL.items() if k != "pre_ln"}), None),
])
def test_the_config_built_directly_is_the_one_the_flags_gave(tmp_path, candidate, threads):
    settings = recipes.SearchSettings("c.jsonl", tmp_path, tmp_path / "r.jsonl", "cache", (7,), None, threads)
    steps = recipes.candidate_steps(candidate, settings.steps)
    folder = recipes.run_folder(settings, recipes.run_key(candidate, 7, steps))
    args = train_large_100k.build_parser().parse_args(_old_train_argv(settings, candidate, 7, steps, folder))
    given = recipes.train_fields(settings, candidate, 7, steps, folder)
    assert given == given_fields(args)
    config = recipes.train_config(given)
    assert config == config_from_args(args)
    assert config.steps == steps and config.seed == 7 and config.threads == threads and not config.progress


def test_a_run_is_trained_resumable_and_its_errors_are_exit_codes(monkeypatch, capsys):
    import bertstudy.training.run as run

    calls = []

    def fake_run_training(config, resume=None, *, given=None, overwrite=False, if_possible=False):
        calls.append((config, resume, given, overwrite, if_possible))
        if config.seed == 3:
            raise BadInputError("c.jsonl", "not a corpus")
        if config.seed == 4:
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(run, "run_training", fake_run_training)
    given = {"preset": recipes.PRESET, "seed": 1, "threads": 1}
    config = recipes.train_config(given)
    assert recipes.train_candidate(config, given) == 0
    assert calls == [(config, "auto", given, False, True)]
    unthreaded = recipes.train_config({"preset": recipes.PRESET, "seed": 1})
    assert recipes.train_candidate(unthreaded, {}) == 0 and calls[-1][0].threads is None  # resolve_run picks them
    capsys.readouterr()
    assert recipes.train_candidate(recipes.train_config({**given, "seed": 3}), given) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: c.jsonl: not a corpus\n"
    assert recipes.train_candidate(recipes.train_config({**given, "seed": 4}), given) == EXIT_INTERRUPTED


def test_the_quick_preset_is_the_searchs_winner_on_the_searchs_baseline():
    """quick = quick_plateau + every knob of "all" but pre-LN (all-no-pre-ln: docs/PRESETS.md), so it keeps
    its transformers export; the search's candidates stay changes to the recipe before the search."""
    winner = {c.name: c.overrides for c in recipes.load_candidates(None)}["all-no-pre-ln"]
    assert recipes.PRESET == "quick_plateau"
    quick = dataclasses.replace(preset_config("quick_plateau", **winner), preset="quick", steps=1000)
    assert preset_config("quick") == quick  # 1,000 steps, not 1,200: make quickstart within 8 min (config.py)
    assert not preset_config("quick").pre_ln and preset_config("quick").eval_mask_rate == 0.15
    cosine = {c.name: c.overrides for c in recipes.load_candidates(None)}["quick-no-constant"]
    assert cosine == {k: v for k, v in winner.items() if k != "schedule"} and preset_config(recipes.PRESET).schedule == "cosine"


def _record(name, final, seconds_to_target=None, status="done"):
    probes = [{"text": "中国[MASK]民", "masks": [[{"token": t, "prob": 0.1} for t in "人国民"]]}]
    return {"name": name, "seed": 42, "overrides": {"lr": 0.004}, "steps": 1200, "equal_flops": False,
            "status": status, "exit_code": 4, "steps_done": 1200, "seconds": 600.0, "final_mask_acc": final,
            "best_mask_acc": final, "shortcut_mask_level": 0.046, "target": 0.092,
            "step_to_target": None if seconds_to_target is None else 700, "seconds_to_target": seconds_to_target,
            "probes": probes}


def test_the_table_puts_the_fastest_to_target_first_and_failures_last(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    rows = [_record("slow-miss", 0.05), _record("broke", None, status="failed"), _record("late", 0.2, 500.0),
            _record("early", 0.15, 300.0), _record("near-miss", 0.08)]
    results.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert quick_recipes.main(["--table", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")][2:]  # below the header and its rule
    assert [line.split(" | ")[0][2:] for line in table] == ["early", "late", "near-miss", "slow-miss", "broke"]
    assert "target (twice it) 9.2%" in out and "| 700 (300) | 人 国 民 |" in table[0]
    assert "failed (exit 4)" in table[-1] and "| never |" in table[2]
    assert all(line.count(" | ") == 7 for line in table)


def test_the_table_of_a_missing_or_foreign_file_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "none.jsonl"
    assert quick_recipes.main(["--table", "--results", str(missing)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"name": "x"}\n', encoding="utf-8")
    assert quick_recipes.main(["--table", "--results", str(foreign)]) == EXIT_BAD_INPUT
    assert f"{foreign}:1" in capsys.readouterr().err
