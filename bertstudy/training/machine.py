"""What this machine can give a run, decided at its start: CPU threads from the cores free now, and an
early estimate of the run's length on a CPU (with a preset sized for it).

Threads: torch's default is one thread per core, which on cores that other jobs also use makes the
threads wait on each other at every matmul (docs/PERFORMANCE.md has the measured cost).
Unless --threads is given, a run takes the cores free at its start: the cores it may use minus the
cores other work keeps busy (rounded), at least 1, shared among the processes of a torchrun. "Busy"
is measured now, from /proc/stat over a fraction of a second, not the last minute's load average:
`make quickstart` starts training seconds after collecting and verifying the corpus, whose work
would still count in the load average and halve the threads on an idle machine.

Estimate: after the first few steps on a CPU, a run long enough to matter (over an hour) says how long
it will take, and a preset sized for the GPU (large_100k) is told the CPU presets. The same early
steps go to the log as `speed` records so check_progress.py has an ETA before the first log point.
"""

from __future__ import annotations

import os
import sys
import time

EARLY_STEPS = (5, 20, 50)  # steps after the start at which the speed is logged (the estimate at the first)
LONG_RUN_S = 3600.0  # a shorter projected run on a CPU says nothing
CPU_PRESETS = ("quick", "cpu_study", "cpu_100k")  # shortest first; docs/PRESETS.md gives their measured times


def free_cores(cores: int, load: float | None) -> int:
    """Cores not busy with other work: cores minus the rounded load average, at least 1."""
    if load is None or load != load or load < 0:
        return max(1, cores)
    return max(1, min(cores, cores - int(load + 0.5)))


def default_threads(cores: int, load: float | None, processes: int = 1,
                    seen_as: str = "load average {:.2f} over the last minute") -> tuple[int, str]:
    """(threads per process, why) for a run that did not give --threads; `load` is the cores other
    work keeps busy (`seen_as` says how it was measured)."""
    free = free_cores(cores, load)
    threads = max(1, free // max(1, processes))
    seen = "load unknown" if load is None else seen_as.format(load)
    share = f", shared by {processes} processes" if processes > 1 else ""
    return threads, (f"threads: {threads} ({cores} core(s), {seen}: {free} free{share}; "
                     f"--threads N sets it, --threads 0 is torch's one per core)")


def machine_threads(processes: int = 1) -> tuple[int, str]:
    """default_threads for this machine now: the cores this process may run on and the load average."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    busy = busy_cores_now()
    if busy is not None:
        return default_threads(cores, busy, processes, "{:.2f} core(s) busy with other work now")
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return default_threads(cores, load, processes)


def _cpu_times(path: str) -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from /proc/stat's first line (iowait counts as idle)."""
    with open(path, encoding="ascii") as handle:
        fields = [int(v) for v in handle.readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)


def busy_cores_now(window_s: float = 0.3, path: str = "/proc/stat", sleep=time.sleep) -> float | None:
    """Cores other work keeps busy now: the non-idle share of the CPU time over `window_s` (this process
    sleeps meanwhile), times the machine's cores; None where /proc/stat cannot be read."""
    try:
        idle0, total0 = _cpu_times(path)
        sleep(window_s)
        idle1, total1 = _cpu_times(path)
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def _rough(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def start_estimate(steps_done: int, seconds: float, total_steps: int, device_type: str, preset: str) -> str | None:
    """The note a CPU run prints after its first steps: `steps_done` steps took `seconds`, the session runs
    `total_steps` in all. None on a GPU, before any step, or when the whole run takes under LONG_RUN_S."""
    if device_type != "cpu" or steps_done <= 0 or seconds <= 0 or total_steps <= steps_done:
        return None
    projected = seconds / steps_done * total_steps
    if projected < LONG_RUN_S:
        return None
    note = (f"estimate: {steps_done} steps took {_rough(seconds)}, so the {total_steps:,} steps of this run "
            f"take about {_rough(projected)} on this CPU")
    if preset in CPU_PRESETS:
        return note + "; Ctrl-C stops it with a checkpoint (continue later with --resume)"
    sized = ", ".join(f"--preset {name}" for name in CPU_PRESETS)
    return (note + f"; preset {preset} is sized for a GPU. On a CPU try {sized} (docs/PRESETS.md gives their times), "
                   "or fewer --steps; Ctrl-C stops it with a checkpoint")


class EarlySpeed:
    """The step loop's early report: call `after_step(step)` after each step (rank 0; cheap). At the
    EARLY_STEPS after the start it logs a `speed` record and, at the first, prints start_estimate's note."""

    def __init__(self, log, start_step: int, total_steps: int, device_type: str, preset: str, clock=None):
        import time

        self.clock = clock or time.monotonic
        self.log, self.start_step, self.total_steps = log, start_step, total_steps
        self.device_type, self.preset = device_type, preset
        self.started = self.clock()

    def after_step(self, step: int) -> str | None:
        done = step - self.start_step
        if self.log is None or done not in EARLY_STEPS:
            return None
        seconds = self.clock() - self.started
        self.log.write("speed", step=step, steps_per_s=done / max(seconds, 1e-9))
        note = start_estimate(done, seconds, self.total_steps - self.start_step, self.device_type, self.preset) \
            if done == EARLY_STEPS[0] else None
        if note:
            from tqdm import tqdm

            tqdm.write(note, file=sys.stderr)  # above the progress bar, not through it
        return note


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("cpu" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def machine_identity(device) -> dict:
    """What a run's numbers depend on beyond its config: the same code and seed on another CPU (other vector
    instructions, so other rounding) trains to a different end point (results/cpu_study_seeds/README.md).
    Recorded in the history's meta and in every start record of the log."""
    import torch

    identity = {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads()}
    if getattr(device, "type", None) == "cuda":
        identity["gpu"] = torch.cuda.get_device_name(device)
    return identity
