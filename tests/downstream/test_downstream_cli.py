"""probe_downstream.py end to end on a tiny run trained on a tiny embedded-like corpus: the output
format, no test text in the pretraining documents, exact resume, bad inputs; then analyze_100k.py
--downstream and visualize_results.py --downstream on its output."""

from __future__ import annotations

import shutil

import pytest
import torch

import analyze_100k
import probe_downstream
import train_large_100k
import visualize_results
from bertstudy.base.atomic_io import read_json
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.downstream import downstream_pass
from bertstudy.downstream.downstream_pass import PassSettings, prepare_tasks
from bertstudy.downstream.tasks import model_text
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from bertstudy.corpus.text_clean import normalize_width, split_sentences
from tests.train_helpers import tiny_args

torch.set_num_threads(1)
PROBE_ARGS = ["--cws-train", "40", "--sentiment-train", "60", "--no-progress", "--threads", "1"]
pytestmark = pytest.mark.slow  # every test reads a trained tiny run, most probe its milestones


@pytest.fixture(scope="module")
def tiny_run(downstream_run):
    return downstream_run  # tests/downstream/conftest.py: milestones 0, 1, 2, 5, 6, 30% held out


@pytest.fixture(scope="module")
def scored(tiny_run):
    root, task_data, _, run = tiny_run
    out = root / "full.json"
    assert probe_downstream.main([str(run), "--task-data", str(task_data), "--out", str(out), *PROBE_ARGS]) == EXIT_OK
    return read_json(out)


def test_output_format_and_every_milestone(scored):
    assert scored["meta"]["format"] == "chinese-bert-correlation/downstream-v1"
    assert set(scored["tasks"]) == {"cws", "sentiment", "ner"}
    assert [scored["tasks"][t]["metric"] for t in ("cws", "sentiment", "ner")] == ["f1", "accuracy", "entity_f1"]
    for task in scored["tasks"].values():
        assert [p["step"] for p in task["points"]] == [0, 1, 2, 5, 6]
        assert all(0.0 <= p["score"] <= 1.0 and 0.0 <= p["heldout_mlm_acc"] <= 1.0 for p in task["points"])
        assert all(0.0 <= p["heldout_mask_acc"] <= 1.0 for p in task["points"])  # the history's [MASK] accuracy
        assert task["baselines"]["step0"]["score"] == task["points"][0]["score"]
        assert task["sizes"]["test"] > 0 and task["sizes"]["train"] > 0 and "near_copy_dropped" in task["sizes"]
        control = task["baselines"]["identity_control"]["score"]  # every task has the identity control
        assert all(p["selectivity"] == pytest.approx(p["score"] - control) for p in task["points"])
        assert all(p["best_layer"]["selectivity"] == pytest.approx(p["best_layer"]["score"] - control)
                   for p in task["points"])
    assert 0.5 < scored["tasks"]["cws"]["baselines"]["jieba"]["score"] <= 1.0
    assert {"window_logreg", "majority"} <= set(scored["tasks"]["cws"]["baselines"])
    assert {"char_ngram_logreg", "majority", "step0"} <= set(scored["tasks"]["sentiment"]["baselines"])
    # NER scores the segmentation lines: the same test sentences, entities counted per sentence
    ner, cws = scored["tasks"]["ner"], scored["tasks"]["cws"]
    assert ner["sizes"]["test"] == cws["sizes"]["test"] and ner["points"][0]["gold_entities"] > 0
    assert len(ner["points"][0]["sentence_counts"]) == ner["sizes"]["test"]


def test_no_test_sentence_appears_in_the_pretraining_documents(tiny_run):
    root, task_data, corpus, run = tiny_run
    history = read_json(run / "training_history_100k.json")
    tasks = prepare_tasks(run, history, PassSettings(task_data=str(task_data), cws_train=40, sentiment_train=60))
    heldout = set(read_json(run / "heldout_documents.json")["heldout_ids"])
    trained = [d for d in load_documents(corpus) if d.id not in heldout]
    trained_sentences = {s for d in trained for s in d.sentences}
    trained_text = "\n".join(trained_sentences)
    test_texts = [s.chars for s in tasks.cws.test] + [r.text for r in tasks.sentiment.test]
    assert test_texts
    for text in test_texts:
        assert model_text(text) not in trained_text
        assert not any(s in trained_sentences for s in split_sentences(normalize_width(text)))
    assert all(s.doc_id in heldout for s in tasks.cws.test)
    assert all(any(d in heldout for d in r.doc_ids) for r in tasks.sentiment.test)
    assert not any(s.doc_id in heldout for s in tasks.cws.train)


def test_interrupted_pass_resumes_exactly(tiny_run, scored, monkeypatch, capsys):
    root, task_data, _, run = tiny_run
    out = root / "resumed.json"
    real_load = downstream_pass.probe.load_model
    calls = []

    def load_then_stop(path, vocab, device="cpu"):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while scoring the third checkpoint
        return real_load(path, vocab, device)

    monkeypatch.setattr(downstream_pass.probe, "load_model", load_then_stop)
    argv = [str(run), "--task-data", str(task_data), "--out", str(out), *PROBE_ARGS]
    assert probe_downstream.main(argv) == EXIT_INTERRUPTED
    assert [p["step"] for p in read_json(out)["tasks"]["cws"]["points"]] == [0, 1]
    monkeypatch.setattr(downstream_pass.probe, "load_model", real_load)
    capsys.readouterr()
    assert probe_downstream.main(argv) == EXIT_OK
    assert "(3 checkpoint(s) scored now)" in capsys.readouterr().out
    resumed = read_json(out)
    for name in ("cws", "sentiment"):  # the same scores as one uninterrupted pass
        assert [p["score"] for p in resumed["tasks"][name]["points"]] == [p["score"] for p in scored["tasks"][name]["points"]]
    assert probe_downstream.main(argv) == EXIT_OK  # nothing left: scores nothing, keeps everything
    assert read_json(out)["tasks"] == resumed["tasks"]
    # other settings would mix two kinds of score in one file: refused without --overwrite
    assert probe_downstream.main([*argv, "--seed", "1"]) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err


def test_finetune_mode_writes_its_own_file(tiny_run):
    root, task_data, _, run = tiny_run
    last = run / "checkpoints_100k" / "milestone_000006.pth"
    argv = [str(run), "--task-data", str(task_data), "--finetune", "--epochs", "1", "--checkpoints", str(last), *PROBE_ARGS]
    assert probe_downstream.main(argv) == EXIT_OK
    doc = read_json(run / "downstream_finetune_100k.json")
    assert doc["meta"]["settings"]["mode"] == "finetune" and doc["meta"]["settings"]["epochs"] == 1
    assert doc["tasks"]["ner"]["skipped"] and doc["tasks"]["ner"]["points"] == []  # NER: frozen probes only
    for name in ("cws", "sentiment"):
        task = doc["tasks"][name]
        assert [p["step"] for p in task["points"]] == [6] and 0.0 <= task["points"][0]["score"] <= 1.0
        assert "step0" not in task["baselines"]  # step 0 was not fine-tuned in this pass
    assert not (run / "downstream_100k.json").exists()  # the probe's default file is left alone


def test_bad_inputs_one_line_errors(tiny_run, tmp_path, capsys):
    root, task_data, corpus, run = tiny_run
    assert probe_downstream.main([str(tmp_path / "nope"), *PROBE_ARGS]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "nope: no such run folder" in err and len(err.splitlines()) == 1
    # a run trained without milestones
    plain = tmp_path / "plain"
    assert train_large_100k.main(tiny_args(corpus, plain, root / "cache", heldout_fraction=0.3)) == EXIT_OK
    capsys.readouterr()
    assert probe_downstream.main([str(plain), "--task-data", str(task_data), *PROBE_ARGS]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "has no milestone checkpoints" in err and "--milestones log" in err and len(err.splitlines()) == 1
    # a corrupt (truncated) milestone
    broken = tmp_path / "milestone_000003.pth"
    data = (run / "checkpoints_100k" / "milestone_000005.pth").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    assert probe_downstream.main([str(run), "--task-data", str(task_data), "--out", str(tmp_path / "x.json"),
                                  "--checkpoints", str(broken), *PROBE_ARGS]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert str(broken) in err and "corrupt" in err and len(err.splitlines()) == 1
    # a run whose split cannot be told (no split file, no corpus hash in its history)
    blind = tmp_path / "blind"
    shutil.copytree(run, blind)
    (blind / "heldout_documents.json").unlink()
    history = read_json(blind / "training_history_100k.json")
    del history["meta"]["corpus"]
    (blind / "training_history_100k.json").write_text(__import__("json").dumps(history), encoding="utf-8")
    assert probe_downstream.main([str(blind), "--task-data", str(task_data), *PROBE_ARGS]) == EXIT_BAD_INPUT
    assert "cannot tell which documents it held out" in capsys.readouterr().err


def test_analyze_and_visualize_take_the_downstream_file(tiny_run, scored, tmp_path, capsys):
    root, _, _, run = tiny_run
    ds = tmp_path / "ds.json"
    ds.write_text(__import__("json").dumps(scored), encoding="utf-8")
    out = tmp_path / "analysis.json"
    assert analyze_100k.main([str(run / "training_history_100k.json"), "--downstream", str(ds), "--out", str(out),
                              "--bootstrap", "0"]) == EXIT_OK
    assert "MLM acc vs score" in capsys.readouterr().out
    result = read_json(out)["downstream"]
    for task in ("cws", "sentiment"):
        entry = result["tasks"][task]
        assert entry["mlm_vs_score"]["pearson"]["n"] == 5 and entry["log_step_vs_score"]["pearson"]["n"] == 4
    assert visualize_results.main([str(run / "training_history_100k.json"), "--downstream", str(ds),
                                   "--out-dir", str(tmp_path / "charts"), "--dpi", "150", "--lang", "en"]) == EXIT_OK
    assert (tmp_path / "charts" / "downstream.png").stat().st_size > 10_000
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    assert analyze_100k.main([str(run / "training_history_100k.json"), "--downstream", str(tmp_path / "bad.json"),
                              "--out", str(out)]) == EXIT_BAD_INPUT


def test_a_corpus_without_reviews_skips_sentiment(tiny_run, tmp_path, capsys):
    root, task_data, corpus, _ = tiny_run
    from bertstudy.corpus.corpus_io import write_documents

    news_only = tmp_path / "news.jsonl"
    write_documents(news_only, [d for d in load_documents(corpus) if d.id.startswith("pd-")])
    run = tmp_path / "run"
    assert train_large_100k.main(tiny_args(news_only, run, tmp_path / "cache", milestones="2",
                                           heldout_fraction=0.3)) == EXIT_OK
    capsys.readouterr()
    assert probe_downstream.main([str(run), "--task-data", str(task_data), *PROBE_ARGS]) == EXIT_OK
    assert "sentiment: skipped" in capsys.readouterr().out
    doc = read_json(run / "downstream_100k.json")
    assert doc["tasks"]["sentiment"]["points"] == [] and doc["tasks"]["sentiment"]["skipped"]
    assert [p["step"] for p in doc["tasks"]["cws"]["points"]] == [0, 2]


def test_out_is_checked_before_any_scoring(tiny_run, tmp_path, capsys, monkeypatch):
    """A bad --out fails at once (exit 2), an unrelated file there is a refusal (exit 2), kept."""
    root, task_data, _, run = tiny_run

    def no_work(*args, **kwargs):
        raise AssertionError("scoring started before --out was checked")

    monkeypatch.setattr(downstream_pass, "prepare_tasks", no_work)
    monkeypatch.setattr(downstream_pass.probe, "load_model", no_work)
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    argv = [str(run), "--task-data", str(task_data), *PROBE_ARGS]
    assert probe_downstream.main([*argv, "--out", str(tmp_path / "a_file" / "ds.json")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and "a_file" in err[0]
    unrelated = tmp_path / "notes.json"
    unrelated.write_text('{"mine": 1}', encoding="utf-8")
    assert probe_downstream.main([*argv, "--out", str(unrelated)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "notes.json" in err[0]
    assert unrelated.read_text(encoding="utf-8") == '{"mine": 1}'


def test_a_bad_checkpoint_gets_probe_advice_not_training_advice(tiny_run, tmp_path, capsys):
    root, task_data, _, run = tiny_run
    not_a_checkpoint = tmp_path / "milestone_000003.pth"
    not_a_checkpoint.write_text('{"steps": [1]}', encoding="utf-8")
    for bad in (not_a_checkpoint, tmp_path):  # a JSON file, a folder
        assert probe_downstream.main([str(run), "--task-data", str(task_data), "--out", str(tmp_path / "x.json"),
                                      "--checkpoints", str(bad), *PROBE_ARGS]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--checkpoints" in err and "--resume" not in err, err


def test_a_downstream_pass_of_another_run_is_refused(tiny_run, scored, tmp_path, capsys):
    """analyze_100k.py and visualize_results.py check --downstream against the history (exit 3)."""
    import json

    root, _, _, run = tiny_run
    history = read_json(run / "training_history_100k.json")
    assert scored["meta"]["run"] == {"started_at": history["meta"]["started_at"],
                                     "vocab_hash": history["meta"]["vocab_hash"]}
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps(scored), encoding="utf-8")
    other = dict(history, eval_mlm_acc=[a + 0.01 for a in history["eval_mlm_acc"]])  # another run's numbers
    other["meta"] = {k: v for k, v in history["meta"].items() if k != "started_at"}  # an older pass: no identity
    other_path = tmp_path / "other" / "training_history_100k.json"
    other_path.parent.mkdir()
    other_path.write_text(json.dumps(other), encoding="utf-8")
    out = tmp_path / "analysis.json"
    assert analyze_100k.main([str(other_path), "--downstream", str(ds), "--out", str(out), "--bootstrap", "0"]) \
        == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the downstream pass of another run" in err[0] and not out.exists()
    charts = tmp_path / "charts"
    assert visualize_results.main([str(other_path), "--downstream", str(ds), "--out-dir", str(charts),
                                   "--dpi", "150", "--lang", "en"]) == EXIT_BAD_INPUT
    assert "another run" in capsys.readouterr().err and not list(charts.glob("*.png"))
    # the same numbers but another start time: the recorded run identity tells them apart
    renamed = dict(history, meta=dict(history["meta"], started_at=history["meta"]["started_at"] + 1))
    other_path.write_text(json.dumps(renamed), encoding="utf-8")
    assert analyze_100k.main([str(other_path), "--downstream", str(ds), "--out", str(out), "--bootstrap", "0"]) \
        == EXIT_BAD_INPUT
    assert "records another run" in capsys.readouterr().err


def test_a_probe_file_from_before_the_per_layer_pass_is_refused(tiny_run, scored, tmp_path, capsys):
    """A probe file whose points have the last layer only is not resumed with per-layer points."""
    import json

    root, task_data, _, run = tiny_run
    for task in scored["tasks"].values():  # what this pass writes now: every layer of the 2-layer model
        assert all([e["layer"] for e in p["layers"]] == [0, 1, 2] and "best_layer" in p for p in task["points"])
    older = json.loads(json.dumps(scored))
    del older["meta"]["settings"]["layers"], older["meta"]["layers"]
    for task in older["tasks"].values():
        for point in task["points"]:
            for key in ("layers", "best_layer", "item_correct", "sentence_counts"):
                point.pop(key, None)
    old_file = tmp_path / "old.json"
    old_file.write_text(json.dumps(older), encoding="utf-8")
    argv = [str(run), "--task-data", str(task_data), "--out", str(old_file), *PROBE_ARGS]
    assert probe_downstream.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made before the probes on every layer" in err[0] and "--overwrite" in err[0]
    assert json.loads(old_file.read_text(encoding="utf-8")) == older  # kept
    last = str(run / "checkpoints_100k" / "milestone_000006.pth")
    assert probe_downstream.main([*argv, "--overwrite", "--checkpoints", last]) == EXIT_OK
    assert read_json(old_file)["tasks"]["cws"]["points"][0]["layers"]


def test_milestone_steps_pick_a_few_milestones(tiny_run, tmp_path, capsys):
    root, task_data, _, run = tiny_run
    out = tmp_path / "few.json"
    base = [str(run), "--task-data", str(task_data), "--out", str(out), *PROBE_ARGS]
    assert probe_downstream.main([*base, "--milestone-steps", "6,0"]) == EXIT_OK
    assert [p["step"] for p in read_json(out)["tasks"]["cws"]["points"]] == [0, 6]
    capsys.readouterr()
    # a step without a milestone: one line naming the run and the steps there are, nothing scored
    assert probe_downstream.main([*base, "--milestone-steps", "3", "--overwrite"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no milestone at step 3" in err and "0, 1, 2, 5, 6" in err
    with pytest.raises(SystemExit):  # not with --checkpoints, and only distinct non-negative steps
        probe_downstream.build_parser().parse_args([str(run), "--milestone-steps", "1,1"])
