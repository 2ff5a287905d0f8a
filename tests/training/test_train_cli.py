"""train_large_100k.py end to end on a tiny corpus (main([...]) in-process), and its CLI validation."""

from __future__ import annotations

import json

import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import iter_jsonl, read_json
from bertstudy.training.checkpoint import list_checkpoints, load_final_model
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE
from bertstudy.pretraining.vocab import SPECIAL_TOKENS, load_vocab
from tests.train_helpers import tiny_args, write_tiny_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    _, _, out, code = tiny_run("cli")
    return code, out


def test_run_writes_every_output(finished_run):
    code, out = finished_run
    assert code == EXIT_OK
    vocab = load_vocab(out / "vocab.txt")
    assert tuple(vocab.tokens[:5]) == SPECIAL_TOKENS and len(vocab) > 50
    history = read_json(out / "training_history_100k.json")
    assert history["steps"] == [2, 4, 6]
    assert history["eval_steps"] == [0, 3, 6]
    for key in ("mlm_acc", "nsp_acc", "loss", "lr", "mlm_loss", "nsp_loss", "tokens_per_s", "elapsed_s"):
        assert len(history[key]) == 3, key
    assert all(0.0 <= a <= 1.0 for a in history["mlm_acc"] + history["nsp_acc"] + history["eval_mlm_acc"])
    meta = history["meta"]
    assert meta["format"] == "chinese-bert-correlation/history-v1"
    assert meta["total_steps"] == 6 and meta["vocab_hash"] == vocab.hash and meta["finished_at"] is not None
    assert meta["vocab_size"] == len(vocab) and meta["parameters"] > 0
    records = [obj for _, obj in iter_jsonl(out / "training_log_100k.jsonl")]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end" and records[-1]["status"] == "done"
    # the machine a run's rounding depends on, in the meta and in each start record
    assert set(meta["machine"]) == {"cpu", "cpu_capability", "threads"} and meta["machine"]["threads"] >= 1
    assert meta["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert records[0]["machine"] == meta["machine"]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in records if r["kind"] == "checkpoint"] == [3, 6]
    assert [s for s, _ in list_checkpoints(out / "checkpoints_100k")] == [3, 6]
    resolved = read_json(out / "resolved_config.json")
    assert resolved["hidden_size"] == 32 and resolved["steps"] == 6 and resolved["preset"] == "quick_plateau"
    final = load_final_model(out / "stage4_large_100k_final.pth")
    assert final["vocab_hash"] == vocab.hash and final["step"] == 6


def test_export_loads_in_transformers(finished_run):
    from transformers import BertForPreTraining, BertTokenizer

    _, out = finished_run
    model = BertForPreTraining.from_pretrained(out / "export_hf")
    tokenizer = BertTokenizer.from_pretrained(out / "export_hf")
    encoded = tokenizer("的一是", return_tensors="pt")
    assert encoded["input_ids"][0, 0].item() == 2  # [CLS]
    with torch.no_grad():
        logits = model(**encoded).prediction_logits
    assert logits.shape[-1] == len(load_vocab(out / "vocab.txt"))


@pytest.mark.parametrize("flag, value", [
    ("--steps", "0"), ("--steps", "-5"), ("--batch-size", "0"), ("--grad-accum", "0"),
    ("--mask-rate", "0"), ("--mask-rate", "1"), ("--mask-rate", "1.5"), ("--heldout-fraction", "0"),
    ("--heldout-fraction", "1"), ("--lr", "0"), ("--lr", "nan"), ("--log-interval", "0"), ("--hidden-size", "x"),
])
def test_out_of_range_values_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_large_100k.main([flag, value])
    assert exit_info.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err and "Traceback" not in err


def test_cross_field_check_exits_2(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path)
    code = train_large_100k.main(tiny_args(corpus, tmp_path / "o", tmp_path / "c", hidden_size=30, num_heads=4))
    assert code == EXIT_USAGE
    assert "not a multiple" in capsys.readouterr().err


def test_missing_corpus_is_one_line_exit_3(tmp_path, capsys):
    code = train_large_100k.main(tiny_args(tmp_path / "nope.jsonl", tmp_path / "o", tmp_path / "c"))
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope.jsonl" in err and len(err.splitlines()) == 1


def test_help_lists_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_large_100k.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes:" in text and "--preset" in text and "--hidden-size" in text
    assert "130" in text


def test_unknown_preset_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        train_large_100k.main(["--preset", "huge"])
    assert exit_info.value.code == EXIT_USAGE


@pytest.mark.parametrize("variant", ["wwm", "amp", "original_json"])
def test_variants_run_end_to_end(variant, tmp_path):
    """Whole-word masking (jieba), bf16 autocast on CPU (--amp), and the original study's JSON corpus."""
    corpus = write_tiny_corpus(tmp_path)
    overrides = {"steps": 4, "eval_interval": 2, "save_interval": 4}
    if variant == "original_json":
        sentences = [s for _, doc in iter_jsonl(corpus) for s in doc["sentences"]]
        corpus = tmp_path / "original.json"
        corpus.write_text(json.dumps({"sentences": sentences, "vocab": [], "metadata": {}}, ensure_ascii=False, indent=2),
                          encoding="utf-8")
    else:
        overrides[variant] = True
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", **overrides)) == EXIT_OK
    history = read_json(out / "training_history_100k.json")
    assert history["steps"] == [2, 4] and all(0 <= a <= 1 for a in history["eval_mlm_acc"])
    assert history["meta"]["config"][variant if variant != "original_json" else "corpus"] in (True, str(corpus))
    assert load_final_model(out / "stage4_large_100k_final.pth")["step"] == 4
