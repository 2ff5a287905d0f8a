"""check_progress.py and bertstudy/monitor.py on a training log: a JSONL log being written by another
thread (half lines included), staleness, --follow and Ctrl-C, bad input, and exit 5 on nothing.
tests/test_check_progress_sources.py has the other sources: a history JSON and crawl progress."""

import json
import os
import signal
import threading
import time

import pytest

import check_progress
from bertstudy import monitor as progress
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_NOTHING_TO_WATCH, EXIT_OK
from bertstudy.training.run_log import HISTORY_NAME, LOG_NAME, write_history
from tests.check_progress_helpers import T0, line, ours_history, run, start, train, watch


# ---------------------------------------------------------------- pure helpers

def test_format_duration():
    assert progress.format_duration(5) == "5s"
    assert progress.format_duration(65) == "1m 05s"
    assert progress.format_duration(3 * 3600 + 61) == "3h 01m 01s"
    assert progress.format_duration(2 * 86400 + 3600) == "2d 01h 00m"
    assert progress.format_duration(None) == "?"


def test_rate_uses_the_window_and_refuses_zero_time():
    points = [(0, 0.0), (10, 10.0), (20, 15.0), (30, 20.0)]
    assert progress._rate(points, window=1) == pytest.approx(2.0)  # (30-20)/(20-15)
    assert progress._rate(points, window=10) == pytest.approx(1.5)  # (30-0)/(20-0)
    assert progress._rate([(5, 1.0)], window=3) is None
    assert progress._rate([(5, 1.0), (9, 1.0)], window=3) is None


def test_checkpoint_names_agree_with_the_checkpoint_module():
    from bertstudy.training import checkpoint

    assert progress.CHECKPOINT_DIR_NAME == checkpoint.CHECKPOINT_DIR_NAME
    assert progress.FINAL_MODEL_NAME == checkpoint.FINAL_MODEL_NAME
    assert progress.CHECKPOINT_FILE.match(checkpoint.checkpoint_path("x", 1234).name)


# ---------------------------------------------------------------- JSONL log

def test_log_summary_step_speed_eta_metrics_and_newest_checkpoint(tmp_path, capsys):
    records = [start(total=1000), {"kind": "eval", "step": 0, "mlm_acc": 0.0, "nsp_acc": 0.5, "mlm_loss": 9.0,
                                   "time": T0 + 1}]
    records += [train(step, T0 + step / 2, mlm_acc=step / 1000) for step in range(100, 501, 100)]  # 2 steps/s
    records += [{"kind": "eval", "step": 400, "mlm_acc": 0.35, "nsp_acc": 0.7, "mlm_loss": 4.0, "time": T0 + 201},
                {"kind": "checkpoint", "step": 400, "path": "x", "time": T0 + 202}]
    (tmp_path / LOG_NAME).write_text("".join(map(line, records)))
    folder = tmp_path / progress.CHECKPOINT_DIR_NAME
    folder.mkdir()
    for step in (200, 400):
        (folder / f"step_{step:06d}.pth").write_bytes(b"x")
    (folder / "notes.txt").write_text("not a checkpoint")
    summary = progress.collect_progress(watch(tmp_path), now=time.time())
    run_ = summary["training"]
    assert run_["status"] == "running" and run_["step"] == 500 and run_["total_steps"] == 1000
    assert run_["percent"] == pytest.approx(50.0)
    assert run_["steps_per_s"] == pytest.approx(2.0)
    assert run_["eta_s"] == pytest.approx(250.0)
    assert run_["tokens_per_s"] == 5000.0
    assert run_["train"]["mlm_acc"] == pytest.approx(0.5)
    # a log from before [MASK] accuracy existed: the field is there, empty, and not shown
    assert run_["eval"] == {"step": 400, "mask_acc": None, "mlm_acc": 0.35, "nsp_acc": 0.7, "mlm_loss": 4.0}
    assert run_["checkpoint"]["step"] == 400 and run_["checkpoint"]["count"] == 2
    assert summary["crawl"] is None and not summary["warnings"]
    code, out, err = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and err == ""
    assert "500 / 1,000 (50.0%)" in out and "2 steps/s" in out and "step_000400.pth" in out
    assert "held-out" in out and "mlm_acc 0.3500" in out


def test_resumed_log_counts_speed_from_the_latest_start_only(tmp_path):
    # Before the crash: 1 step/s. After resuming at 200 (an hour later): 4 steps/s.
    records = [start(), train(100, T0 + 100), train(200, T0 + 200), train(300, T0 + 300)]
    later = T0 + 3600
    records += [start(resumed_from=200, t=later), train(300, later + 25), train(400, later + 50)]
    (tmp_path / LOG_NAME).write_text("".join(map(line, records)))
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["resumed_from"] == 200 and run_["step"] == 400
    assert run_["steps_per_s"] == pytest.approx(4.0)


def test_end_record_sets_the_status_and_drops_the_eta(tmp_path, capsys):
    records = [start(total=200), train(100, T0 + 10), train(200, T0 + 20),
               {"kind": "end", "step": 200, "time": T0 + 21, "status": "done"}]
    (tmp_path / LOG_NAME).write_text("".join(map(line, records)))
    (tmp_path / progress.FINAL_MODEL_NAME).write_bytes(b"x")
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["status"] == "done" and run_["eta_s"] is None
    assert run_["final_model"].endswith(progress.FINAL_MODEL_NAME)
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and "(done, preset quick)" in out and "final model" in out


def test_a_log_with_only_a_half_written_first_line_is_a_run_starting(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start())[:20])
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["status"] == "starting" and run_["step"] is None
    (tmp_path / LOG_NAME).write_text("")  # created, nothing written yet
    assert progress.collect_progress(watch(tmp_path))["training"]["status"] == "starting"
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and "starting" in out


def test_log_being_written_by_another_thread(tmp_path, capsys):
    """The writer appends records one by one, each in two writes; while a record is half written
    the reader must see the previous complete record, never fail, and never go backwards."""
    path = tmp_path / LOG_NAME
    steps = list(range(10, 210, 10))
    half_written, read_done = threading.Event(), threading.Event()
    errors = []

    def writer():
        try:
            with open(path, "a", encoding="utf-8") as handle:
                for step in [0] + steps:
                    text = line(start(total=200, t=time.time()) if step == 0 else train(step, time.time()))
                    handle.write(text[: len(text) // 2])
                    handle.flush()
                    half_written.set()
                    assert read_done.wait(10), "reader did not answer"
                    read_done.clear()
                    handle.write(text[len(text) // 2:])
                    handle.flush()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            half_written.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen = []
    for index in range(len(steps) + 1):
        assert half_written.wait(10)
        half_written.clear()
        assert not errors, errors
        summary = progress.collect_progress(watch(tmp_path))
        run_ = summary["training"]
        expected = steps[index - 2] if index >= 2 else None  # record `index` is half written
        assert run_["step"] == expected
        if index == 0:
            assert run_["status"] == "starting" and run_["total_steps"] is None  # even the start is half written
        else:
            assert run_["status"] in ("starting", "running") and run_["total_steps"] == 200
        if index == len(steps) // 2:  # the script itself, on a half-written last line
            code, out, err = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
            assert code == EXIT_OK and err == "" and f"{expected} / 200 ({expected / 2:.1f}%)" in out
        seen.append(run_["step"] or 0)
        read_done.set()
    thread.join(10)
    assert not errors, errors
    assert seen == sorted(seen)
    assert progress.collect_progress(watch(tmp_path))["training"]["step"] == 200


def test_bad_line_in_the_middle_of_the_log_names_file_and_line(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start()) + "{not json\n" + line(train(100, T0 + 1)))
    code, out, err = run(["--run-dir", tmp_path], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("error: ") and f"{LOG_NAME}:2" in err and err.count("\n") == 1
    (tmp_path / LOG_NAME).write_text(line(start()) + line({"kind": "train", "step": "ten", "mlm_acc": 0.1}))
    code, _, err = run(["--run-dir", tmp_path], capsys)
    assert code == EXIT_BAD_INPUT and f"{LOG_NAME}:2" in err and "'step'" in err


# ---------------------------------------------------------------- staleness

def test_stale_running_jobs_are_warned_about(tmp_path, capsys):
    log = tmp_path / LOG_NAME
    log.write_text(line(start()) + line(train(100, T0 + 10)))
    crawl = tmp_path / "crawl_progress.json"
    crawl.write_text(json.dumps({"source": "wiki-api", "documents": 1, "sentences": 1, "vocab": 1,
                                 "started_at": T0, "updated_at": T0 + 1, "done": False}))
    old = time.time() - 20 * 60
    for path in (log, crawl):
        os.utime(path, (old, old))
    summary = progress.collect_progress(watch(tmp_path, stale_minutes=10))
    assert summary["training"]["stale"] and summary["crawl"]["stale"] and len(summary["warnings"]) == 2
    assert not progress.collect_progress(watch(tmp_path, stale_minutes=30))["warnings"]
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", crawl, "--stale-minutes", 10], capsys)
    assert code == EXIT_OK
    assert "warning: training: nothing written" in out and "20m 00s" in out
    assert "warning: crawl:" in out
    # A fresh checkpoint is a write too: the run is alive, only between log points.
    folder = tmp_path / progress.CHECKPOINT_DIR_NAME
    folder.mkdir()
    (folder / "step_000100.pth").write_bytes(b"x")
    assert not progress.collect_progress(watch(tmp_path, stale_minutes=10))["training"]["stale"]


def test_a_finished_run_is_never_stale(tmp_path):
    log = tmp_path / LOG_NAME
    log.write_text(line(start()) + line(train(100, T0 + 10)) + line({"kind": "end", "step": 100, "time": T0 + 11,
                                                                        "status": "interrupted"}))
    os.utime(log, (T0, T0))
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["status"] == "interrupted" and not run_["stale"]


# ---------------------------------------------------------------- nothing to watch, --follow, --json

def test_empty_folder_exits_5_with_the_hint(tmp_path, capsys):
    args = ["--run-dir", tmp_path, "--crawl-progress", tmp_path / "crawl_progress.json"]
    code, out, err = run(args, capsys)
    assert code == EXIT_NOTHING_TO_WATCH and out == "" and err.count("\n") == 1
    assert "rare_char_fetch.py" in err and "train_large_100k.py" in err and LOG_NAME in err
    code, out, _ = run(args + ["--follow", "--interval", "0.01", "--count", "2"], capsys)
    assert code == EXIT_NOTHING_TO_WATCH and out.count("(waiting)") == 2


def test_follow_refreshes_and_json_parses(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start()) + line(train(100, T0 + 10)))
    code, out, _ = run(["--run-dir", tmp_path, "--follow", "--interval", "0.01", "--count", "3", "--json"], capsys)
    assert code == EXIT_OK
    summaries = [json.loads(text) for text in out.splitlines()]
    assert len(summaries) == 3 and all(s["training"]["step"] == 100 for s in summaries)


def test_ctrl_c_ends_follow_with_exit_0(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start()) + line(train(100, T0 + 10)))
    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and then
    # Python installs no KeyboardInterrupt handler: install it here, as an interactive session has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        # --count bounds the test should the signal be lost; it is ~40 s away at this interval.
        code, out, err = run(["--run-dir", tmp_path, "--follow", "--interval", "0.05", "--count", "800"], capsys)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert code == EXIT_OK and err == ""
    assert 1 <= out.count("training  ") < 800


def test_run_dir_as_a_positional_argument(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start()) + line(train(100, T0 + 10)))
    code, out, _ = run([tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and "100 / 1,000" in out
    with pytest.raises(SystemExit) as exit_info:
        check_progress.main([str(tmp_path), "--run-dir", str(tmp_path / "other")])
    assert exit_info.value.code == 2


def test_follow_reports_a_bad_file_and_keeps_watching(tmp_path, capsys):
    (tmp_path / LOG_NAME).write_text(line(start()) + "{broken\n" + line(train(100, T0 + 10)))
    code, out, err = run(["--run-dir", tmp_path, "--follow", "--interval", "0.01", "--count", "2"], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.count(f"{LOG_NAME}:2") == 2 and err.count("\n") == 2


def test_a_log_removed_while_read_falls_back_to_the_history(tmp_path, monkeypatch):
    """A fresh run unlinks the old log; a reader that saw it a moment earlier must not fail."""
    log = tmp_path / LOG_NAME
    log.write_text(line(start()) + line(train(100, T0 + 10)))
    write_history(tmp_path / HISTORY_NAME, ours_history([(100, 50.0), (200, 100.0)]))
    real_iter = progress.iter_jsonl

    def iter_after_removal(path, **kw):
        os.unlink(path)  # the writer wins the race between our stat and our read
        return real_iter(path, **kw)

    monkeypatch.setattr(progress, "iter_jsonl", iter_after_removal)
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["source"].endswith(HISTORY_NAME) and run_["step"] == 200


def test_a_run_folder_that_does_not_exist_is_one_line_exit_3(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir"
    for argv in ([missing], ["--run-dir", missing], [missing, "--follow", "--count", "1", "--interval", "0.01"]):
        code, out, err = run(argv, capsys)
        assert code == EXIT_BAD_INPUT and out == ""
        assert err.startswith(f"error: {missing}: no such folder") and len(err.strip().splitlines()) == 1
    afile = tmp_path / HISTORY_NAME
    afile.write_text("{}")
    code, _, err = run([afile], capsys)
    assert code == EXIT_BAD_INPUT and f"python check_progress.py {tmp_path}" in err


def test_help_description_is_whole(capsys):
    with pytest.raises(SystemExit):
        check_progress.main(["--help"])
    out = capsys.readouterr().out
    assert "until the run and the crawl have finished." in out  # the docstring's last sentence, not cut after line one


def test_an_eta_from_the_first_steps_before_the_first_log_point(tmp_path, capsys):
    """large_100k on a CPU logs its first train record at step 100 (hours away); the
    speed records of its first steps (training/machine.py) give the step and an ETA before that."""
    records = [start(total=100_000), {"kind": "speed", "step": 5, "steps_per_s": 0.03, "time": T0 + 175},
               {"kind": "speed", "step": 20, "steps_per_s": 0.03, "time": T0 + 700}]
    (tmp_path / LOG_NAME).write_text("".join(map(line, records)))
    run_ = progress.collect_progress(watch(tmp_path))["training"]
    assert run_["status"] == "running" and run_["step"] == 20
    assert run_["steps_per_s"] == pytest.approx(20 / 700)
    assert run_["eta_s"] == pytest.approx((100_000 - 20) * 35)
    code, out, _ = run(["--run-dir", tmp_path, "--crawl-progress", tmp_path / "none.json"], capsys)
    assert code == EXIT_OK and "ETA" in out and "40d" in out
