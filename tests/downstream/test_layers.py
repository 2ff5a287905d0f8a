"""Probes on every layer. The extraction is the model's own hidden states (by hand, block
by block, and transformers' hidden_states); a probe on layer L scores what the last-layer probe scores on
the model cut after L blocks; a toy pass writes `layers`, `best_layer` and the per-item lists, the paired
tests between adjacent checkpoints read them, and a probe file from before the per-layer pass is refused."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch

from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import UsageError
from bertstudy.downstream import downstream_pass, probe
from bertstudy.downstream.mlm_vs_score import downstream_correlations, format_downstream
from bertstudy.downstream.ner import probe_ner
from bertstudy.downstream.downstream_pass import PassSettings, prepare_tasks, read_run, run_pass
from bertstudy.model import BertConfig, BertForPretraining, additive_mask

torch.set_num_threads(1)
SIZES = dict(cws_train=40, sentiment_train=60)


def toy_model(num_layers: int = 3) -> BertForPretraining:
    torch.manual_seed(0)
    model = BertForPretraining(BertConfig(vocab_size=40, hidden_size=32, num_layers=num_layers, num_heads=2,
                                          intermediate_size=64, max_position=24))
    with torch.no_grad():  # non-zero biases and LayerNorm parameters, so each one's use is checked
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def padded_batch():
    ids = torch.randint(5, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[1, 8:], mask[2, 5:] = 0, 0
    return ids.masked_fill(mask == 0, 0), torch.zeros_like(ids), mask


@torch.inference_mode()
def test_every_layer_equals_the_blocks_run_by_hand():
    model = toy_model()
    ids, types, mask = padded_batch()
    states = model.encode(ids, types, mask, all_layers=True)
    assert len(states) == model.config.num_layers + 1
    hidden = model.embeddings(ids, types)
    key_mask = additive_mask(mask.bool()[:, None, None, :], hidden.dtype)
    assert torch.equal(states[0], hidden)  # layer 0: the embedding output, no context
    for depth, block in enumerate(model.layers, start=1):
        hidden = block(hidden, key_mask)
        assert torch.equal(states[depth], hidden), depth
    assert torch.equal(states[-1], model.encode(ids, types, mask))  # the default is untouched
    packed = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0]] * 3)  # packed rows take the same path
    by_instance = model.encode(ids, types, None, instance_ids=packed, all_layers=True)
    assert torch.equal(by_instance[-1], model.encode(ids, types, None, instance_ids=packed))


@pytest.mark.slow  # loads transformers' BERT
@torch.inference_mode()
def test_every_layer_equals_transformers_hidden_states(tmp_path):
    transformers = pytest.importorskip("transformers")
    from bertstudy.training.hf_export import export_pretrained

    model = toy_model()
    export_pretrained(model, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4e00 + i) for i in range(35)],
                      tmp_path / "hf")
    theirs = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", attn_implementation="sdpa").eval()
    ids, types, mask = padded_batch()
    ours = model.encode(ids, types, mask, all_layers=True)
    hidden_states = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(hidden_states) == len(ours)
    real = mask.bool()
    for layer, (a, b) in enumerate(zip(ours, hidden_states)):
        torch.testing.assert_close(a[real], b[real], rtol=0, atol=1e-5, msg=f"layer {layer}")


def test_per_sequence_features_of_every_layer_match_one_sequence_at_a_time():
    model = toy_model()
    sequences = [[7, 8, 9], [10], [11, 12, 13, 14, 15, 16], [17, 18]]
    flat = probe.encode_layers(model, sequences, batch_size=3)  # two batches, padded to different lengths
    means = probe.mean_layers(model, sequences, batch_size=3)
    assert flat.shape == (4, 12, 32) and means.shape == (4, 4, 32)
    at = 0
    for i, seq in enumerate(sequences):
        ids = torch.tensor([[2, *seq, 3]])
        with torch.inference_mode():
            alone = model.encode(ids, torch.zeros_like(ids), None, all_layers=True)
        for layer, state in enumerate(alone):
            torch.testing.assert_close(flat[layer, at:at + len(seq)], state[0, 1:-1], rtol=0, atol=1e-5)
            torch.testing.assert_close(means[layer, i], state[0, 1:-1].mean(0), rtol=0, atol=1e-5)
        at += len(seq)
    last = probe.encode(model, sequences, batch_size=3)  # the last-layer path the finetune scorers keep
    assert all(torch.equal(a, b) for a, b in zip(last, flat[-1].split([len(s) for s in sequences])))


def test_by_layer_keeps_the_last_as_the_score_and_prefers_the_deeper_on_a_tie():
    results = [{"score": 0.7, "correct": 7, "item_correct": [1] * 7 + [0] * 3},
               {"score": 0.6, "correct": 6, "item_correct": [1] * 6 + [0] * 4},
               {"score": 0.7, "correct": 7, "item_correct": [0] * 3 + [1] * 7},
               {"score": 0.5, "correct": 5, "item_correct": [1] * 5 + [0] * 5}]
    point = probe.by_layer(results, "item_correct")
    assert point["score"] == 0.5 and point["item_correct"] == results[-1]["item_correct"]
    assert point["layers"] == [{"layer": i, "score": r["score"], "correct": r["correct"]} for i, r in enumerate(results)]
    assert point["best_layer"] == {"layer": 2, "score": 0.7, "item_correct": results[2]["item_correct"]}
    tied_with_last = probe.by_layer(results[:3], "item_correct")  # layer 2 is also the last: no second list
    assert tied_with_last["best_layer"] == {"layer": 2, "score": 0.7}


# ------------------------------------------------------------------ a toy pass
@pytest.fixture(scope="module")
def toy_run(downstream_run):
    root, task_data, _, run = downstream_run  # 2 encoder layers of 32; milestones 0, 1, 2, 5, 6
    return root, task_data, run


def milestones(run, *steps):
    return [str(run / "checkpoints_100k" / f"milestone_{s:06d}.pth") for s in steps]


@pytest.fixture(scope="module")
def toy_pass(toy_run):
    root, task_data, run = toy_run
    settings = PassSettings(task_data=str(task_data), **SIZES)
    doc, out, scored = run_pass(run, settings, milestones(run, 0, 2, 6), root / "ds.json", progress=False)
    assert scored == 3
    return doc, out, settings


@pytest.mark.slow  # trains a tiny run and probes it
def test_a_pass_writes_every_layer_and_the_per_item_lists(toy_pass):
    doc, out, _ = toy_pass
    assert read_json(out)["tasks"] == doc["tasks"]
    assert doc["meta"]["settings"]["layers"] == downstream_pass.PROBE_LAYERS and doc["meta"]["layers"] == downstream_pass.PROBE_LAYERS
    cws, sentiment = doc["tasks"]["cws"], doc["tasks"]["sentiment"]
    for task, items in ((cws, "sentence_counts"), (sentiment, "item_correct")):
        for point in task["points"]:
            assert [entry["layer"] for entry in point["layers"]] == [0, 1, 2]  # embedding output + 2 layers
            assert point["layers"][-1]["score"] == point["score"]  # score stays the last layer's
            best = max(point["layers"], key=lambda e: (e["score"], e["layer"]))
            assert point["best_layer"]["layer"] == best["layer"] and point["best_layer"]["score"] == best["score"]
            assert (items in point["best_layer"]) == (best["layer"] != 2)
            assert len(point[items]) == task["sizes"]["test"]
    for point in sentiment["points"]:
        assert set(point["item_correct"]) <= {0, 1} and sum(point["item_correct"]) == point["correct"]
    for point in cws["points"]:
        right, predicted, gold = (sum(row[k] for row in point["sentence_counts"]) for k in range(3))
        assert gold == point["gold_words"]
        assert right / predicted == pytest.approx(point["precision"]) and right / gold == pytest.approx(point["recall"])
    text = out.read_text(encoding="utf-8")  # the per-item lists take one line each, not a line per number
    assert '"item_correct": [1, ' in text or '"item_correct": [0, ' in text
    assert not re.search(r"^\s*(\d+|\[\d+, \d+, \d+\]),?$", text, re.MULTILINE)


@pytest.mark.slow  # trains a tiny run and probes it
def test_every_layers_probe_fits_on_the_models_device(toy_run, toy_pass, monkeypatch):
    """The fits go where the model is (a GPU pass fits on the GPU), one per layer and task, and the probe
    comes back on the CPU; the controls, which have no model, fit where their features are."""
    from bertstudy.downstream import ner

    root, task_data, run = toy_run
    _, _, settings = toy_pass
    history, vocab = read_run(run)
    tasks = prepare_tasks(run, history, settings)
    model = probe.load_model(milestones(run, 6)[0], vocab).model
    devices, fit = [], probe.fit_linear_probe

    def recording(*args, **kwargs):
        devices.append(kwargs.get("device"))
        return fit(*args, **kwargs)

    monkeypatch.setattr(probe, "fit_linear_probe", recording)
    monkeypatch.setattr(ner, "fit_linear_probe", recording)
    width = model.config.max_position - 2
    probe.probe_segmentation(model, tasks.cws.train, tasks.cws.test, vocab, width, all_layers=True)
    probe.probe_sentiment(model, tasks.sentiment.train, tasks.sentiment.test, vocab, width, all_layers=True)
    probe_ner(model, tasks.ner.train, tasks.ner.test, vocab, width, all_layers=True)
    assert devices == [torch.device("cpu")] * (3 * (model.config.num_layers + 1))
    fitted = fit(torch.randn(20, 4), torch.arange(20) % 2, 2, device="cpu")
    assert all(part.device.type == "cpu" for part in (fitted.mean, fitted.std, fitted.weight, fitted.bias))


@pytest.mark.slow  # trains a tiny run and probes it
def test_a_layer_scores_what_the_model_cut_after_it_scores(toy_run, toy_pass):
    """The probe on layer L equals the last-layer probe of the same model with only its first L blocks."""
    root, task_data, run = toy_run
    doc, _, settings = toy_pass
    history, vocab = read_run(run)
    tasks = prepare_tasks(run, history, settings)
    model = probe.load_model(milestones(run, 6)[0], vocab).model
    points = {name: doc["tasks"][name]["points"][-1] for name in ("cws", "sentiment", "ner")}
    width = model.config.max_position - 2
    for depth in (0, 1):
        cut = copy.deepcopy(model)
        cut.layers = cut.layers[:depth]
        seg = probe.probe_segmentation(cut, tasks.cws.train, tasks.cws.test, vocab, width)
        sent = probe.probe_sentiment(cut, tasks.sentiment.train, tasks.sentiment.test, vocab, width)
        assert seg["score"] == points["cws"]["layers"][depth]["score"]
        assert sent["score"] == points["sentiment"]["layers"][depth]["score"]
        # the pass encodes segmentation's sentences once for both token tasks; NER alone encodes its own
        ner = probe_ner(cut, tasks.ner.train, tasks.ner.test, vocab, width)
        assert ner["score"] == points["ner"]["layers"][depth]["score"]


@pytest.mark.slow  # trains a tiny run and probes it
def test_the_analysis_tests_adjacent_checkpoints(toy_pass):
    doc, _, _ = toy_pass
    result = downstream_correlations(doc)
    for name, test in (("cws", "paired_bootstrap_f1"), ("sentiment", "mcnemar")):
        adjacent = result["tasks"][name]["honest"]["adjacent"]
        assert adjacent["tested"] == 2 and adjacent["skipped"] == 0
        assert [(p["step_a"], p["step_b"], p["test"]) for p in adjacent["pairs"]] == [(0, 2, test), (2, 6, test)]
    assert "adjacent checkpoints (mcnemar, last layer)" in format_downstream(result)
    older = json.loads(json.dumps(doc))  # a file from before the per-item lists: skipped, not an error
    for task in older["tasks"].values():
        for point in task["points"]:
            point.pop("item_correct", None), point.pop("sentence_counts", None)
    adjacent = downstream_correlations(older)["tasks"]["sentiment"]["honest"]["adjacent"]
    assert adjacent["tested"] == 0 and adjacent["skipped"] == 2
    assert "no paired tests" in format_downstream(downstream_correlations(older))


@pytest.mark.slow  # trains a tiny run and probes it
def test_a_probe_file_from_before_the_per_layer_pass_is_refused(toy_run, toy_pass, tmp_path):
    root, task_data, run = toy_run
    doc, out, settings = toy_pass
    older = json.loads(out.read_text(encoding="utf-8"))
    del older["meta"]["settings"]["layers"]
    old_file = tmp_path / "old.json"
    old_file.write_text(json.dumps(older), encoding="utf-8")
    with pytest.raises(UsageError, match="made before the probes on every layer") as refused:
        run_pass(run, settings, milestones(run, 1), old_file, progress=False)
    assert "\n" not in str(refused.value) and "--overwrite" in str(refused.value)
    assert json.loads(old_file.read_text(encoding="utf-8")) == older  # kept as it was


def test_document_text_is_json_with_number_lists_on_one_line():
    # a list's dict of plain values (a `layers` entry) on one line too; a dict's dict as json.dumps writes it
    doc = {"a": [{"b": [1, 0, 1], "c": [[1, 2, 3], [0, 1, 1]], "d": []}], "e": {}, "f": "x", "g": [{"h": 1}, 2]}
    assert downstream_pass.document_text(doc) == """{
  "a": [
    {
      "b": [1, 0, 1],
      "c": [[1, 2, 3], [0, 1, 1]],
      "d": []
    }
  ],
  "e": {},
  "f": "x",
  "g": [
    {"h": 1},
    2
  ]
}"""
    plain = {"meta": {"run": {"started_at": 1.5, "名": "中文"}, "none": None, "ok": True}}  # no list: json's own layout
    assert downstream_pass.document_text(plain) == json.dumps(plain, indent=2, ensure_ascii=False)
