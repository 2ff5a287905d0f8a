"""check_progress.py and bertstudy/monitor.py on the sources other than the training log: a history JSON
(ours, the original study's, one caught mid-write, one that stays broken) and crawl progress from the
collector's own writer."""

import json
import os
import threading

import pytest

from bertstudy import monitor as progress
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK
from bertstudy.corpus.collect import CrawlProgress
from bertstudy.training.run_log import HISTORY_NAME, LOG_NAME, add_eval_point, add_train_point, new_history, write_history
from tests.check_progress_helpers import T0, line, ours_history, run, start, train, watch


# ---------------------------------------------------------------- history JSON


def test_history_json_when_there_is_no_log(tmp_path, capsys):
    write_history(tmp_path / HISTORY_NAME, ours_history([(100, 50.0), (200, 100.0), (300, 125.0)]))
    run_ = progress.collect_progress(watch(tmp_path, rate_window=1))["training"]
    assert run_["source_format"] == "ours" and run_["status"] == "running"
    assert run_["step"] == 300 and run_["percent"] == pytest.approx(30.0)
    assert run_["steps_per_s"] == pytest.approx(4.0)  # (300-200)/(125-100)
    assert run_["eta_s"] == pytest.approx(700 / 4.0)
    assert run_["tokens_per_s"] == 800.0
    assert run_["eval"]["step"] == 300 and run_["eval"]["mlm_acc"] == 0.3
    write_history(tmp_path / HISTORY_NAME, ours_history([(100, 50.0)], total=100, finished=True))
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and HISTORY_NAME in out and "(done" in out and "ETA" not in out


def test_mask_accuracy_is_shown_beside_the_originals_metric(tmp_path, capsys):
    kinds = {"mask_acc": 0.05, "random_acc": 0.01, "unchanged_acc": 0.83}
    evaluation = {"step": 200, "mlm_acc": 0.137, "nsp_acc": 0.6, "mlm_loss": 5.0, **kinds, "mask_acc": 0.0625}
    records = [start(total=1000), {**train(100, T0 + 50), **kinds}, {**train(200, T0 + 100), **kinds},
               {"kind": "eval", **evaluation, "time": T0 + 101}]
    (tmp_path / LOG_NAME).write_text("".join(map(line, records)))
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK
    assert "mask_acc 0.0625  mlm_acc 0.1370" in out  # held-out, first
    assert "mask_acc 0.0500  mlm_acc 0.1000" in out  # training
    (tmp_path / LOG_NAME).unlink()  # the history alone says the same
    history = new_history({"preset": "quick", "total_steps": 1000, "started_at": T0, "finished_at": None})
    for record in records[1:3]:
        add_train_point(history, record)
    add_eval_point(history, evaluation)
    write_history(tmp_path / HISTORY_NAME, history)
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["eval"]["mask_acc"] == 0.0625 and run_["train"]["mask_acc"] == 0.05


def test_the_trainers_first_history_write_has_no_train_point(tmp_path):
    history = new_history({"preset": "quick", "total_steps": 500})
    add_eval_point(history, {"step": 0, "mlm_acc": 0.0, "nsp_acc": 0.5, "mlm_loss": 9.0})
    write_history(tmp_path / HISTORY_NAME, history)
    run_ = progress.collect_progress(watch(tmp_path, retry_delay_s=0.01))["training"]
    assert run_["status"] == "starting" and run_["total_steps"] == 500 and run_["step"] is None


def test_original_study_history_has_no_total_or_speed(tmp_path, capsys):
    original = {"steps": [1000, 2000], "mlm_acc": [0.1, 0.2], "nsp_acc": [0.5, 0.6], "loss": [7.0, 6.0],
                "lr": [1e-4, 1e-4]}
    (tmp_path / HISTORY_NAME).write_text(json.dumps(original))
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["source_format"] == "original" and run_["status"] == "unknown"
    assert run_["percent"] is None and run_["steps_per_s"] is None and run_["eta_s"] is None
    os.utime(tmp_path / HISTORY_NAME, (T0, T0))  # old, but not known to be running: no warning
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and "(unknown)" in out and "(step 2,000)" in out
    assert "warning" not in out


def test_history_caught_mid_write_is_read_again(tmp_path):
    path = tmp_path / HISTORY_NAME
    full = json.dumps(ours_history([(100, 10.0), (200, 20.0)]))
    path.write_text(full[: len(full) // 2])  # a non-atomic writer caught halfway
    timer = threading.Timer(0.05, lambda: write_history(path, json.loads(full)))
    timer.start()
    try:
        run_ = progress.collect_progress(watch(tmp_path, retry_delay_s=0.5))["training"]
    finally:
        timer.join()
    assert run_["step"] == 200


def test_history_that_stays_broken_is_bad_input(tmp_path, capsys):
    (tmp_path / HISTORY_NAME).write_text('{"steps": [1, 2], "mlm_acc": [0.1')
    code, out, err = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and HISTORY_NAME in err and err.count("\n") == 1


# ---------------------------------------------------------------- crawl progress

def test_crawl_progress_from_the_collectors_writer(tmp_path, capsys):
    clock = iter([T0, T0 + 100.0])
    writer = CrawlProgress(tmp_path / "crawl_progress.json", "wiki-api", target_vocab=8000,
                           target_sentences=1000, clock=lambda: next(clock))
    writer.update(documents=20, sentences=500, vocab=2000, force=True)
    crawl = progress.collect_progress(watch(tmp_path))["crawl"]
    assert (crawl["documents"], crawl["sentences"], crawl["vocab"]) == (20, 500, 2000)
    assert crawl["sentences_percent"] == pytest.approx(50.0) and crawl["vocab_percent"] == pytest.approx(25.0)
    assert crawl["sentences_per_s"] == pytest.approx(5.0) and crawl["eta_s"] == pytest.approx(100.0)
    assert not crawl["done"] and not crawl["stale"]
    code, out, err = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "crawl_progress.json"], capsys)
    assert code == EXIT_OK and err == ""
    assert "500 / 1,000 (50.0%)" in out and "2,000 / 8,000 (25.0%)" in out and "(wiki-api, running)" in out


def test_crawl_progress_without_targets_and_done(tmp_path):
    path = tmp_path / "crawl_progress.json"
    path.write_text(json.dumps({"source": "embedded", "documents": 3, "sentences": 90, "vocab": 50,
                                "target_vocab": None, "target_sentences": None, "started_at": T0,
                                "updated_at": T0, "done": True}))
    crawl = progress.collect_progress(watch(tmp_path))["crawl"]
    assert crawl["done"] and crawl["sentences_per_s"] is None and crawl["eta_s"] is None
    assert crawl["sentences_percent"] is None
    assert "90" in progress.format_progress(progress.collect_progress(watch(tmp_path)))


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "JSON object"),
    ('{"documents": "many", "sentences": 1, "vocab": 1, "started_at": 0, "updated_at": 1}', "'documents'"),
    ('{"documents": 1, "sentences": 1, "vocab": 1, "started_at": 0}', "'updated_at'"),
    ('{"documents": 1,', "invalid JSON"),
])
def test_bad_crawl_progress_is_one_line_naming_the_file(tmp_path, capsys, content, needle):
    path = tmp_path / "crawl_progress.json"
    path.write_text(content)
    code, out, err = run(["--run-dir", tmp_path, "--crawl-progress", path], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith(f"error: {path}") and needle in err and err.count("\n") == 1
