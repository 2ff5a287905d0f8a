"""The collector against a REAL MediaWiki 1.39 (tests/mediawiki_fixture.py): crawl it through the
Action API, then ingest the XML dump MediaWiki itself writes; both must give the articles' text,
simplified, with their domains and without duplicates."""

import json

import pytest

import rare_char_fetch
from bertstudy.corpus.corpus_io import load_documents
from tests.mediawiki_fixture import MediaWiki, WikiPage, unavailable_reason

PAGES = [
    WikiPage("黄芪", "'''黄芪'''是常用的中药材之一，味甘性温。<ref>见《本草纲目》第十二卷的记载。</ref>它的根可以入药，用于补气。\n\n"
                   "== 产地 ==\n黄芪主要产于山西和内蒙古等地。\n\n[[Category:中药]]"),
    WikiPage("當歸", "'''當歸'''是一種傳統的中藥材，常用於補血。當歸主要產於甘肅省岷縣一帶。\n\n[[Category:中药]]"),
    WikiPage("螳螂", "'''螳螂'''是一类捕食性的昆虫，前足呈镰刀状。螳螂在中国各地的草丛里都很常见。"),
    WikiPage("古琴", "'''古琴'''是中国最古老的弹拨乐器之一，有七根弦。古琴曲《流水》曾经被送入太空。"),
    WikiPage("黄耆", "#REDIRECT [[黄芪]]"),
]
KEYWORDS = {"entries": [{"category": "中药", "domain": "herb"}, {"keyword": "昆虫", "domain": "insect"}]}
EXPECTED = {  # what the crawl must find: the category's two pages and the keyword's one, simplified
    "黄芪": ("herb", ["黄芪是常用的中药材之一，味甘性温。", "它的根可以入药，用于补气。", "黄芪主要产于山西和内蒙古等地。"]),
    "當歸": ("herb", ["当归是一种传统的中药材，常用于补血。", "当归主要产于甘肃省岷县一带。"]),
    "螳螂": ("insect", ["螳螂是一类捕食性的昆虫，前足呈镰刀状。", "螳螂在中国各地的草丛里都很常见。"]),
}

# slow: a real MediaWiki installed and served by php for the module
pytestmark = [pytest.mark.slow, pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")]


@pytest.fixture(scope="module")
def wiki(tmp_path_factory):
    with MediaWiki(tmp_path_factory.mktemp("mediawiki"), PAGES) as running:
        yield running


@pytest.fixture(scope="module")
def keywords(tmp_path_factory):
    path = tmp_path_factory.mktemp("keywords") / "keywords.json"
    path.write_text(json.dumps(KEYWORDS, ensure_ascii=False), encoding="utf-8")
    return path


def assert_no_duplicates(docs):
    ids = [d.id for d in docs]
    sentences = [s for d in docs for s in d.sentences]
    assert len(ids) == len(set(ids)) and len(sentences) == len(set(sentences))


def test_wiki_api_crawl_of_a_real_mediawiki(wiki, keywords, tmp_path, capsys):
    out = tmp_path / "corpus.jsonl"
    code = rare_char_fetch.main(["--source", "wiki-api", "--api-url", wiki.api_url, "--keywords", str(keywords),
                                 "--out", str(out), "--max-rps", "50", "--retry-base-delay", "0.01", "--no-progress-bar"])
    assert code == 0, capsys.readouterr().err
    docs = load_documents(out)
    assert {d.title: (d.domain, d.sentences) for d in docs} == EXPECTED  # the instrument page matches no keyword
    assert all(d.source == "wiki-api" and d.url.startswith(f"http://127.0.0.1:{wiki.port}/index.php?curid=") for d in docs)
    assert_no_duplicates(docs)
    progress = json.loads((tmp_path / "crawl_progress.json").read_text(encoding="utf-8"))
    assert progress["done"] and progress["documents"] == 3 and progress["source"] == "wiki-api"
    # a second run finds the finished state and keeps the corpus as it is
    before = out.read_bytes()
    assert rare_char_fetch.main(["--source", "wiki-api", "--api-url", wiki.api_url, "--keywords", str(keywords),
                                 "--out", str(out), "--no-progress-bar"]) == 0
    assert out.read_bytes() == before and "already complete" in capsys.readouterr().out


def test_wiki_dump_written_by_mediawiki(wiki, keywords, tmp_path, capsys):
    dump = wiki.dump(tmp_path / "dump.xml")
    out = tmp_path / "corpus.jsonl"
    code = rare_char_fetch.main(["--source", "wiki-dump", str(dump), "--keywords", str(keywords),
                                 "--out", str(out), "--workers", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    docs = {d.title: d for d in load_documents(out)}
    assert "黄耆" not in docs  # the redirect
    for title, (domain, sentences) in EXPECTED.items():
        assert (docs[title].domain, docs[title].sentences) == (domain, sentences)
        assert docs[title].source == "wiki-dump" and docs[title].id.startswith("wiki-")
    assert docs["古琴"].domain == "general" and docs["古琴"].sentences[0] == "古琴是中国最古老的弹拨乐器之一，有七根弦。"
    assert docs["當歸"].url == f"http://127.0.0.1:{wiki.port}/index.php/%E7%95%B6%E6%AD%B8"
    assert_no_duplicates(list(docs.values()))
    # the dump holds the traditional text as written (the API converted it server-side): OpenCC did it here
    assert "traditional -> simplified: 2 sentences changed" in printed.out
