"""Outputs are never silently replaced or scattered: analyze_100k.py's default --out, visualize_results.py
with a history in the repository root, rare_char_fetch.py's --out checked before the work."""

import json
import shutil
from pathlib import Path

import pytest

import analyze_100k
import rare_char_fetch
import visualize_results
from bertstudy.base.errors import EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "original_training_history_100k.json"
CPU_TIER = ROOT / "tests" / "data" / "cpu_tier_seed42_history.json"  # a real run, pinned


@pytest.mark.slow  # analyses and charts of real histories
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


@pytest.mark.slow  # analyses and charts of real histories
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


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow  # analyses and charts of real histories
def test_rare_char_fetch_keeps_a_corpus_of_another_source(tmp_path, capsys):
    """A crawl at --out is not replaced by an embedded collection without --overwrite."""
    out = tmp_path / "corpus.jsonl"
    crawl = json.dumps({"id": "wiki-1", "title": "t", "source": "wiki-api", "domain": "d", "url": None,
                        "sentences": ["一个很长的中文句子在这里"]}, ensure_ascii=False) + "\n"
    out.write_text(crawl, encoding="utf-8")
    small = ["--embedded-parts", "peoples_daily", "--max-articles", "5", "--out", str(out)]
    assert rare_char_fetch.main(small) == EXIT_USAGE
    line = _one_line(capsys)
    assert str(out) in line and "wiki-api" in line and "--overwrite" in line
    assert out.read_text(encoding="utf-8") == crawl
    assert not (tmp_path / "crawl_progress.json").exists()  # refused before the collection began
    (tmp_path / "notes.jsonl").write_text('{"mine": 1}\n', encoding="utf-8")  # not a corpus at all
    assert rare_char_fetch.main([*small[:-1], str(tmp_path / "notes.jsonl")]) == EXIT_USAGE
    assert "not a corpus" in _one_line(capsys)
    # the same source remakes its own output: no flag needed; another source with --overwrite
    assert rare_char_fetch.main(small + ["--overwrite"]) == EXIT_OK
    assert '"source": "embedded:peoples_daily"' in out.read_text(encoding="utf-8")
    assert rare_char_fetch.main(small) == EXIT_OK


def test_verify_report_keeps_an_unrelated_json(tmp_path, capsys):
    import verify_dataset

    corpus = tmp_path / "corpus.jsonl"
    assert rare_char_fetch.main(["--embedded-parts", "peoples_daily", "--max-articles", "5", "--out", str(corpus)]) == 0
    report = tmp_path / "settings.json"
    report.write_text('{"theme": "dark"}', encoding="utf-8")
    argv = [str(corpus), "--report", str(report), "--quiet"]
    assert verify_dataset.main(argv) == EXIT_USAGE
    line = _one_line(capsys)
    assert "--report" in line and "--overwrite" in line and report.read_text(encoding="utf-8") == '{"theme": "dark"}'
    assert verify_dataset.main(argv + ["--overwrite"]) in (0, 1)  # written (thresholds may fail on 5 articles)
    assert json.loads(report.read_text(encoding="utf-8"))["checks"]
    assert verify_dataset.main(argv) in (0, 1)  # a dataset report is simply redone


def test_make_quickstart_and_study_cpu_leave_data_corpus_alone():
    """The README's crawl target data/corpus.jsonl (and its progress file) is not the
    Makefile's: make quickstart / study-cpu collect into a folder of their own."""
    import subprocess

    for target in ("quickstart", "study-cpu"):
        done = subprocess.run(["make", "-n", target, "PY=python"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "data/corpus.jsonl" not in done.stdout and "data/dataset_report.json" not in done.stdout
        assert "rare_char_fetch.py --source embedded --out data/embedded/corpus.jsonl" in done.stdout
