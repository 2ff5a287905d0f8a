"""Helper of scripts/gpu_check.sh (one mode per call):

    gpu_train_check.py --c-compiler                 a C compiler for Triton (torch.compile's kernels): found,
        or installed with apt-get when running as root; exit 1 when there is none;
    gpu_train_check.py --out F.json [--count-syncs] [--memory-cap-gb G] -- TRAIN_ARGS...
        run train_large_100k.py in this process and write its figures: tokens/s and steps/s of the last
        log interval, MFU against the found GPU's dense bf16 peak (device.GPU_PEAK_TFLOPS), peak reserved
        memory and the CUDA context, the split the run used, skipped updates, and with --count-syncs the
        host-device syncs inside the steps (torch.cuda.set_sync_debug_mode); --memory-cap-gb caps this
        process's share of the GPU (set_per_process_memory_fraction) as a smaller card would;
    gpu_train_check.py --parity F.json -- TRAIN_ARGS...   the same run with --amp (bf16) and --no-amp
        (fp32, TF32 matmuls): the largest relative difference of their training losses;
    gpu_train_check.py --out F.json --expect-refusal -- TRAIN_ARGS...   the run must be refused in one line
        (exit 2) before any work: a CUDA-graph compile mode with accumulation;
    gpu_train_check.py --out F.json --through-overflow -- TRAIN_ARGS...   the run (one micro-batch per step)
        trains through the first step that would need a second micro-batch of one shape planned from steps
        0-31 (found from the loader's shapes, not by luck: --steps is set to it + 1);
    gpu_train_check.py --summarize DIR [--final]     gather the parts' statuses and JSON files into
        DIR/gpu_check.json (run after every part; --final: exit 1 if anything failed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PART_FILES = ("train", "memory_8gb", "parity", "fp16", "bench", "compile", "compiler", "cuda_graph_refusal",
              "cuda_graph_overflow")
OVERFLOW_SEARCH_STEPS = 1000  # steps searched for the sampled shape's first overflow (about 1-2% of steps overflow)


def c_compiler() -> int:
    """Triton needs a C compiler at its first compile; a bare machine may have none."""
    found = next((shutil.which(name) for name in ("cc", "gcc", "clang") if shutil.which(name)), None)
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "gcc"], check=False, timeout=25,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        found = shutil.which("gcc")
    Path("runs/gpu_check").mkdir(parents=True, exist_ok=True)
    Path("runs/gpu_check/compiler.json").write_text(json.dumps({"c_compiler": found}), encoding="utf-8")
    print(f"C compiler: {found or 'none (torch.compile will fail; install gcc)'}")
    return 0 if found else 1


def _count_step_syncs():
    """Wrap Trainer.train_step so that CUDA's sync debug mode warns inside the steps only; returns the
    list the warnings land in (one per host-device synchronization)."""
    import torch

    from bertstudy.training import trainer as trainer_module

    caught: list[str] = []
    real = trainer_module.Trainer.train_step

    def counted(self, *args, **kwargs):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return real(self, *args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
                caught.extend(str(w.message) for w in seen if "synchroniz" in str(w.message))

    trainer_module.Trainer.train_step = counted
    return caught


def interval_flops(out_dir: Path) -> dict:
    """The FLOPs of the run's last log interval from its own batches (rebuilt: a pure function of seed and
    step), real tokens and what the micro-batch grid computed (training/flops.py), per step."""
    from dataclasses import fields

    import torch

    from bertstudy.base.atomic_io import read_json
    from bertstudy.model import BertConfig
    from bertstudy.pretraining.loader import step_micro_batches
    from bertstudy.training.config import TrainConfig
    from bertstudy.training.device import Distributed
    from bertstudy.training.flops import step_flops
    from bertstudy.training.run_data import prepare_data, step_shape

    history = read_json(out_dir / "training_history_100k.json")
    resolved = read_json(out_dir / "resolved_config.json")
    config = TrainConfig(**{f.name: resolved[f.name] for f in fields(TrainConfig) if f.name in resolved})
    data = prepare_data(config, Distributed(device=torch.device("cpu")))
    shape = step_shape(config, data.train_sampler, 0)
    first = history["steps"][-2] if len(history["steps"]) > 1 else 0  # 0-based steps first..last-1
    steps = range(first, history["steps"][-1])
    batches = [b for s in steps for b in step_micro_batches(data.train_sampler, config.seed, s, 0, config.batch_size,
                                                            config.grad_accum, shape)]
    totals = step_flops(BertConfig(**resolved["model"]), batches)
    return {"steps": len(steps), "tokens": totals["tokens"], "tflop_per_step": totals["flops"] / len(steps) / 1e12,
            "computed_tflop_per_step": totals["computed_flops"] / len(steps) / 1e12,
            "flops_per_token": totals["flops"] / max(totals["tokens"], 1)}


def _run_figures(out_dir: Path, code: int, wall: float) -> dict:
    import torch

    from bertstudy.base.atomic_io import read_json
    from bertstudy.training.device import gpu_peak_tflops

    history = read_json(out_dir / "training_history_100k.json")
    resolved = read_json(out_dir / "resolved_config.json")
    flops = interval_flops(out_dir)
    name = torch.cuda.get_device_name(0)
    peak = gpu_peak_tflops(name)
    tokens_per_s = history["tokens_per_s"][-1]  # the last log interval: compile and warm-up are behind it
    free, total = torch.cuda.mem_get_info(0)
    reserved = torch.cuda.memory_reserved(0)
    return {
        "exit_code": code, "wall_s": wall, "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "steps": history["steps"][-1], "batch_size": resolved["batch_size"], "grad_accum": resolved["grad_accum"],
        "global_batch": history["meta"]["global_batch"], "amp": resolved["amp"], "compile": resolved["compile"],
        "tokens_per_s_last_interval": tokens_per_s,
        "steps_per_s_last_interval": (history["steps"][-1] - history["steps"][-2]) / max(
            history["elapsed_s"][-1] - history["elapsed_s"][-2], 1e-9) if len(history["steps"]) > 1 else None,
        "mfu_last_interval": tokens_per_s * flops["flops_per_token"] / (peak * 1e12) if peak else None,
        "flops_last_interval": flops,  # from the interval's real tokens (FLOPs per real token x tokens/s: MFU)
        "mfu_peak_tflops": peak, "data_wait_s": history.get("data_wait_s"),
        "skipped_steps": sum(history.get("skipped_steps", [])), "final_loss": history["loss"][-1],
        "eval_mlm_acc": history["eval_mlm_acc"][-1] if history["eval_mlm_acc"] else None,
        "peak_allocated_mb": torch.cuda.max_memory_allocated(0) / 2**20,
        "peak_reserved_mb": torch.cuda.max_memory_reserved(0) / 2**20,
        "context_mb": (total - free - reserved) / 2**20,  # what the process holds beyond the allocator's pool
        "total_memory_mb": total / 2**20,
    }


def train_figures(out: Path, train_args: list[str], count_syncs: bool, memory_cap_gb: float | None) -> int:
    import torch

    import train_large_100k
    from bertstudy.base.atomic_io import atomic_write_json

    if memory_cap_gb:
        _, total = torch.cuda.mem_get_info(0)
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_cap_gb * 2**30 / total), 0)
    syncs = _count_step_syncs() if count_syncs else None
    started = time.monotonic()
    code = train_large_100k.main(train_args)
    figures = _run_figures(Path(train_args[train_args.index("--out-dir") + 1]), code, time.monotonic() - started)
    figures["memory_cap_gb"] = memory_cap_gb
    if figures["compile"]:  # one graph for every row count (rows dynamic); a CUDA-graph mode: one per row bucket
        from torch._dynamo.utils import counters

        figures["compiled_graphs"] = counters["stats"]["unique_graphs"]
    if syncs is not None:
        figures["syncs_in_steps"] = len(syncs)
        figures["syncs_per_step"] = len(syncs) / max(figures["steps"], 1)
        figures["sync_examples"] = sorted(set(syncs))[:5]
    atomic_write_json(out, figures)
    print(json.dumps(figures, indent=1))
    return code


def expect_refusal(out: Path, train_args: list[str]) -> int:
    """Pass when train_large_100k.py refuses the command line in one stderr line with exit 2."""
    from bertstudy.base.atomic_io import atomic_write_json

    done = subprocess.run([sys.executable, "train_large_100k.py", *train_args], cwd=ROOT, capture_output=True,
                          text=True)
    lines = done.stderr.strip().splitlines()
    out_dir = Path(train_args[train_args.index("--out-dir") + 1])
    result = {"exit_code": done.returncode, "stderr": lines, "out_dir_created": out_dir.exists(),
              "passed": done.returncode == 2 and len(lines) == 1 and "(CUDA graphs)" in lines[0] and not out_dir.exists()}
    atomic_write_json(out, result)
    print(json.dumps(result, indent=1))
    return 0 if result["passed"] else 1


def first_sampled_overflow(train_args: list[str]) -> dict:
    """One shape planned from this run's first 32 steps (the plan row buckets replaced), and the first step
    that would overflow it: the step a CUDA-graph run has to pass without a second micro-batch."""
    import torch

    import train_large_100k
    from bertstudy.pretraining.loader import first_overflow_step, plan_step_shape
    from bertstudy.training.config import config_from_args
    from bertstudy.training.device import Distributed
    from bertstudy.training.run_data import prepare_data

    config = config_from_args(train_large_100k.build_parser().parse_args(train_args))
    sampler = prepare_data(config, Distributed(device=torch.device("cpu"))).train_sampler
    shape = plan_step_shape(sampler, config.seed, 0, config.batch_size, config.grad_accum)
    step = first_overflow_step(sampler, config.seed, 0, config.batch_size, shape, 0, OVERFLOW_SEARCH_STEPS)
    return {"sampled_shape": [shape.rows, shape.mlm_slots, shape.nsp_slots], "first_overflow_step": step}


def through_overflow(out: Path, train_args: list[str]) -> int:
    """Train (one micro-batch per step) up to and including the sampled shape's first overflow step."""
    from bertstudy.base.atomic_io import atomic_write_json

    found = first_sampled_overflow(train_args)
    if found["first_overflow_step"] is None:
        print(f"no overflow step in {OVERFLOW_SEARCH_STEPS} steps of the sampled shape; nothing to check", file=sys.stderr)
        atomic_write_json(out, {**found, "passed": False})
        return 1
    code = train_figures(out, [*train_args, "--steps", str(found["first_overflow_step"] + 1)], False, None)
    figures = {**json.loads(out.read_text(encoding="utf-8")), **found}
    figures["passed"] = code == 0 and figures["steps"] == found["first_overflow_step"] + 1
    atomic_write_json(out, figures)
    print(json.dumps(found))
    return 0 if figures["passed"] else 1


def parity(out: Path, train_args: list[str]) -> int:
    """bf16 autocast against fp32 on the same batches: the loss curves must agree closely."""
    from bertstudy.base.atomic_io import atomic_write_json, read_json

    where = train_args.index("--out-dir") + 1
    base, losses, codes = Path(train_args[where]), {}, {}
    for name, flag in (("bf16", "--amp"), ("fp32", "--no-amp")):
        args = list(train_args)
        args[where] = str(base / name)
        codes[name] = subprocess.run([sys.executable, "train_large_100k.py", *args, flag], cwd=ROOT).returncode
        if codes[name] == 0:
            losses[name] = read_json(base / name / "training_history_100k.json")["loss"]
    worst = max((abs(a - b) / abs(b) for a, b in zip(losses.get("bf16", []), losses.get("fp32", []))), default=None)
    result = {"exit_codes": codes, "losses": losses, "max_relative_difference": worst,
              "passed": worst is not None and worst < 0.02}
    atomic_write_json(out, result)
    print(json.dumps(result, indent=1))
    return 0 if result["passed"] else 1


def summarize(folder: Path, final: bool) -> int:
    """DIR/gpu_check.json from whatever parts are done (no torch import: it runs after every part)."""
    from bertstudy.base.atomic_io import atomic_write_json

    parts = {}
    for path in sorted(folder.glob("*.status")):
        status, _, seconds = path.read_text().strip().partition(" ")
        parts[path.stem] = {"exit": int(status), "seconds": int(seconds) if seconds else None}
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "parts": parts}
    junit = folder / "cuda_tests.xml"
    if junit.exists():
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        summary["cuda_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    for name in PART_FILES:
        path = folder / f"{name}.json"
        summary[name] = json.loads(path.read_text()) if path.exists() else None
    summary["device"] = next((summary[n]["device"] for n in ("train", "fp16", "compile") if summary.get(n)), None)
    tests = summary.get("cuda_tests", {})
    summary["passed"] = (bool(parts) and all(p["exit"] == 0 for p in parts.values()) and bool(tests.get("tests"))
                         and not tests.get("failures") and not tests.get("errors"))
    atomic_write_json(folder / "gpu_check.json", summary)
    print(f"gpu_check: {'passed' if summary['passed'] else 'FAILED'}; figures in {folder / 'gpu_check.json'}")
    return 0 if summary["passed"] or not final else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="gpu_train_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--c-compiler", action="store_true", help="find (or install) a C compiler for Triton")
    parser.add_argument("--out", type=Path, help="train figures JSON (with -- TRAIN_ARGS)")
    parser.add_argument("--count-syncs", action="store_true", help="count host-device syncs inside the steps")
    parser.add_argument("--memory-cap-gb", type=float, help="cap this process's GPU memory (a smaller card)")
    parser.add_argument("--parity", type=Path, help="bf16 vs fp32 parity JSON (with -- TRAIN_ARGS)")
    parser.add_argument("--expect-refusal", action="store_true", help="with --out: the run must be refused (exit 2)")
    parser.add_argument("--through-overflow", action="store_true",
                        help="with --out: train through the sampled fixed shape's first overflow step")
    parser.add_argument("--summarize", type=Path, help="folder of a gpu_check.sh run")
    parser.add_argument("--final", action="store_true", help="with --summarize: exit 1 if a part failed")
    args = parser.parse_args(own)
    if args.c_compiler:
        return c_compiler()
    if args.summarize:
        return summarize(args.summarize, args.final)
    if args.parity and train_args:
        return parity(args.parity, train_args)
    if not args.out or not train_args:
        parser.error("give --c-compiler, --out FILE -- TRAIN_ARGS, --parity FILE -- TRAIN_ARGS or --summarize DIR")
    if args.expect_refusal:
        return expect_refusal(args.out, train_args)
    if args.through_overflow:
        return through_overflow(args.out, train_args)
    return train_figures(args.out, train_args, args.count_syncs, args.memory_cap_gb)


if __name__ == "__main__":
    sys.exit(main())
