"""A newcomer's first commands: a missing corpus names where make quickstart put one, an abbreviated flag is
refused, --help descriptions are whole, visualize_results.py says the history is missing first, a tiny
corpus is warned about, and fill_mask.py's [mask] gets a hint about the case."""

from __future__ import annotations

import importlib

import pytest

import fill_mask
import train_large_100k
import verify_dataset
import visualize_results
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE
from bertstudy.corpus.corpus_io import EMBEDDED_CORPUS
from tests.train_helpers import tiny_args, write_tiny_corpus

SCRIPTS = ("rare_char_fetch", "verify_dataset", "train_large_100k", "analyze_100k", "visualize_results",
           "check_progress", "fill_mask", "probe_downstream")


@pytest.fixture
def quickstart_folder(tmp_path, monkeypatch):
    """A working folder after make quickstart: the embedded corpus in data/embedded/, none at data/corpus.jsonl."""
    monkeypatch.chdir(tmp_path)
    write_tiny_corpus(EMBEDDED_CORPUS.parent)
    return tmp_path


def test_verify_without_a_corpus_names_the_one_quickstart_collected(quickstart_folder, capsys):
    assert verify_dataset.main([]) == EXIT_BAD_INPUT  # the default, data/corpus.jsonl
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data/corpus.jsonl: no such file" in err and str(EMBEDDED_CORPUS) in err
    EMBEDDED_CORPUS.unlink()  # nothing collected yet: how to collect one
    assert verify_dataset.main(["data/corpus.jsonl"]) == EXIT_BAD_INPUT
    assert "rare_char_fetch.py --source embedded --out data/corpus.jsonl" in capsys.readouterr().err


def test_training_without_corpus_names_the_one_quickstart_collected(quickstart_folder, capsys):
    args = tiny_args(EMBEDDED_CORPUS, quickstart_folder / "run", quickstart_folder / "cache")
    del args[args.index("--corpus"):args.index("--corpus") + 2]
    assert train_large_100k.main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"no such corpus; make quickstart collected the embedded corpus in {EMBEDDED_CORPUS}: give --corpus " \
           f"{EMBEDDED_CORPUS}" in err


def test_an_abbreviated_flag_is_refused(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path)
    args = tiny_args(corpus, tmp_path / "run", tmp_path / "cache")
    args[args.index("--threads")] = "--thread"  # argparse would take it as --threads
    with pytest.raises(SystemExit) as exit_info:
        train_large_100k.main(args)
    assert exit_info.value.code == EXIT_USAGE and "unrecognized arguments: --thread" in capsys.readouterr().err


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_descriptions_end_with_a_whole_sentence(name):
    parser = importlib.import_module(name).build_parser()
    assert parser.description.rstrip().endswith((".", ")")), parser.description[-80:]


def test_visualize_without_arguments_says_the_history_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(visualize_results.REPO_ROOT)  # where the --out-dir rule would otherwise speak first
    if (visualize_results.REPO_ROOT / "training_history_100k.json").exists():
        pytest.skip("a history in the checkout's root")
    assert visualize_results.main([]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "training_history_100k.json: no such file" in err and "repository's root folder" not in err


@pytest.mark.slow  # two tiny runs
def test_a_corpus_of_three_documents_is_warned_about(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path, num_documents=3)
    assert train_large_100k.main(tiny_args(corpus, tmp_path / "run", tmp_path / "cache", steps=2)) == EXIT_OK
    err = capsys.readouterr().err
    assert "warning: the corpus has only 3 documents with text (2 to train on, 1 held out)" in err
    corpus = write_tiny_corpus(tmp_path, num_documents=40)
    assert train_large_100k.main(tiny_args(corpus, tmp_path / "run40", tmp_path / "cache", steps=2)) == EXIT_OK
    assert "documents with text" not in capsys.readouterr().err


def test_a_lower_case_mask_gets_a_hint(tmp_path, capsys):
    code = fill_mask.main([str(tmp_path), "中国[mask]民"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "write [MASK] in capitals, not [mask]" in err and err.count("\n") == 1
    assert fill_mask.main([str(tmp_path), "中国人民"]) == EXIT_USAGE
    assert "capitals" not in capsys.readouterr().err
