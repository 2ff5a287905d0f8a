"""check_progress.py --reference: a live run's held-out [MASK] accuracy against a finished run's fitted curve
and band (bertstudy/analysis/reference.py), the alert line, --fail-on-alert; and a finished run's view:
the average speed, --follow stopping, an interrupted run's step."""

import json
import math

import pytest

import analyze_100k
import check_progress
from bertstudy import monitor
from bertstudy.analysis.reference import load_reference, non_finite_alert
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK
from bertstudy.training.run_log import HISTORY_NAME, LOG_NAME, add_eval_point, add_train_point, new_history, write_history

T0 = 1_700_000_000.0
STEPS = list(range(100, 3001, 100))  # the reference's evals: 30, every 100 steps


def curve(step: int) -> float:
    """The reference run's held-out [MASK] accuracy: a log-linear rise with a little deterministic wobble."""
    return 0.02 + 0.03 * math.log(step / 100 + 1) + 0.003 * math.sin(step / 70)


def reference_history(preset="quick", corpus_sha="a" * 64) -> dict:
    history = new_history({"preset": preset, "total_steps": STEPS[-1], "started_at": T0, "finished_at": T0 + 9999,
                           "corpus": {"path": "corpus.jsonl", "sha256": corpus_sha}, "vocab_hash": "v" * 64})
    add_eval_point(history, {"step": 0, "mlm_acc": 0.0, "nsp_acc": 0.5, "mlm_loss": 9.0, "mask_acc": 0.0})
    for step in STEPS:
        add_train_point(history, {"step": step, "mlm_acc": curve(step), "nsp_acc": 0.5, "loss": 5.0, "mlm_loss": 4.5,
                                  "nsp_loss": 0.5, "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed_s": float(step),
                                  "mask_acc": curve(step)})
        add_eval_point(history, {"step": step, "mlm_acc": curve(step), "nsp_acc": 0.5, "mlm_loss": 4.0,
                                 "mask_acc": curve(step)})
    return history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A finished run's folder: its history and the analysis analyze_100k.py wrote of it."""
    folder = tmp_path_factory.mktemp("reference")
    write_history(folder / HISTORY_NAME, reference_history())
    # no bootstrap: the band is the fits' own (residuals, forecast band), which need none
    assert analyze_100k.main([str(folder / HISTORY_NAME), "--quiet", "--bootstrap", "0"]) == EXIT_OK
    return folder


def live_log(folder, values: dict, preset="quick", skips=None, end=None):
    """A live run's log: a start record, a train record every 100 steps, and evals with these values."""
    records = [{"kind": "start", "time": T0, "total_steps": STEPS[-1], "preset": preset, "resumed_from": None,
                "config": {}}]
    for step in STEPS:
        if step > max(values):
            break
        records.append({"kind": "train", "step": step, "mlm_acc": 0.1, "nsp_acc": 0.5, "loss": 5.0, "lr": 1e-3,
                        "tokens_per_s": 900.0, "elapsed_s": float(step), "time": T0 + step,
                        "skipped_steps": (skips or {}).get(step, 0)})
        if step in values:
            records.append({"kind": "eval", "step": step, "mlm_acc": 0.1, "nsp_acc": 0.5, "mlm_loss": 4.0,
                            "mask_acc": values[step], "time": T0 + step})
    if end:
        records.append({"kind": "end", "step": max(values), "time": T0 + max(values) + 1, "status": end})
    (folder / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def run(argv, capsys):
    code = check_progress.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def watch(run_dir, reference_dir, *extra):
    return [run_dir, "--reference", reference_dir, "--crawl-progress", run_dir / "none.json", *extra]


def test_the_band_is_the_analysis_fit_and_holds_the_reference_itself(reference):
    ref = load_reference(reference)  # the folder: its analysis_100k_result.json
    assert ref["preset"] == "quick" and ref["corpus_sha256"] == "a" * 64
    assert ref["curve"] in ("log_linear", "phases", "power_saturating", "linear")
    assert ref["interval_half_width"] > 0 and (ref["half_width"] >= ref["interval_half_width"] - 1e-12).all()
    summary = monitor.collect_progress(monitor.MonitorConfig(crawl_progress=reference / "none.json", run_dir=reference),
                                       reference=ref)
    judged = summary["training"]["reference"]
    assert judged["judged_evals"] == len(STEPS) and summary["alert"] is None  # its own points are inside


def test_a_run_that_leaves_the_band_alerts_at_its_third_eval_below(tmp_path, reference, capsys):
    values = {step: curve(step) if step < 1600 else 0.01 for step in STEPS[:20]}  # drops at 1600, last eval 2000
    live_log(tmp_path, values)
    code, out, err = run(watch(tmp_path, reference), capsys)
    assert code == EXIT_OK and err == ""  # an alert without --fail-on-alert is shown, not an exit code
    alerts = [text for text in out.splitlines() if text.startswith("ALERT:")]
    assert len(alerts) == 1 and "3 evals in a row (steps 1,600-1,800" in alerts[0]
    assert "BELOW the band" in out
    code, out, _ = run(watch(tmp_path, reference, "--json", "--alert-evals", "1"), capsys)
    alert = json.loads(out)["alert"]
    assert alert["kind"] == "below_band" and alert["step"] == 1600 and alert["since_step"] == 1600
    code, out, _ = run(watch(tmp_path, reference, "--fail-on-alert"), capsys)
    assert code == EXIT_CHECK_FAILED and "ALERT:" in out


def test_a_run_inside_the_band_with_one_low_eval_stays_quiet(tmp_path, reference, capsys):
    values = {step: curve(step) + 0.002 for step in STEPS}
    values[1000] = 0.0  # one bad eval is noise, not a trend
    live_log(tmp_path, values, end="done")
    code, out, _ = run(watch(tmp_path, reference, "--fail-on-alert", "--json"), capsys)
    summary = json.loads(out)
    assert code == EXIT_OK and summary["alert"] is None
    assert summary["training"]["reference"]["judged_evals"] == len(STEPS)
    assert summary["training"]["reference"]["below_streak"] == 0


def test_follow_with_fail_on_alert_exits_at_the_first_alert(tmp_path, reference, capsys):
    live_log(tmp_path, {step: 0.0 for step in STEPS[:5]})  # running: no end record
    code, out, _ = run(watch(tmp_path, reference, "--follow", "--interval", "0.01", "--count", "50",
                             "--fail-on-alert"), capsys)
    assert code == EXIT_CHECK_FAILED and out.count("training  ") == 1 and "ALERT:" in out
    live_log(tmp_path, {step: curve(step) for step in STEPS[:5]})
    code, out, _ = run(watch(tmp_path, reference, "--follow", "--interval", "0.01", "--count", "3",
                             "--fail-on-alert"), capsys)
    assert code == EXIT_OK and out.count("training  ") == 3 and "ALERT:" not in out


def test_a_non_finite_loss_alerts(tmp_path, capsys):
    values = {step: 0.1 for step in STEPS[:10]}
    live_log(tmp_path, values, skips={300: 60})  # 60 of the interval's 100 updates skipped
    code, out, _ = run([tmp_path, "--crawl-progress", tmp_path / "none.json", "--fail-on-alert"], capsys)
    assert code == EXIT_CHECK_FAILED and "ALERT: non-finite loss: 60 update(s) skipped" in out
    assert non_finite_alert([(100, 1, 100), (200, 0, 100), (300, 2, 100), (400, 1, 100), (500, 1, 100)], 3)["step"] == 500
    assert non_finite_alert([(100, 1, 100), (200, 0, 100), (2000, 1, 100)], 3) is None  # fp16's occasional skip
    live_log(tmp_path, values, end="failed")
    code, out, _ = run([tmp_path, "--crawl-progress", tmp_path / "none.json", "--fail-on-alert"], capsys)
    assert code == EXIT_CHECK_FAILED and "ALERT: the run ended with status failed" in out


def test_a_reference_of_another_preset_or_corpus_is_refused(tmp_path, reference, capsys):
    live_log(tmp_path, {100: curve(100)}, preset="quick_plateau")
    for follow in ([], ["--follow", "--interval", "0.01", "--count", "5"]):
        code, out, err = run(watch(tmp_path, reference, *follow), capsys)
        assert code == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1
        assert "analysis_100k_result.json" in err and "quick_plateau" in err
    live_log(tmp_path, {100: curve(100)})
    write_history(tmp_path / HISTORY_NAME, reference_history(corpus_sha="b" * 64))
    code, _, err = run(watch(tmp_path, reference), capsys)
    assert code == EXIT_BAD_INPUT and "another corpus" in err and err.count("\n") == 1


def test_a_reference_that_cannot_serve_is_one_line(tmp_path, reference, capsys):
    live_log(tmp_path, {100: 0.1})
    for given, needle in ((tmp_path / "missing.json", "no such file"), (tmp_path, "has no analysis_100k_result.json")):
        code, _, err = run(watch(tmp_path, given), capsys)
        assert code == EXIT_BAD_INPUT and needle in err and err.count("\n") == 1
    other = tmp_path / "training_mlm.json"
    analysis = json.loads((reference / "analysis_100k_result.json").read_text())
    other.write_text(json.dumps({**analysis, "chart_data": {**analysis["chart_data"], "metric": "mlm_acc"}}))
    code, _, err = run(watch(tmp_path, other), capsys)
    assert code == EXIT_BAD_INPUT and "not held-out [MASK] accuracy" in err


def test_the_committed_seeds_stay_inside_the_committed_reference_and_a_flat_run_does_not():
    """Real data: the three cpu_study seeds (results/seeds_summary.json) against the committed analysis."""
    from bertstudy.analysis.reference import judge

    ref = load_reference("results/analysis_100k_result.json")
    bands = json.loads(open("results/seeds_summary.json", encoding="utf-8").read())["bands"]["eval_mask_acc"]
    for values in bands["runs"].values():
        assert judge(ref, bands["steps"], values, 3)["alert"] is None
    flat = judge(ref, bands["steps"], [0.0] * len(bands["steps"]), 3)["alert"]
    assert flat is not None and flat["step"] <= 50  # within a few evals of the first ones


# ---------------------------------------------------------------- a finished or interrupted run

def test_a_finished_run_shows_its_average_speed_and_follow_stops(tmp_path, capsys):
    # 1 step/s for 500 steps, then 2 steps/s: the last points' rate is 2, the run's average 1000/750
    records = [{"kind": "start", "time": T0, "total_steps": 1000, "preset": "quick", "resumed_from": None}]
    records += [{"kind": "train", "step": s, "mlm_acc": 0.1, "nsp_acc": 0.5, "loss": 5.0, "lr": 1e-3,
                 "time": T0 + (s if s <= 500 else 500 + (s - 500) / 2)} for s in range(100, 1001, 100)]
    records.append({"kind": "end", "step": 1000, "time": T0 + 750, "status": "done"})
    (tmp_path / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    run_ = monitor.collect_progress(monitor.MonitorConfig(crawl_progress=tmp_path / "x.json", run_dir=tmp_path,
                                                          rate_window=3))["training"]
    assert run_["steps_per_s"] == pytest.approx(1000 / 750)
    code, out, _ = run([tmp_path, "--crawl-progress", tmp_path / "x.json", "--follow", "--interval", "0.01",
                        "--count", "100"], capsys)
    assert code == EXIT_OK and out.count("training  ") == 1  # one look: nothing more will be written
    assert "1.33 steps/s" in out and "average over the run" in out


def test_an_interrupted_run_shows_the_step_of_its_checkpoint(tmp_path, capsys):
    records = [{"kind": "start", "time": T0, "total_steps": 1000, "preset": "quick", "resumed_from": None},
               {"kind": "train", "step": 90, "mlm_acc": 0.1, "nsp_acc": 0.5, "loss": 5.0, "lr": 1e-3, "time": T0 + 90},
               {"kind": "checkpoint", "step": 96, "path": "x", "time": T0 + 97},
               {"kind": "end", "step": 96, "time": T0 + 98, "status": "interrupted"}]
    (tmp_path / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, _ = run([tmp_path, "--crawl-progress", tmp_path / "x.json"], capsys)
    assert code == EXIT_OK and "96 / 1,000" in out and "(interrupted" in out


# ---------------------------------------------------------------- end to end, on tiny runs

def pair_corpus(path):
    """Sentences of 2-character words from 10 fixed ones: held-out [MASK] accuracy climbs from ~0.1 to ~0.7 in
    300 tiny steps on the quick recipe (each seed alike), so a run that does not learn shows within a few evals."""
    import random

    from bertstudy.corpus.corpus_io import Document, write_documents
    from tests.train_helpers import CHARS

    rng = random.Random(0)
    words = [CHARS[2 * i:2 * i + 2] for i in range(10)]
    write_documents(path, [Document(id=f"d{d}", title="t", source="test", domain="test",
                                    sentences=["".join(rng.choice(words) for _ in range(rng.randint(2, 4)))
                                               for _ in range(4)]) for d in range(60)])
    return path


@pytest.mark.slow
def test_a_broken_tiny_run_alerts_and_a_healthy_one_stays_quiet(tmp_path, capsys):
    """A healthy run's analysis as the reference; another seed of the same recipe stays quiet under
    --follow --fail-on-alert, and the same run at lr 1e-12 (it learns nothing) exits 1 within a few evals."""
    import train_large_100k
    from tests.train_helpers import tiny_args

    corpus = pair_corpus(tmp_path / "corpus.jsonl")

    def train(name, lr, seed):
        args = tiny_args(corpus, tmp_path / name, tmp_path / "cache", preset="quick", steps=300, lr=lr, seed=seed,
                         log_interval=10, eval_interval=20, eval_instances=128, warmup_steps=2, batch_size=16,
                         grad_accum=1, hidden_size=64, intermediate_size=128, save_interval=1000)
        assert train_large_100k.main(args) == EXIT_OK
        return tmp_path / name

    reference = train("reference", "3e-3", 0)
    assert analyze_100k.main([str(reference / HISTORY_NAME), "--quiet"]) == EXIT_OK
    capsys.readouterr()
    for name, lr, expected in (("healthy", "3e-3", EXIT_OK), ("broken", "1e-12", EXIT_CHECK_FAILED)):
        folder = train(name, lr, 1)
        capsys.readouterr()
        code, out, _ = run(watch(folder, reference, "--follow", "--interval", "0.01", "--count", "5",
                                 "--fail-on-alert", "--json"), capsys)
        summary = json.loads(out.splitlines()[-1])
        assert code == expected, (name, summary["training"]["reference"], summary["alert"])
        if name == "broken":
            assert summary["alert"]["kind"] == "below_band" and summary["alert"]["step"] <= 240  # of 300


def test_a_finished_history_without_a_log_shows_its_average_speed(tmp_path):
    history = new_history({"preset": "quick", "total_steps": 300, "started_at": T0, "finished_at": T0 + 200})
    for step, elapsed in ((100, 100.0), (200, 150.0), (300, 200.0)):  # 1 step/s, then 2: 300 steps in 200 s
        add_train_point(history, {"step": step, "mlm_acc": 0.1, "nsp_acc": 0.5, "loss": 5.0, "mlm_loss": 4.5,
                                  "nsp_loss": 0.5, "lr": 1e-3, "tokens_per_s": 900.0, "elapsed_s": elapsed})
    write_history(tmp_path / HISTORY_NAME, history)
    run_ = monitor.collect_progress(monitor.MonitorConfig(crawl_progress=tmp_path / "x.json", run_dir=tmp_path,
                                                          rate_window=1))["training"]
    assert run_["status"] == "done" and run_["steps_per_s"] == pytest.approx(1.5)  # not the last points' 2
