"""Character vocabulary: BERT layout, deterministic order, round trip, hash, refusal of bad files."""

from __future__ import annotations

import pytest

from bertstudy.base.errors import BadInputError
from bertstudy.pretraining.vocab import (MASK_ID, NUM_SPECIAL, SPECIAL_TOKENS, UNK_ID, Vocab, build_vocab, load_vocab, save_vocab,
                             vocab_hash)


def test_specials_first_then_by_frequency_ties_by_code_point():
    vocab = build_vocab(["乙乙甲丙", "丙 丁乙"])
    assert vocab.tokens[:NUM_SPECIAL] == list(SPECIAL_TOKENS)
    # 乙 x3, 丙 x2, then 甲 and 丁 once each, tie broken by code point (丁 U+4E01 < 甲 U+7532); no space
    assert vocab.tokens[NUM_SPECIAL:] == ["乙", "丙", "丁", "甲"]
    assert vocab.index["[MASK]"] == MASK_ID == 4


def test_min_freq_drops_rare_characters_and_encode_maps_them_to_unk():
    vocab = build_vocab(["甲甲乙"], min_freq=2)
    assert vocab.tokens[NUM_SPECIAL:] == ["甲"]
    assert vocab.encode("甲乙") == [NUM_SPECIAL, UNK_ID]
    assert vocab.decode(vocab.encode("甲")) == "甲"


def test_same_corpus_same_vocab_and_hash():
    a, b = build_vocab(["天地玄黄宇宙洪荒"] * 2), build_vocab(["天地玄黄宇宙洪荒", "天地玄黄宇宙洪荒"])
    assert a.tokens == b.tokens and a.hash == b.hash
    assert build_vocab(["天地"]).hash != a.hash


def test_save_load_round_trip_and_hash_of_file_text(tmp_path):
    vocab = build_vocab(["春眠不觉晓处处闻啼鸟"])
    path = tmp_path / "vocab.txt"
    digest = save_vocab(vocab, path)
    text = path.read_text(encoding="utf-8")
    assert digest == vocab_hash(text) == vocab.hash
    assert text.splitlines()[:5] == list(SPECIAL_TOKENS)
    assert load_vocab(path).tokens == vocab.tokens


def test_transformers_tokenizer_reads_the_file(tmp_path):
    from transformers import BertTokenizer

    vocab = build_vocab(["春眠不觉晓"])
    save_vocab(vocab, tmp_path / "vocab.txt")
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    assert tokenizer.convert_tokens_to_ids(list("春眠")) == vocab.encode("春眠")
    assert tokenizer.mask_token_id == MASK_ID


def test_bad_vocab_files_are_refused_with_file_and_line(tmp_path):
    wrong_start = tmp_path / "a.txt"
    wrong_start.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\n甲\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="a.txt:1"):
        load_vocab(wrong_start)
    repeated = tmp_path / "b.txt"
    repeated.write_text("\n".join(SPECIAL_TOKENS) + "\n甲\n乙\n甲\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="b.txt:8"):
        load_vocab(repeated)
    with pytest.raises(BadInputError, match="no such file"):
        load_vocab(tmp_path / "missing.txt")
    with pytest.raises(ValueError):
        Vocab(["甲"])
