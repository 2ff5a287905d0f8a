"""Bad corpus input to verify_dataset.py: every case is one line `error: FILE[:LINE]: ...` on
stderr, exit 3, no traceback, and the previous report left exactly as it was (nothing half-written).
Where the input is data, hypothesis generates it."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verify_dataset
from bertstudy.corpus.dataset_report import is_cjk_ideograph
from bertstudy.base.errors import EXIT_BAD_INPUT

GOOD_DOC = {"id": "d0", "title": "新闻", "source": "embedded:peoples_daily", "domain": "news", "url": None,
            "sentences": ["今天北京天气很好。", "我们去公园散步。"]}
GOOD_LINE = json.dumps(GOOD_DOC, ensure_ascii=False)
# an earlier dataset report (the kind verify_dataset.py may replace), which bad input must leave as it was
OLD_REPORT = '{"checks": [], "passed": true, "profile": "embedded", "old": "report"}\n'
HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_rejected(corpus, tmp_path, capsys, line=None, fragment=None):
    """Run the script on `corpus`; assert the one-line error, exit 3 and the untouched old report."""
    report = tmp_path / "report.json"
    report.write_text(OLD_REPORT)
    capsys.readouterr()
    code = verify_dataset.main([str(corpus), "--report", str(report)])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    where = f"{corpus}:{line}:" if line is not None else f"{corpus}"
    assert err.startswith(f"error: {where}"), err
    if fragment:
        assert fragment in err, err
    assert report.read_text() == OLD_REPORT
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []  # no temp file left
    return err


def test_missing_file(tmp_path, capsys):
    check_rejected(tmp_path / "nope.jsonl", tmp_path, capsys, fragment="no such file")


@pytest.mark.parametrize("content", ["", "\n\n", "   \n"])
def test_empty_file(tmp_path, capsys, content):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text(content)
    check_rejected(corpus, tmp_path, capsys, fragment="empty")


def test_folder_instead_of_file(tmp_path, capsys):
    (tmp_path / "dir.jsonl").mkdir()
    check_rejected(tmp_path / "dir.jsonl", tmp_path, capsys, fragment="folder")


@HYPOTHESIS
@given(good_lines=st.integers(0, 4), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xe4\xb8", b"\x80abc"]))
def test_non_utf8_names_the_line(tmp_path, capsys, good_lines, bad):
    corpus = tmp_path / "latin.jsonl"
    body = (GOOD_LINE + "\n") * good_lines
    corpus.write_bytes(body.encode("utf-8") + b'{"id": "x", "sentences": ["' + bad + b'"]}\n')
    check_rejected(corpus, tmp_path, capsys, line=good_lines + 1, fragment="not UTF-8")


@HYPOTHESIS
@given(good_lines=st.integers(1, 4), cut=st.floats(0.0, 1.0, exclude_max=True), trailing_newline=st.booleans())
def test_truncated_jsonl_line(tmp_path, capsys, good_lines, cut, trailing_newline):
    # a line cut anywhere inside is invalid JSON, whether the file ends there or more lines follow
    corpus = tmp_path / "cut.jsonl"
    keep = 1 + int(cut * (len(GOOD_LINE) - 2))  # at least "{", never the closing "}"
    text = (GOOD_LINE + "\n") * good_lines + GOOD_LINE[:keep] + ("\n" + GOOD_LINE + "\n" if trailing_newline else "")
    corpus.write_text(text, encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, line=good_lines + 1, fragment="invalid JSON")


NOT_A_LIST_OF_STRINGS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)), min_size=1, max_size=3),
    st.lists(st.text(max_size=4), max_size=2).map(lambda items: items + [7]),
)


@HYPOTHESIS
@given(sentences=NOT_A_LIST_OF_STRINGS, good_lines=st.integers(0, 3))
def test_sentences_not_a_list_of_strings(tmp_path, capsys, sentences, good_lines):
    corpus = tmp_path / "types.jsonl"
    bad = dict(GOOD_DOC, id="bad", sentences=sentences)
    corpus.write_text((GOOD_LINE + "\n") * good_lines + json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, line=good_lines + 1, fragment="'sentences' must be a list of strings")


@HYPOTHESIS
@given(record=st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5).map(json.dumps)))
def test_line_that_is_not_an_object(tmp_path, capsys, record):
    corpus = tmp_path / "notobj.jsonl"
    line = record if isinstance(record, str) else json.dumps(record)
    corpus.write_text(GOOD_LINE + "\n" + line + "\n", encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, line=2, fragment="expected a JSON object")


def test_document_without_sentences_key(tmp_path, capsys):
    corpus = tmp_path / "nokey.jsonl"
    corpus.write_text(GOOD_LINE + "\n" + json.dumps({"id": "x", "text": "中文"}) + "\n", encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, line=2, fragment="sentences")


NON_CJK_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).filter(
    lambda s: not any(is_cjk_ideograph(c) for c in s))


@HYPOTHESIS
@given(sentences=st.lists(NON_CJK_TEXT, max_size=4), blank_lines=st.integers(0, 2), good_lines=st.integers(0, 3))
def test_document_without_chinese_text(tmp_path, capsys, sentences, blank_lines, good_lines):
    # blank lines are skipped by the reader; the error must still name the document's real line
    corpus = tmp_path / "latin_only.jsonl"
    bad = dict(GOOD_DOC, id="english", sentences=sentences)
    text = (GOOD_LINE + "\n") * good_lines + "\n" * blank_lines + json.dumps(bad, ensure_ascii=False) + "\n" + GOOD_LINE + "\n"
    corpus.write_text(text, encoding="utf-8")
    err = check_rejected(corpus, tmp_path, capsys, line=good_lines + blank_lines + 1, fragment="no Chinese characters")
    assert "'english'" in err


def test_original_format_with_wrong_types(tmp_path, capsys):
    corpus = tmp_path / "chinese_dataset_100k.json"
    corpus.write_text(json.dumps({"sentences": ["中文", 3], "vocab": [], "metadata": {}}), encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, fragment="'sentences' must be a list of strings")


def test_original_format_without_chinese(tmp_path, capsys):
    corpus = tmp_path / "chinese_dataset_100k.json"
    sentences = ["中文句子"] * 64 + ["english only"] * 3
    corpus.write_text(json.dumps({"sentences": sentences, "vocab": [], "metadata": {}}, ensure_ascii=False), encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, fragment="sentences 64-66 hold no Chinese characters")


def test_original_format_truncated(tmp_path, capsys):
    corpus = tmp_path / "chinese_dataset_100k.json"
    text = json.dumps({"sentences": ["中文"] * 10, "vocab": [], "metadata": {}}, ensure_ascii=False, indent=2)
    corpus.write_text(text[: len(text) // 2], encoding="utf-8")
    check_rejected(corpus, tmp_path, capsys, fragment="invalid JSON")
