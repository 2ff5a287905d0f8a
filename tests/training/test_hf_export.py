"""The transformers export: transformers' BertForPreTraining loaded from our folder gives our
logits; BertTokenizer loaded from it tokenizes Chinese into our ids; load_exported round-trips;
fill_mask and fill_mask.py work and refuse bad input with a clear message."""

import json

import pytest
import torch

from bertstudy.base.errors import BadInputError, UsageError
from bertstudy.training.fill_mask import fill_mask, tokenize_chars
from bertstudy.training.hf_export import export_pretrained, load_exported
from bertstudy.model import BertConfig, BertForPretraining
import fill_mask as fill_mask_script

torch.set_num_threads(1)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("中国的首都是北京上海人民日报我们一个有在了不和这为大")


def tiny_vocab():
    return SPECIALS + CHARS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tiny_vocab()), hidden_size=32, num_layers=2, num_heads=4,
                        intermediate_size=64, max_position=24)
    model = BertForPretraining(config)
    with torch.no_grad():  # non-zero biases and LayerNorm params so the mapping of each is checked
        for name, param in model.named_parameters():
            if param.dim() == 1:
                param.add_(0.05 * torch.randn_like(param))
    model.eval()
    out_dir = tmp_path_factory.mktemp("exp") / "export_hf"
    export_pretrained(model, tiny_vocab(), out_dir)
    return model, out_dir


def padded_batch(vocab_size):
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(5, vocab_size, (2, 10), generator=gen)
    ids[:, 0] = 2
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[1, 7:] = 0
    return ids, types, mask


def test_export_folder_contents(exported):
    _, out_dir = exported
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"])
    config = json.loads((out_dir / "config.json").read_text())
    assert config["hidden_act"] == "gelu" and config["tie_word_embeddings"] is True
    assert config["num_hidden_layers"] == 2 and config["vocab_size"] == len(tiny_vocab())
    tok = json.loads((out_dir / "tokenizer_config.json").read_text())
    assert tok["do_lower_case"] is False and tok["tokenize_chinese_chars"] is True
    assert (out_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == tiny_vocab()
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow  # loads transformers' BERT
def test_transformers_logits_match_ours(exported):
    transformers = pytest.importorskip("transformers")
    model, out_dir = exported
    theirs = transformers.BertForPreTraining.from_pretrained(out_dir, attn_implementation="sdpa").eval()
    assert torch.equal(theirs.cls.predictions.decoder.weight, theirs.bert.embeddings.word_embeddings.weight)
    ids, types, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        our_mlm, our_nsp = model(ids, types, mask)
        out = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(our_mlm[real], out.prediction_logits[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(our_nsp, out.seq_relationship_logits, rtol=0, atol=1e-5)


def test_transformers_tokenizer_gives_our_ids(exported):
    transformers = pytest.importorskip("transformers")
    _, out_dir = exported
    tokenizer = transformers.BertTokenizer.from_pretrained(out_dir)
    text = "中国的首都是北京。我们在上海"
    index = {t: i for i, t in enumerate(tiny_vocab())}
    ours = [index["[CLS]"]] + tokenize_chars(text, index) + [index["[SEP]"]]
    assert tokenizer(text)["input_ids"] == ours
    assert tokenize_chars("北[MASK] 京", index) == [index["北"], index["[MASK]"], index["京"]]
    assert tokenize_chars("。", index) == [index["[UNK]"]]


def test_load_exported_round_trip(exported):
    model, out_dir = exported
    loaded, vocab = load_exported(out_dir)
    assert vocab == tiny_vocab() and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_fill_mask_top_k(exported):
    model, _ = exported
    rows = fill_mask(model, tiny_vocab(), "中国的首都是北[MASK]。[MASK]", top_k=4)
    assert len(rows) == 2
    for row in rows:
        assert len(row) == 4
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
        assert sum(probs) <= 1 + 1e-6
        assert all(token in tiny_vocab() for token, _ in row)
    assert len(fill_mask(model, tiny_vocab(), "[MASK]", top_k=1000)[0]) == len(tiny_vocab())
    with pytest.raises(UsageError, match="no \\[MASK\\]"):
        fill_mask(model, tiny_vocab(), "中国", top_k=3)
    with pytest.raises(UsageError, match="at most"):
        fill_mask(model, tiny_vocab(), "中" * 30 + "[MASK]")


def test_export_replaces_existing_folder_and_checks_vocab(exported, tmp_path):
    model, _ = exported
    target = tmp_path / "export_hf"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    export_pretrained(model, tiny_vocab(), target)
    assert not (target / "stale.txt").exists() and (target / "model.safetensors").is_file()
    with pytest.raises(UsageError, match="vocab_size"):
        export_pretrained(model, tiny_vocab()[:-1], tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_load_exported_refuses_broken_folders(exported, tmp_path):
    _, out_dir = exported
    with pytest.raises(BadInputError, match="no such export folder"):
        load_exported(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((out_dir / "config.json").read_text())
    with pytest.raises(BadInputError, match="missing model.safetensors, vocab.txt"):
        load_exported(broken)
    (broken / "vocab.txt").write_text("\n".join(tiny_vocab()[:-2]) + "\n")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BadInputError, match="vocab_size"):
        load_exported(broken)
    (broken / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    with pytest.raises(BadInputError, match="safetensors"):
        load_exported(broken)


def test_fill_mask_script(exported, tmp_path, capsys):
    _, out_dir = exported
    assert fill_mask_script.main(["--model-dir", str(out_dir), "中国的首都是北[MASK]。", "--top-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["masks"]) == 1 and len(result["masks"][0]) == 3
    assert fill_mask_script.main(["--model-dir", str(out_dir), "北[MASK]", "--top-k", "2"]) == 0
    assert capsys.readouterr().out.startswith("[MASK] 1: ")
    assert fill_mask_script.main(["--model-dir", str(tmp_path / "none"), "北[MASK]"]) == 3
    assert "no such export folder" in capsys.readouterr().err
    assert fill_mask_script.main(["--model-dir", str(out_dir), "北京"]) == 2
    assert "error: text has no [MASK]" in capsys.readouterr().err


def test_fill_mask_takes_the_model_dir_positionally_as_the_readme_shows(exported, capsys):
    _, out_dir = exported
    assert fill_mask_script.main([str(out_dir), "中国[MASK]民", "--top-k", "2", "--json"]) == 0
    positional = json.loads(capsys.readouterr().out)
    assert fill_mask_script.main(["--model-dir", str(out_dir), "中国[MASK]民", "--top-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == positional  # the two spellings are the same command
    for argv in (["中国[MASK]民"], ["--model-dir", str(out_dir), str(out_dir), "北[MASK]"]):
        with pytest.raises(SystemExit) as info:
            fill_mask_script.main(argv)
        assert info.value.code == 2
        assert "error:" in capsys.readouterr().err
    # MODEL_DIR TEXT TEXT is several sentences: one without [MASK] is named before any answer
    assert fill_mask_script.main([str(out_dir), "北[MASK]", "b"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == "error: text has no [MASK] to fill: 'b'"


def test_fill_mask_takes_several_sentences(exported, capsys):
    _, out_dir = exported
    texts = ["中国[MASK]民", "北京是中国的首[MASK]", "我们[MASK]上[MASK]"]
    assert fill_mask_script.main([str(out_dir), *texts, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == texts[0] and lines[1].startswith("[MASK] 1: ") and lines[2] == texts[1]
    assert len(lines) == 7 and lines[4] == texts[2] and lines[5].startswith("[MASK] 1: ")
    assert lines[6].startswith("[MASK] 2: ")
    assert len(lines[1].split("  ")) == 3  # three candidates
    assert fill_mask_script.main(["--model-dir", str(out_dir), *texts, "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == texts and [len(row["masks"]) for row in rows] == [1, 1, 2]
    assert fill_mask_script.main([str(out_dir), texts[0], "--top-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows[0]  # one sentence: one object, as before


def test_a_pre_ln_model_is_not_exported_and_says_why(tmp_path):
    config = BertConfig(vocab_size=len(tiny_vocab()), hidden_size=32, num_layers=2, num_heads=4,
                        intermediate_size=64, max_position=24, pre_ln=True)
    with pytest.raises(UsageError, match="post-LN only") as info:
        export_pretrained(BertForPretraining(config), tiny_vocab(), tmp_path / "export_hf")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "export_hf").exists() and not list(tmp_path.iterdir())  # nothing staged
