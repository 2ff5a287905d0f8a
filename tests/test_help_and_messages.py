"""--help lists only the exit codes and causes that apply to the script; messages give
the advice that fits the command (the export folder for fill_mask.py, the file for a corpus of one
document)."""

from __future__ import annotations

import importlib

import pytest

import fill_mask
import train_large_100k
import verify_dataset
from bertstudy.base.errors import EXIT_BAD_INPUT
from bertstudy.corpus.corpus_io import Document, write_documents
from tests.train_helpers import tiny_args

SCRIPTS = ("rare_char_fetch", "verify_dataset", "train_large_100k", "analyze_100k", "visualize_results",
           "check_progress", "fill_mask", "probe_downstream")


def _help(name: str) -> str:
    return importlib.import_module(name).build_parser().format_help()


@pytest.mark.parametrize("name", SCRIPTS)
def test_exit_code_lines_name_only_this_scripts_causes(name):
    text = _help(name)
    epilog = text[text.index("exit codes:"):]
    assert ("non-finite" in epilog) == (name == "train_large_100k")
    assert ("--resume" in epilog) == (name == "train_large_100k")
    assert ("--require-r" in epilog) == (name == "analyze_100k")
    assert ("server" in epilog) == (name == "rare_char_fetch")


def test_every_verify_threshold_has_help_with_the_profiles_defaults():
    text = " ".join(_help("verify_dataset").split())
    assert "--min-sentences MIN_SENTENCES minimum number of sentences (embedded: 60000; original: 100000)" in text
    assert "--max-near-dup-rate MAX_NEAR_DUP_RATE near-duplicate distinct sentences must be below this share " \
           "(embedded: 0.02; original: unchecked)" in text
    parser = verify_dataset.build_parser()
    thresholds = next(g for g in parser._action_groups if g.title.startswith("thresholds"))
    assert all(action.help for action in thresholds._group_actions)


def test_fill_mask_on_a_run_folder_names_its_export_folder(tmp_path, capsys):
    run = tmp_path / "quick"
    (run / "export_hf").mkdir(parents=True)
    (run / "training_history_100k.json").write_text("{}", encoding="utf-8")
    assert fill_mask.main([str(run), "中国[MASK]民"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / "export_hf") in err[0]
    (run / "export_hf").rmdir()  # still training: no export yet
    assert fill_mask.main([str(run), "中国[MASK]民"]) == EXIT_BAD_INPUT
    assert "when it finishes" in capsys.readouterr().err


def test_a_corpus_of_one_document_is_named_in_the_error(tmp_path, capsys):
    corpus = tmp_path / "one.jsonl"
    write_documents(corpus, [Document(id="d0", sentences=["中国人民的生活", "今天天气很好"], title="t",
                                      source="test", domain="test")])
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {corpus}: has 1 document(s) with text"), err
