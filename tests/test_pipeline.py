"""The whole pipeline as `make quickstart` chains it, on a slice of the real embedded corpus and a tiny
model: each stage reads exactly what the previous one wrote (collect -> verify -> train -> analyze ->
visualize), and check_progress.py reports the finished crawl and run."""

from __future__ import annotations

import json

import pytest

import analyze_100k
import check_progress
import rare_char_fetch
import train_large_100k
import verify_dataset
import visualize_results
from bertstudy.base.atomic_io import read_json
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.charts.plots import CHART_FILES
from tests.train_helpers import tiny_args

pytestmark = pytest.mark.slow  # every stage of make quickstart, one after another


def test_collect_verify_train_analyze_visualize_and_watch(tmp_path, capsys):
    data, run, charts = tmp_path / "data", tmp_path / "run", tmp_path / "results"
    corpus = data / "corpus.jsonl"
    assert rare_char_fetch.main(["--embedded-parts", "peoples_daily", "--max-articles", "60", "--out", str(corpus)]) == 0
    documents = load_documents(corpus)
    assert len(documents) == 60 and all(d.source == "embedded:peoples_daily" for d in documents)

    report = data / "dataset_report.json"
    thresholds = ["--min-sentences", "200", "--min-vocab", "300", "--max-near-dup-rate", "0.05"]
    assert verify_dataset.main([str(corpus), "--report", str(report), *thresholds]) == 0
    figures = read_json(report)
    assert figures["passed"] is True
    assert figures["sentences"] == sum(len(d.sentences) for d in documents)

    steps = 30
    assert train_large_100k.main(tiny_args(corpus, run, data / "cache", preset="quick", steps=steps, log_interval=2,
                                           eval_interval=10, save_interval=10, keep_last=1)) == 0
    history_path = run / "training_history_100k.json"
    history = read_json(history_path)
    assert history["steps"] == list(range(2, steps + 1, 2)) and history["eval_steps"] == [0, 10, 20, 30]
    assert history["meta"]["corpus"]["path"] == str(corpus)

    analysis = run / "analysis_100k_result.json"
    assert analyze_100k.main([str(history_path), "--out", str(analysis), "--bootstrap", "20", "--quiet"]) == 0
    result = read_json(analysis)
    # the default metric is the study's headline, held-out [MASK] accuracy, which this run has (4 evals)
    assert result["metric"]["name"] == "eval_mask_acc" and result["data_points"] == len(history["eval_steps"])
    assert result["total_steps"] == steps and result["mlm_stats"]  # the original's metric stays beside it
    assert result["best_curve"] in result["curves"]

    assert visualize_results.main([str(history_path), "--analysis", str(analysis), "--out-dir", str(charts)]) == 0
    assert sorted(p.name for p in charts.iterdir()) == sorted(CHART_FILES)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in charts.iterdir())

    capsys.readouterr()
    assert check_progress.main([str(run), "--crawl-progress", str(data / "crawl_progress.json"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["crawl"]["done"] and status["crawl"]["documents"] == 60
    assert status["training"]["status"] == "done" and status["training"]["step"] == steps
