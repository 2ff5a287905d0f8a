"""verify_dataset.py and bertstudy/corpus/dataset_report.py: exact figures on small known corpora (both
formats), threshold checks and exit codes, the profiles, and command-line overrides."""

import json

import pytest

import verify_dataset
from bertstudy.corpus import dataset_report as dr
from bertstudy.base.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

# Four documents; sentence lengths in characters are written beside each sentence.
DOCS = [
    {"id": "a", "title": "甲", "source": "embedded:peoples_daily", "domain": "news", "url": None,
     "sentences": ["我们今天去北京。", "我们今天去北京。", "天气很好"]},  # 8, 8 (exact duplicate), 4
    {"id": "b", "title": "乙", "source": "embedded:reviews", "domain": "reviews", "url": None,
     "sentences": ["這個手機很好用ABC", "价格12元"]},  # 10 (這, 個, 機 are traditional; ABC latin), 5
    {"id": "c", "title": "丙", "source": "wiki-api", "domain": "science", "url": "https://zh.wikipedia.org/wiki/x",
     "sentences": ["物理学是研究物质运动最一般规律和物质基本结构的学科",  # 25
                   "物理学是研究物质运动最一般规律和物质基本结构的学问"]},  # 25, Jaccard of 3-shingles 22/24
    {"id": "d", "title": "丁", "source": "wiki-api", "domain": "science", "url": None,
     "sentences": ["化学是研究物质的组成结构性质以及变化规律的科学"]},  # 23
]
LENGTHS = [8, 8, 4, 10, 5, 25, 25, 23]


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def run(argv, capsys):
    code = verify_dataset.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "corpus.jsonl", DOCS)


def test_exact_figures_on_known_corpus(corpus):
    report = dr.build_report(corpus, dr.ReportConfig(hist_bin_width=10, hist_max=30))
    assert report["documents"] == 4
    assert report["sentences"] == 8
    assert report["characters"] == sum(LENGTHS)
    all_chars = set("".join(s for d in DOCS for s in d["sentences"]))
    assert report["vocab_size"] == len(all_chars)
    assert report["cjk_vocab_size"] == len(all_chars - set("ABC12。"))
    assert report["mean_sentence_len"] == pytest.approx(sum(LENGTHS) / 8)
    assert report["median_sentence_len"] == 9.0
    assert (report["min_sentence_len"], report["max_sentence_len"]) == (4, 25)
    assert report["length_histogram"] == [
        {"lo": 0, "hi": 10, "count": 4}, {"lo": 10, "hi": 20, "count": 1},
        {"lo": 20, "hi": 30, "count": 3}, {"lo": 30, "hi": None, "count": 0},
    ]
    assert report["duplicate_sentences"] == 1
    assert report["duplicate_rate"] == pytest.approx(1 / 8)
    # the two physics sentences share 22 of 24 distinct shingles (0.917 >= 0.8); nothing else is close
    assert report["near_duplicates"] == 1
    assert report["near_duplicate_rate"] == pytest.approx(1 / 7)
    assert report["char_classes"]["latin"] == 3 and report["char_classes"]["digit"] == 2
    assert report["char_classes"]["punctuation"] == 2
    assert report["non_cjk_share"] == pytest.approx(7 / sum(LENGTHS))
    residue = {e["char"]: e["simplified"] for e in report["traditional_top"]}
    assert residue == {"這": "这", "個": "个", "機": "机"}
    assert report["traditional_occurrences"] == 3
    assert report["by_domain"]["science"] == {"documents": 2, "sentences": 3}
    assert report["by_source"]["embedded:reviews"] == {"documents": 1, "sentences": 2}


def test_near_duplicate_threshold_is_respected():
    first = "物理学是研究物质运动最一般规律和物质基本结构的学科"
    second = "物理学是研究物质运动最一般规律和物质基本结构的学问"
    similarity = dr.jaccard(dr.char_shingles(first, 3), dr.char_shingles(second, 3))
    assert similarity == pytest.approx(22 / 24)
    assert dr.near_duplicate_stats([first, second], dr.ReportConfig(near_dup_threshold=0.8))["near_duplicates"] == 1
    assert dr.near_duplicate_stats([first, second], dr.ReportConfig(near_dup_threshold=0.95))["near_duplicates"] == 0


def test_near_duplicates_found_among_many_distinct_sentences():
    # 300 sentences that share no 3-shingle with each other, then 50 that each change the last two
    # characters of one of them (26 of 30 distinct shingles shared: Jaccard 0.867 >= 0.8)
    unrelated = ["".join(chr(0x4E00 + (i * 37 + j * 11) % 5000) for j in range(30)) for i in range(300)]
    variants = [s[:-2] + "款项" for s in unrelated[:50]]
    assert dr.near_duplicate_stats(unrelated, dr.ReportConfig())["near_duplicates"] == 0
    stats = dr.near_duplicate_stats(unrelated + variants, dr.ReportConfig())
    assert stats["near_duplicates"] == 50
    assert stats["near_duplicate_rate"] == pytest.approx(50 / 350)
    assert stats["near_duplicate_examples"][0] == [unrelated[0], variants[0]]


def test_short_sentences_are_their_own_shingle():
    assert dr.char_shingles("好", 3) == {"好"}
    assert dr.char_shingles("很好", 3) == {"很好"}
    assert dr.char_shingles("天气好", 3) == {"天气好"}
    assert dr.char_shingles("天气很好", 3) == {"天气很", "气很好"}


def test_histogram_overflow_bin():
    bins = dr.length_histogram([0, 9, 10, 199, 200, 5000], 10, 200)
    assert bins[0] == {"lo": 0, "hi": 10, "count": 2}
    assert bins[1]["count"] == 1 and bins[19] == {"lo": 190, "hi": 200, "count": 1}
    assert bins[-1] == {"lo": 200, "hi": None, "count": 2}
    assert sum(b["count"] for b in bins) == 6


def test_original_study_format_gives_the_same_sentence_figures(tmp_path, corpus):
    sentences = [s for d in DOCS for s in d["sentences"]]
    original = tmp_path / "chinese_dataset_100k.json"
    # metadata claims figures that are not true: they must be ignored, not copied
    original.write_text(json.dumps({"sentences": sentences, "vocab": ["x"], "metadata": {"total_sentences": 100000, "vocab_size": 20000}},
                                   ensure_ascii=False, indent=2), encoding="utf-8")
    ours = dr.build_report(corpus)
    theirs = dr.build_report(original)
    for key in ("sentences", "characters", "vocab_size", "mean_sentence_len", "duplicate_rate", "near_duplicates", "traditional_share"):
        assert theirs[key] == ours[key], key
    assert theirs["sentences"] == 8 and theirs["vocab_size"] != 20000
    assert theirs["by_source"] == {"original-json": {"documents": 1, "sentences": 8}}


def test_default_profile_fails_small_corpus_with_exit_1_and_writes_report(corpus, tmp_path, capsys):
    report_path = tmp_path / "out" / "report.json"
    code, out, _ = run([corpus, "--report", report_path], capsys)
    assert code == EXIT_CHECK_FAILED
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["min_sentences"] == {"name": "min_sentences", "figure": "sentences", "value": 8, "op": ">=", "threshold": 100_000, "passed": False}
    assert by_name["max_dup_rate"]["op"] == "<" and by_name["max_dup_rate"]["passed"] is False  # 12.5% >= 5%
    assert set(by_name) == {"min_sentences", "min_vocab", "min_mean_len", "max_mean_len", "max_dup_rate"}
    assert "FAIL  min_sentences" in out and "some checks FAILED" in out


def test_cli_overrides_make_every_check_pass(corpus, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code, out, _ = run([corpus, "--report", report_path, "--min-sentences", 8, "--min-vocab", 10, "--min-mean-len", 10,
                        "--max-mean-len", 14, "--max-dup-rate", 0.2, "--max-near-dup-rate", 0.15,
                        "--max-non-cjk-share", 0.1, "--max-traditional-share", 0.05], capsys)
    assert code == EXIT_OK, out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is True and len(report["checks"]) == 8
    assert {c["name"]: c["threshold"] for c in report["checks"]}["max_near_dup_rate"] == 0.15
    assert "all checks passed" in out


def test_override_just_below_a_value_fails_that_check_only(corpus, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    args = [corpus, "--report", report_path, "--min-sentences", 8, "--min-vocab", 10, "--min-mean-len", 10, "--max-dup-rate", 0.2]
    assert run(args, capsys)[0] == EXIT_OK
    code, _, _ = run(args + ["--max-traditional-share", 0.01], capsys)  # residue is 3/108
    assert code == EXIT_CHECK_FAILED
    failed = [c["name"] for c in json.loads(report_path.read_text())["checks"] if not c["passed"]]
    assert failed == ["max_traditional_share"]


def test_out_of_range_override_is_a_usage_error(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        verify_dataset.main([str(corpus), "--report", str(tmp_path / "r.json"), "--max-dup-rate", "1.5"])
    assert exc.value.code == 2
    assert not (tmp_path / "r.json").exists()


def test_profiles_are_data_and_embedded_is_looser_on_size():
    assert set(dr.PROFILES) >= {"original", "embedded"}
    original, embedded = dr.PROFILES["original"], dr.PROFILES["embedded"]
    assert (original.min_sentences, original.min_vocab, original.min_mean_len, original.max_mean_len, original.max_dup_rate) == (100_000, 10_000, 30.0, 100.0, 0.05)
    assert embedded.min_vocab < original.min_vocab and embedded.min_mean_len < original.min_mean_len
    assert dr.thresholds_for("embedded", min_vocab=7).min_vocab == 7
    assert dr.thresholds_for("embedded", min_vocab=None).min_vocab == embedded.min_vocab
    with pytest.raises(UsageError):
        dr.thresholds_for("nonesuch")


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_embedded_profile_passes_what_the_original_rejects(tmp_path, capsys):
    # The embedded corpus's shape: ~5K-character vocabulary, short sentences, no duplicates, simplified
    # only. Sentence count is overridden so the test stays small; every other threshold is the profile's.
    import random

    import opencc

    to_simplified = opencc.OpenCC("t2s")
    chars = [c for c in map(chr, range(0x4E00, 0x4E00 + 7000)) if to_simplified.convert(c) == c][:5000]
    rng = random.Random(0)
    docs = [{"id": str(d), "source": "embedded:peoples_daily", "domain": "news",
             "sentences": ["".join(rng.choices(chars, k=rng.randint(12, 31))) + "。" for _ in range(100)]} for d in range(30)]
    corpus = write_jsonl(tmp_path / "embedded.jsonl", docs)
    report_path = tmp_path / "report.json"
    code, out, _ = run([corpus, "--report", report_path, "--profile", "embedded", "--min-sentences", 3000, "--quiet"], capsys)
    report = json.loads(report_path.read_text())
    assert code == EXIT_OK, [c for c in report["checks"] if not c["passed"]]
    assert report["profile"] == "embedded" and len(report["checks"]) == 8
    assert out.startswith("Result: all checks passed")
    code, _, _ = run([corpus, "--report", report_path, "--profile", "original", "--min-sentences", 3000], capsys)
    failed = {c["name"] for c in json.loads(report_path.read_text())["checks"] if not c["passed"]}
    assert code == EXIT_CHECK_FAILED and failed == {"min_vocab", "min_mean_len"}
    # With no --profile the profile follows the documents' recorded source: all embedded, so 'embedded'
    # (the default collect then the default verify pass together).
    code, out, _ = run([corpus, "--report", report_path, "--min-sentences", 3000], capsys)
    report = json.loads(report_path.read_text())
    assert code == EXIT_OK and report["profile"] == "embedded"
    assert report["profile_choice"].startswith("auto: every document's source is embedded:")
    assert "Checks (profile embedded; auto: every document" in out
    # One document of another source: the original study's profile, and the report says why.
    docs.append({"id": "w", "source": "wiki-api", "domain": "x", "sentences": ["维基百科的一个句子在这里。"]})
    mixed = write_jsonl(tmp_path / "mixed.jsonl", docs)
    run([mixed, "--report", report_path, "--min-sentences", 3000], capsys)
    report = json.loads(report_path.read_text())
    assert report["profile"] == "original" and "wiki-api" in report["profile_choice"]


def test_help_shows_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        verify_dataset.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--profile embedded" in out and "exit codes:" in out
    assert "--require-r" not in out  # that option is analyze_100k.py's; verify's code 1 is a threshold


@pytest.mark.parametrize("report", ["README.md/x.json", "folder"])
def test_bad_report_path_is_refused_before_the_work(corpus, tmp_path, capsys, report):
    (tmp_path / "README.md").write_text("keep")
    (tmp_path / "folder").mkdir()
    code, out, err = run([corpus, "--report", tmp_path / report], capsys)
    assert code == 2 and out == "" and err.startswith("error: --report ")
    assert len(err.strip().splitlines()) == 1 and (tmp_path / "README.md").read_text() == "keep"
