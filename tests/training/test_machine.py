"""The default thread count from the cores free at the start, and a CPU run's early
estimate with the CPU presets (training/machine.py)."""

from __future__ import annotations

import pytest

import train_large_100k
from bertstudy.training import machine, run_start
from bertstudy.training.device import Distributed
from bertstudy.training.config import PRESETS


@pytest.mark.parametrize("cores, load, processes, expected", [
    (2, 0.05, 1, 2),  # idle: one thread per core
    (2, 1.0, 1, 1),  # another job on one core
    (2, 2.6, 1, 1),  # busier than the machine: still one
    (16, 3.4, 1, 13),
    (16, 3.4, 4, 3),  # torchrun: the free cores shared by its processes
    (4, None, 1, 4),  # no load average (not Linux): every core
])
def test_default_threads_are_the_free_cores(cores, load, processes, expected):
    threads, why = machine.default_threads(cores, load, processes)
    assert threads == expected
    assert why.startswith(f"threads: {expected} ({cores} core(s)") and "--threads N" in why


def test_the_chosen_threads_are_said_at_the_start_and_an_explicit_value_wins(capsys, monkeypatch):
    monkeypatch.setattr(machine, "machine_threads", lambda processes=1: (1, "threads: 1 (2 core(s), ...)"))
    monkeypatch.setattr(run_start, "machine_threads", machine.machine_threads)
    args = train_large_100k.build_parser().parse_args(["--preset", "quick"])
    config = run_start.with_threads(train_large_100k.config_from_args(args), Distributed())
    assert config.threads == 1 and "threads: 1 (2 core(s)" in capsys.readouterr().err
    args = train_large_100k.build_parser().parse_args(["--preset", "quick", "--threads", "2"])
    assert run_start.with_threads(train_large_100k.config_from_args(args), Distributed()).threads == 2
    assert capsys.readouterr().err == ""


def test_a_long_cpu_run_gets_an_estimate_and_the_cpu_presets():
    # the case: large_100k on a CPU, 19 steps in 11 minutes
    note = machine.start_estimate(5, 175.0, 100_000, "cpu", "large_100k")
    assert "about 41 days" in note and "--preset quick" in note and "cpu_study" in note and "sized for a GPU" in note
    assert all(name in PRESETS for name in machine.CPU_PRESETS)
    # a CPU preset that runs long (cpu_100k, ~1 h+): the estimate, no preset advice
    note = machine.start_estimate(5, 1.0, 100_000, "cpu", "cpu_100k")
    assert "about 6 h" in note and "--preset" not in note
    assert machine.start_estimate(5, 0.75, 1200, "cpu", "quick") is None  # minutes: nothing to say
    assert machine.start_estimate(5, 175.0, 100_000, "cuda", "large_100k") is None  # a GPU run
    assert machine.start_estimate(0, 0.0, 100_000, "cpu", "large_100k") is None


class _Log:
    def __init__(self):
        self.records = []

    def write(self, kind, **fields):
        self.records.append({"kind": kind, **fields})


def test_early_speed_logs_the_first_steps_and_prints_the_estimate_once(capsys):
    now = [100.0]
    log = _Log()
    early = machine.EarlySpeed(log, 0, 100_000, "cpu", "large_100k", clock=lambda: now[0])
    notes = []
    for step in range(1, 101):
        now[0] += 35.0
        notes.append(early.after_step(step))
    assert [r["step"] for r in log.records] == [5, 20, 50] and all(r["kind"] == "speed" for r in log.records)
    assert log.records[0]["steps_per_s"] == pytest.approx(1 / 35)
    assert sum(n is not None for n in notes) == 1 and "estimate: 5 steps took" in capsys.readouterr().err
    resumed = machine.EarlySpeed(log, 300, 100_000, "cpu", "large_100k", clock=lambda: now[0])
    now[0] += 175.0
    assert resumed.after_step(304) is None and resumed.after_step(305) is not None  # counted from the resume
    assert machine.EarlySpeed(None, 0, 100_000, "cpu", "large_100k").after_step(5) is None  # not rank 0


def test_a_run_logs_its_early_speed_from_the_step_loop(tmp_path):
    """The step loop calls EarlySpeed: a real (tiny) run's log has `speed` records 5 and 20 steps in."""
    from bertstudy.base.atomic_io import iter_jsonl
    from tests.train_helpers import tiny_args, write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run"
    assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", steps=24)) == 0
    speeds = [r for _, r in iter_jsonl(out / "training_log_100k.jsonl") if r.get("kind") == "speed"]
    assert [r["step"] for r in speeds] == [5, 20] and all(r["steps_per_s"] > 0 for r in speeds)


def test_busy_cores_are_measured_now_not_over_the_last_minute(tmp_path):
    """make quickstart trains seconds after collecting the corpus: the minute's load average still
    counts that finished work, so the threads come from /proc/stat's CPU time over a short window."""
    import os

    stat = tmp_path / "stat"
    samples = iter([(1000, 100, 50, 800, 50), (1000, 100, 50, 1160, 90)])  # user nice system idle iowait

    def write_next(*_):
        user, nice, system, idle, iowait = next(samples)
        stat.write_text(f"cpu  {user} {nice} {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4\n")

    write_next()
    busy = machine.busy_cores_now(0.0, str(stat), sleep=write_next)
    assert busy == pytest.approx(0.0)  # 200 jiffies passed, all idle or iowait: nothing else runs
    threads, why = machine.default_threads(2, busy, 1, "{:.2f} core(s) busy with other work now")
    assert threads == 2 and "0.00 core(s) busy with other work now" in why
    samples = iter([(1000, 0, 0, 1000, 0), (1100, 0, 0, 1100, 0)])
    write_next()
    assert machine.busy_cores_now(0.0, str(stat), sleep=write_next) == pytest.approx(0.5 * (os.cpu_count() or 1))
    assert machine.busy_cores_now(0.0, str(tmp_path / "missing")) is None
