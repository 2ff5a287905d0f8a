"""Unit tests of the shared cleaning steps (pure functions and the counters)."""

from bertstudy.corpus.text_clean import (
    CleanConfig,
    CleaningStats,
    SentenceCleaner,
    SentenceDeduplicator,
    finish_document,
    has_cjk,
    normalize_width,
    split_sentences,
)


def test_nfkc_folds_fullwidth_digits_and_letters_but_keeps_chinese_punctuation():
    assert normalize_width("１９９８年ＡＢＣ，你好！（注）……") == "1998年ABC，你好！（注）……"


def test_split_keeps_closing_quotes_and_brackets_with_their_sentence():
    text = "他说：“今天下雨了。”我们回家吧！真的吗？（是的。）好……走吧；最后一句"
    assert split_sentences(text) == ["他说：“今天下雨了。”", "我们回家吧！", "真的吗？", "（是的。）", "好……", "走吧；", "最后一句"]


def test_split_treats_a_run_of_end_marks_as_one_end_and_collapses_spaces():
    assert split_sentences("太好了！！！  真的  好？！下一句。") == ["太好了！！！", "真的 好？！", "下一句。"]


def test_has_cjk():
    assert has_cjk("abc汉") and has_cjk("𠀀") and not has_cjk("abc 123。")


def test_cleaner_counts_each_filter_and_converts_traditional():
    cleaner = SentenceCleaner(CleanConfig(min_len=5, max_len=20))
    stats = CleaningStats()
    text = "短句。這是一個繁體中文的句子。" + "长" * 30 + "。" + "abcdefghij.\n== 历史 ==\n简体中文的句子很好。"
    kept = cleaner.clean([text], stats)
    assert kept == ["这是一个繁体中文的句子。", "简体中文的句子很好。"]
    assert (stats.sentences_split, stats.too_short, stats.too_long, stats.no_cjk) == (5, 1, 1, 1)
    assert stats.traditional_changed == 1


def test_keep_traditional_option_skips_opencc():
    cleaner = SentenceCleaner(CleanConfig(min_len=1, to_simplified=False))
    assert cleaner.clean(["這是繁體。"], CleaningStats()) == ["這是繁體。"]


def test_dedup_is_corpus_wide_and_empty_documents_are_counted():
    dedup = SentenceDeduplicator()
    stats = CleaningStats()
    assert finish_document(["甲乙丙丁。", "戊己庚辛。"], dedup, stats) == ["甲乙丙丁。", "戊己庚辛。"]
    assert finish_document(["甲乙丙丁。"], dedup, stats) == []
    dedup.remember(["子丑寅卯。"])
    assert finish_document(["子丑寅卯。", "新的句子。"], dedup, stats) == ["新的句子。"]
    assert (stats.documents_in, stats.documents_kept, stats.documents_empty, stats.duplicates) == (3, 2, 1, 2)
    assert stats.sentences_kept == 3 and stats.chars_kept == 15


def test_stats_add_and_round_trip():
    a = CleaningStats(too_short=2, duplicates=1)
    a.add(CleaningStats(too_short=3, sentences_kept=4))
    assert CleaningStats.from_dict(a.to_dict()) == a and a.too_short == 5
    assert any("5 too short" in line for line in a.summary_lines())
