"""The wiki-api crawler and its HTTP client against a local server that misbehaves on purpose
(tests/fault_server.py), SIGKILL at three points with resume, and bad input files."""

import bz2
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rare_char_fetch
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.base.errors import StudyError
from bertstudy.corpus.http_client import ApiClient, HttpConfig, parse_retry_after
from tests.fault_server import Article, FaultPlan, FaultServer

ROOT = Path(__file__).resolve().parent.parent.parent

ARTICLES = [
    Article(101, "黄芪", "黄芪是常用的中药材之一，味甘性温。它的根可以入药，用于补气。黄芪主要产于山西和内蒙古等地。", ("中药",)),
    Article(102, "當歸", "當歸是一種傳統的中藥材，常用於補血。當歸主要產於甘肅省岷縣一帶。", ("中药",)),
    Article(103, "茯苓", "茯苓是一种寄生在松树根上的真菌，可作中药。茯苓常用于利水渗湿的方子。", ("中药",)),
    Article(104, "螳螂", "螳螂是一类捕食性的昆虫，前足呈镰刀状。螳螂在中国各地都很常见。", ()),
    Article(105, "蟋蟀", "蟋蟀是一种会鸣叫的昆虫，雄虫以翅摩擦发声。斗蟋蟀是中国民间的传统游戏。", ()),
    Article(106, "鸬鹚", "鸬鹚是一种善于潜水捕鱼的水鸟，羽毛黑色。渔民驯养鸬鹚帮助捕鱼已有千年历史。", ()),
    Article(107, "古琴", "古琴是中国最古老的弹拨乐器之一，有七根弦。古琴曲《流水》曾被送入太空。", ("中国乐器",)),
    Article(108, "琵琶", "琵琶是一种拨弦乐器，音色清脆明亮。琵琶名曲有《十面埋伏》等。", ("中国乐器",)),
    Article(109, "../../etc/x", "这个标题看起来像一条路径，但它只是一个条目名称。标题永远不会变成文件路径。", ()),
    Article(110, "二胡", "二胡是一种两根弦的拉弦乐器，流行于中国各地。二胡名曲《二泉映月》广为人知。", ("中国乐器",)),
]
KEYWORDS = {"entries": [
    {"keyword": "中药", "domain": "herb"},
    {"keyword": "昆虫", "domain": "insect"},
    {"keyword": "捕鱼", "domain": "bird"},
    {"keyword": "路径", "domain": "misc"},
    {"category": "中国乐器", "domain": "instrument"},
]}


def write_keywords(folder: Path) -> Path:
    path = folder / "keywords.json"
    path.write_text(json.dumps(KEYWORDS, ensure_ascii=False), encoding="utf-8")
    return path


def crawl_args(server, folder: Path, *extra) -> list[str]:
    return ["--source", "wiki-api", "--api-url", server.url, "--keywords", str(folder / "keywords.json"),
            "--out", str(folder / "corpus.jsonl"), "--max-rps", "1000", "--timeout", "0.3",
            "--retry-base-delay", "0.01", "--retry-max-delay", "0.05", "--max-retries", "4",
            "--min-len", "5", "--no-progress-bar", *extra]


def client(**overrides) -> tuple[ApiClient, list[float]]:
    slept: list[float] = []
    config = HttpConfig(user_agent="test/1.0 (test)", timeout_s=0.3, max_retries=3, retry_base_delay_s=0.01,
                        retry_max_delay_s=10.0, max_rps=1000.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return ApiClient(config, sleep=slept.append), slept


SEARCH = {"action": "query", "list": "search", "srsearch": "中药", "format": "json"}


# -- the HTTP client alone ---------------------------------------------------------------------
def test_429_retry_after_is_honoured():
    with FaultServer(ARTICLES, FaultPlan(faults={1: "429"}, retry_after="3")) as server:
        api, slept = client()
        data = api.get_json(server.url, SEARCH)
    assert [a["pageid"] for a in data["query"]["search"]] == [101, 102]
    assert slept == [3.0] and api.retries == 1


def test_5xx_burst_then_success_with_exponential_backoff():
    with FaultServer(ARTICLES, FaultPlan(faults={1: "500", 2: "503", 3: "503"})) as server:
        api, slept = client()
        api.get_json(server.url, SEARCH)
    assert slept == pytest.approx([0.01, 0.02, 0.04]) and len(server.requests) == 4


@pytest.mark.parametrize("fault", ["hang", "truncated", "nonjson", "maxlag"])
def test_transient_faults_are_retried(fault):
    with FaultServer(ARTICLES, FaultPlan(faults={1: fault}, retry_after="0", hang_s=0.8)) as server:
        api, slept = client()
        data = api.get_json(server.url, SEARCH)
    assert data["query"]["search"] and api.retries == 1 and len(slept) == 1


def test_gives_up_after_max_retries_with_a_clear_error():
    with FaultServer(ARTICLES, FaultPlan(faults={n: "503" for n in range(1, 10)})) as server:
        api, _ = client(max_retries=2)
        with pytest.raises(StudyError, match="gave up after 3 tries"):
            api.get_json(server.url, SEARCH)
    assert len(server.requests) == 3


def test_other_api_errors_are_not_retried():
    with FaultServer(ARTICLES) as server:
        api, _ = client()
        with pytest.raises(StudyError, match="badvalue"):
            api.get_json(server.url, {"action": "query", "list": "nonsense"})
    assert len(server.requests) == 1


def test_redirect_to_another_host_is_not_followed():
    with FaultServer(ARTICLES) as elsewhere, FaultServer(ARTICLES, FaultPlan(faults={1: "redirect"})) as server:
        server.plan.redirect_to = elsewhere.url + "?action=query"
        api, _ = client()
        with pytest.raises(StudyError, match="another host"):
            api.get_json(server.url, SEARCH)
    assert elsewhere.requests == []


def test_rate_limit_spaces_request_starts():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    with FaultServer(ARTICLES) as server:
        config = HttpConfig(user_agent="t", max_rps=4.0)
        api = ApiClient(config, clock=lambda: now[0], sleep=sleep)
        for _ in range(3):
            api.get_json(server.url, SEARCH)
    assert slept == pytest.approx([0.25, 0.25])


def test_parse_retry_after_forms():
    assert parse_retry_after("7", now=0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


# -- whole crawls ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wiki():
    with FaultServer(ARTICLES, split_extracts=True, max_seconds=120) as server:
        yield server


@pytest.fixture(scope="module")
def baseline(wiki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    write_keywords(folder)
    start = len(wiki.requests)
    assert rare_char_fetch.main(crawl_args(wiki, folder)) == 0
    return folder, (folder / "corpus.jsonl").read_bytes(), len(wiki.requests) - start


def test_crawl_collects_every_listed_page_once(baseline, wiki):
    folder, corpus, _ = baseline
    docs = load_documents(folder / "corpus.jsonl")
    assert sorted(int(d.id.split("-")[1]) for d in docs) == [101, 102, 103, 104, 105, 106, 107, 108, 109, 110]
    by_title = {d.title: d for d in docs}
    assert by_title["當歸"].sentences[0] == "当归是一种传统的中药材，常用于补血。"  # traditional -> simplified
    assert by_title["古琴"].domain == "instrument" and by_title["黄芪"].domain == "herb"
    assert all(d.source == "wiki-api" and d.url.endswith(f"curid={d.id[5:]}") for d in docs)
    # srwhat=text, variant and maxlag on every request; a descriptive User-Agent
    assert all(q.get("maxlag") == "5" for q in wiki.requests)
    assert all(q.get("srwhat") == "text" for q in wiki.requests if q.get("list") == "search")
    assert all(q.get("variant") == "zh-cn" for q in wiki.requests if q.get("prop") == "extracts")
    assert any("excontinue" in q for q in wiki.requests) and any("sroffset" in q for q in wiki.requests)
    assert wiki.user_agents[-1].startswith("chinese-bert-correlation/")
    state = json.loads((folder / "crawl_state.json").read_text())
    assert state["done"] and json.loads((folder / "crawl_progress.json").read_text())["done"]
    assert not (folder / "corpus.jsonl.partial").exists()


def test_titles_never_become_paths(baseline):
    folder, _, _ = baseline
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.jsonl", "crawl_progress.json", "crawl_state.json", "keywords.json"]
    assert not (folder.parent.parent / "etc").exists()


def test_faults_during_a_crawl_do_not_change_the_corpus(baseline, wiki, tmp_path):
    _, corpus, _ = baseline
    write_keywords(tmp_path)
    start = len(wiki.requests)
    wiki.plan.faults = {start + 2: "429", start + 5: "500", start + 6: "503", start + 9: "truncated",
                        start + 12: "nonjson", start + 15: "maxlag", start + 18: "hang"}
    wiki.plan.retry_after, wiki.plan.hang_s = "0", 0.6
    try:
        assert rare_char_fetch.main(crawl_args(wiki, tmp_path)) == 0
    finally:
        wiki.plan.faults = {}
    assert (tmp_path / "corpus.jsonl").read_bytes() == corpus


def test_stop_rules(baseline, wiki, tmp_path):
    write_keywords(tmp_path)
    assert rare_char_fetch.main(crawl_args(wiki, tmp_path, "--max-articles", "3")) == 0
    assert len(load_documents(tmp_path / "corpus.jsonl")) == 3


def _run_script(args, env=None):
    return subprocess.Popen([sys.executable, str(ROOT / "rare_char_fetch.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)


@pytest.mark.parametrize("kill_at", ["listing", "first_fetches", "last_fetch"])
def test_sigkill_then_resume_equals_uninterrupted(baseline, wiki, tmp_path, kill_at):
    _, corpus, total_requests = baseline
    write_keywords(tmp_path)
    offset = {"listing": 3, "first_fetches": total_requests // 2, "last_fetch": total_requests}[kill_at]
    target = len(wiki.requests) + offset
    wiki.plan.faults = {target: "block"}
    process = _run_script(crawl_args(wiki, tmp_path))
    try:
        assert wiki.wait_for_request(target, timeout=60), process.communicate(timeout=5)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        wiki.plan.faults = {}
        wiki.release_blocked()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "corpus.jsonl").exists()  # only the partial corpus exists mid-crawl
    rerun = _run_script(crawl_args(wiki, tmp_path))
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    assert b"resumed from" in out
    assert (tmp_path / "corpus.jsonl").read_bytes() == corpus


def test_resume_drops_a_document_the_state_never_recorded(baseline, wiki, tmp_path):
    """A kill between the append and the state write leaves an unrecorded tail; resume cuts it."""
    _, corpus, _ = baseline
    write_keywords(tmp_path)
    assert rare_char_fetch.main(crawl_args(wiki, tmp_path, "--max-articles", "4")) == 0
    state_path = tmp_path / "crawl_state.json"
    state = json.loads(state_path.read_text())
    # Turn the finished short crawl back into an interrupted full one whose last append was not recorded.
    full_state = json.loads(json.dumps(state))
    full_state["done"] = False
    full_state["fingerprint"]["stop"][0] = None
    lines = (tmp_path / "corpus.jsonl").read_bytes().splitlines(keepends=True)
    recorded = b"".join(lines[:3])
    (tmp_path / "corpus.jsonl.partial").write_bytes(recorded + lines[3] + b'{"id": "torn')
    (tmp_path / "corpus.jsonl").unlink()
    full_state["corpus_bytes"] = len(recorded)
    full_state["fetched"] = next(i for i, item in enumerate(state["queue"]) if f'"wiki-{item[0]}"'.encode() in lines[3])
    state_path.write_text(json.dumps(full_state))
    assert rare_char_fetch.main(crawl_args(wiki, tmp_path)) == 0
    assert (tmp_path / "corpus.jsonl").read_bytes() == corpus


def test_changed_settings_refuse_to_resume(baseline, wiki, tmp_path, capsys):
    write_keywords(tmp_path)
    (tmp_path / "crawl_state.json").write_text(json.dumps({"format": "chinese-bert-correlation/crawl-state-v1", "fingerprint": {}}))
    assert rare_char_fetch.main(crawl_args(wiki, tmp_path)) == 2
    assert "--restart" in capsys.readouterr().err
    assert rare_char_fetch.main(crawl_args(wiki, tmp_path, "--restart")) == 0


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [None, "", "{not json", '{"entries": []}', '{"entries": [{"keyword": "x"}]}', "unreadable"])
def test_bad_keywords_file(tmp_path, capsys, content):
    path = tmp_path / "keywords.json"
    if content == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads every file")
        path.write_text('{"entries": [{"keyword": "x", "domain": "d"}]}')
        path.chmod(0)
    elif content is not None:
        path.write_text(content)
    args = ["--source", "wiki-api", "--api-url", "http://127.0.0.1:9/api.php", "--keywords", str(path),
            "--out", str(tmp_path / "corpus.jsonl"), "--no-progress-bar"]
    assert rare_char_fetch.main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "keywords.json" in err and "Traceback" not in err
    assert not (tmp_path / "corpus.jsonl").exists() and not (tmp_path / "corpus.jsonl.partial").exists()


GOOD_PAGE = ("<page><title>甲</title><ns>0</ns><id>1</id><revision><id>1</id>"
             "<text>这是第一个条目的正文内容。这里还有第二句话呢。</text></revision></page>")


@pytest.mark.parametrize("kind", ["not_xml", "truncated", "truncated_bz2", "missing"])
def test_bad_dump(tmp_path, capsys, kind):
    dump = tmp_path / ("dump.xml.bz2" if kind == "truncated_bz2" else "dump.xml")
    whole = f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/">{GOOD_PAGE * 50}</mediawiki>'.encode()
    if kind == "not_xml":
        dump.write_text("this is not a dump\n")
    elif kind == "truncated":
        dump.write_bytes(whole[: len(whole) * 2 // 3])
    elif kind == "truncated_bz2":
        packed = bz2.compress(whole)
        dump.write_bytes(packed[: len(packed) // 2])
    out = tmp_path / "corpus.jsonl"
    assert rare_char_fetch.main(["--source", "wiki-dump", str(dump), "--out", str(out), "--workers", "1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(dump) in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.glob(".corpus.jsonl*")) == []


# -- the dump source on good input -------------------------------------------------------------
WIKITEXT = """{{Infobox 药材|名称=黄芪}}'''黄芪'''（学名：''Astragalus''）是-{zh-hans:豆科;zh-hant:荳科}-的一种植物。<ref>某书，第3页。</ref>它的根可以入药。
== 历史 ==
{| class="wikitable"
| 表格里的内容不是正文 || 第二格
|}
[[File:X.jpg|thumb|图片的说明文字不是正文。]]
据[[本草纲目|《本草纲目》]]记载，黃芪具有補氣的功效。<!-- 注释 -->__TOC__
[[Category:中藥]] [[en:Astragalus]]"""


def test_wikitext_to_plain_keeps_only_prose():
    from bertstudy.corpus.sources.wiki_dump import wikitext_to_plain

    plain, categories = wikitext_to_plain(WIKITEXT)
    lines = [line for line in plain.split("\n") if line.strip()]
    assert lines == ["黄芪（学名：Astragalus）是豆科的一种植物。它的根可以入药。", "据《本草纲目》记载，黃芪具有補氣的功效。"]
    assert categories == ["中藥"]


@pytest.mark.parametrize("markup, shown", [
    ("甲-{zh-hans:计算机;zh-hant:電腦}-乙", "甲计算机乙"),
    ("甲-{zh-tw:台灣;zh-cn:台湾}-乙", "甲台湾乙"),  # zh-cn is preferred wherever it stands
    ("甲-{zh-hant:電腦}-乙", "甲電腦乙"),  # no simplified variant: the one given (OpenCC converts it later)
    ("甲-{H|zh-hans:计算机;zh-hant:電腦}-乙", "甲乙"),  # a hidden rule shows nothing
    ("甲-{R|原样}-乙", "甲原样乙"),
    ("甲-{不转换}-乙", "甲不转换乙"),
])
def test_language_conversion_markup(markup, shown):
    from bertstudy.corpus.sources.wiki_dump import resolve_conversions

    assert resolve_conversions(markup) == shown


def _dump_xml(pages: int) -> str:
    def page(pageid, title, text, ns=0, redirect=""):
        return (f"<page><title>{title}</title><ns>{ns}</ns><id>{pageid}</id>{redirect}<revision><id>{pageid}</id>"
                f"<text xml:space=\"preserve\">{text}</text></revision></page>")
    from xml.sax.saxutils import escape

    body = [page(n, f"条目{n}", escape(WIKITEXT.replace("它的根", f"它的第{n}条根"))) for n in range(1, pages + 1)]
    body.append(page(pages + 1, "黄耆", "#REDIRECT [[条目1]]", redirect='<redirect title="条目1" />'))
    body[1:1] = [page(pages + 2, "讨论", "讨论页上的这句话不属于语料。", ns=1)]
    return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><siteinfo><sitename>W</sitename>'
            "<base>http://127.0.0.1/index.php/首页</base></siteinfo>" + "".join(body) + "</mediawiki>")


def test_dump_articles_only_same_corpus_for_any_worker_count(tmp_path):
    (tmp_path / "dump.xml.bz2").write_bytes(bz2.compress(_dump_xml(150).encode("utf-8")))
    write_keywords(tmp_path)
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"corpus{workers}.jsonl"
        assert rare_char_fetch.main(["--source", "wiki-dump", str(tmp_path / "dump.xml.bz2"), "--out", str(out),
                                     "--keywords", str(tmp_path / "keywords.json"), "--workers", workers]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    docs = load_documents(tmp_path / "corpus1.jsonl")
    assert [d.id for d in docs] == [f"wiki-{n}" for n in range(1, 151)]  # no redirect, no talk page
    first = docs[0]
    assert first.source == "wiki-dump" and first.domain == "herb"  # [[Category:中藥]] -> the 中药 keyword
    assert first.url == "http://127.0.0.1/index.php/%E6%9D%A1%E7%9B%AE1"
    assert first.sentences == ["黄芪（学名：Astragalus）是豆科的一种植物。", "它的第1条根可以入药。", "据《本草纲目》记载，黄芪具有补气的功效。"]
    assert docs[1].sentences == ["它的第2条根可以入药。"]  # the repeated sentences are exact duplicates
