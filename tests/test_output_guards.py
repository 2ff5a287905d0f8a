"""Outputs are never silently replaced or scattered: analyze_100k.py's default --out, visualize_results.py
with a history in the repository root, rare_char_fetch.py's --out checked before the work."""

import json
import shutil
from pathlib import Path

import analyze_100k
import rare_char_fetch
import visualize_results
from bertstudy.base.errors import EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "original_training_history_100k.json"
CPU_TIER = ROOT / "results" / "training_history_100k.json"


def test_default_out_is_beside_the_history(tmp_path, capsys, monkeypatch):
    history = tmp_path / "run" / "training_history_100k.json"
    history.parent.mkdir()
    shutil.copy(FIXTURE, history)
    monkeypatch.chdir(tmp_path)
    assert analyze_100k.main([str(history), "--bootstrap", "0", "--quiet"]) == EXIT_OK
    expected = history.parent / "analysis_100k_result.json"
    assert capsys.readouterr().out.strip() == f"wrote {expected}"
    assert json.loads(expected.read_text())["total_steps"] == 100_000
    assert not (tmp_path / "analysis_100k_result.json").exists()  # nothing in the current folder


def test_an_analysis_of_other_numbers_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert analyze_100k.main([str(CPU_TIER), "--out", str(out), "--bootstrap", "0", "--quiet"]) == EXIT_OK
    first = out.read_bytes()
    # the same history and metric again: an analysis is only redone
    assert analyze_100k.main([str(CPU_TIER), "--out", str(out), "--bootstrap", "0", "--quiet"]) == EXIT_OK
    capsys.readouterr()
    # another metric of the same history (other numbers): refused, one line, nothing written
    code = analyze_100k.main([str(CPU_TIER), "--metric", "eval_mlm_acc", "--out", str(out), "--bootstrap", "0"])
    out_text, err = capsys.readouterr()
    assert code == EXIT_USAGE and out_text == "" and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == first
    assert analyze_100k.main([str(CPU_TIER), "--metric", "eval_mlm_acc", "--out", str(out), "--bootstrap", "0",
                              "--quiet", "--overwrite"]) == EXIT_OK
    assert json.loads(out.read_text())["metric"]["name"] == "eval_mlm_acc"


def test_a_file_of_unknown_origin_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "notes.json"
    out.write_text('{"mine": 1}\n')
    assert analyze_100k.main([str(FIXTURE), "--out", str(out), "--bootstrap", "0"]) == EXIT_USAGE
    assert out.read_text() == '{"mine": 1}\n' and "unknown origin" in capsys.readouterr().err


def test_visualize_refuses_to_draw_into_the_repository_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(visualize_results, "REPO_ROOT", tmp_path.resolve())
    monkeypatch.chdir(tmp_path)
    shutil.copy(CPU_TIER, tmp_path / "training_history_100k.json")
    assert visualize_results.main(["--lang", "en"]) == EXIT_USAGE  # no arguments: the history in the root
    err = capsys.readouterr().err
    assert "repository's root folder" in err and "--out-dir" in err
    assert list(tmp_path.glob("*.png")) == []


def test_rare_char_fetch_checks_out_before_collecting(tmp_path, capsys):
    (tmp_path / "a_file").write_text("keep")
    code = rare_char_fetch.main(["--source", "embedded", "--out", str(tmp_path / "a_file" / "corpus.jsonl")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no progress or state file either
