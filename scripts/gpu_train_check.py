"""Helper of scripts/gpu_check.sh.

    gpu_train_check.py --out train.json -- TRAIN_ARGS...   run train_large_100k.py in this process and
        write its figures: steps/s, tokens/s, peak CUDA memory, MFU, data wait, the chosen micro-batch;
    gpu_train_check.py --summarize DIR                      gather DIR's step statuses, CUDA test counts,
        train.json and bench.json into DIR/gpu_check.json (exit 1 if anything failed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

H100_BF16_DENSE_TFLOPS = 989.0  # the MFU denominator, as bench/throughput.py's CUDA default


def train_figures(out: Path, train_args: list[str]) -> int:
    import torch

    import train_large_100k
    from bertstudy.base.atomic_io import atomic_write_json, read_json
    from bertstudy.model import BertConfig, BertForPretraining, training_flops_per_token

    started = time.monotonic()
    code = train_large_100k.main(train_args)
    wall = time.monotonic() - started
    out_dir = Path(train_args[train_args.index("--out-dir") + 1])
    history = read_json(out_dir / "training_history_100k.json")
    resolved = read_json(out_dir / "resolved_config.json")
    model = BertForPretraining(BertConfig(**resolved["model"]))
    tokens_per_s = history["tokens_per_s"][-1]  # the last log interval: compile and warm-up are behind it
    flops = training_flops_per_token(model, resolved["max_seq_len"])
    figures = {
        "exit_code": code, "wall_s": wall, "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "steps": history["steps"][-1], "batch_size": resolved["batch_size"], "grad_accum": resolved["grad_accum"],
        "global_batch": history["meta"]["global_batch"], "amp": resolved["amp"],
        "tokens_per_s_last_interval": tokens_per_s,
        "steps_per_s_last_interval": (history["steps"][-1] - history["steps"][-2]) / max(
            history["elapsed_s"][-1] - history["elapsed_s"][-2], 1e-9),
        "data_wait_s": history["data_wait_s"], "peak_memory_mb": torch.cuda.max_memory_allocated(0) / 2**20,
        "mfu_last_interval": tokens_per_s * flops / (H100_BF16_DENSE_TFLOPS * 1e12),
        "mfu_peak_tflops": H100_BF16_DENSE_TFLOPS, "final_loss": history["loss"][-1],
        "eval_mlm_acc": history["eval_mlm_acc"][-1],
    }
    atomic_write_json(out, figures)
    print(json.dumps(figures, indent=1))
    return code


def summarize(folder: Path) -> int:
    import torch

    from bertstudy.base.atomic_io import atomic_write_json

    summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "steps": {p.stem: int(p.read_text().strip()) for p in sorted(folder.glob("*.status"))}}
    junit = folder / "cuda_tests.xml"
    if junit.exists():
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        summary["cuda_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    for name in ("train", "bench"):
        path = folder / f"{name}.json"
        summary[name] = json.loads(path.read_text()) if path.exists() else None
    tests = summary.get("cuda_tests", {})
    summary["passed"] = (all(v == 0 for v in summary["steps"].values()) and bool(tests.get("tests"))
                         and not tests.get("failures") and not tests.get("errors"))
    atomic_write_json(folder / "gpu_check.json", summary)
    print(f"gpu_check: {'passed' if summary['passed'] else 'FAILED'}; figures in {folder / 'gpu_check.json'}")
    return 0 if summary["passed"] else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="gpu_train_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="train figures JSON (with -- TRAIN_ARGS)")
    parser.add_argument("--summarize", type=Path, help="folder of a gpu_check.sh run")
    args = parser.parse_args(own)
    if args.summarize:
        return summarize(args.summarize)
    if not args.out or not train_args:
        parser.error("give --out FILE -- TRAIN_ARGS, or --summarize DIR")
    return train_figures(args.out, train_args)


if __name__ == "__main__":
    sys.exit(main())
