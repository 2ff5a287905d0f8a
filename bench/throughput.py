"""Training throughput of our BertForPretraining against transformers' BertForPreTraining
(attn_implementation="sdpa") built from the same config and the same weights.

Both models train on the same batch (full-length instances, no padding, 15% of positions masked),
in the same precision (bf16 autocast on CUDA, fp32 on CPU) with the same AdamW (fused where the
device has it), alternating model by model over the repeats after a warm-up. Reported per model:
tokens/s (median over repeats), step time, peak memory and MFU; and the ratio ours / theirs.

MFU = tokens/s x (6 x non-embedding parameters + 12 x layers x hidden x seq_len) / peak FLOP/s.
"""

from __future__ import annotations

import datetime
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/throughput.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bertstudy.atomic_io import atomic_write_json  # noqa: E402
from bertstudy.cli import make_parser, non_negative_int, positive_float, positive_int, run_main  # noqa: E402
from bertstudy.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, StudyError, UsageError  # noqa: E402

MASK_ID = 4  # [MASK] in the study's vocab.txt ([PAD] [UNK] [CLS] [SEP] [MASK] ...)
FIRST_CHAR_ID = 5  # first non-special id
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM dense bf16 peak (NVIDIA datasheet), the CUDA default


@dataclass
class BenchShape:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    seq_len: int
    batch: int


PRESETS = {
    # the study's model (train_config "large_100k"): BERT-base depth at width 512
    "large_100k": BenchShape(hidden_size=512, num_layers=12, num_heads=8, intermediate_size=2048, seq_len=128, batch=32),
    # train_config "quick": the shape of the few-minute CPU training run
    "quick": BenchShape(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, seq_len=64, batch=32),
    # for tests: a second or two per run on one CPU thread
    "tiny": BenchShape(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, seq_len=32, batch=4),
}
STEP_DEFAULTS = {"cuda": dict(warmup=10, steps=20, repeats=5), "cpu": dict(warmup=1, steps=3, repeats=3)}


# ------------------------------------------------------------------------------ building blocks
def make_batch(vocab_size: int, batch: int, seq_len: int, mask_rate: float, seed: int):
    """One fixed CPU batch: [CLS] A [SEP] B [SEP] shape, no padding, `mask_rate` of the non-special
    positions replaced by [MASK] with the original ids as labels, random NSP labels."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_CHAR_ID, vocab_size, (batch, seq_len), generator=gen)
    middle = seq_len // 2
    ids[:, 0], ids[:, middle - 1], ids[:, -1] = 2, 3, 3
    types = torch.zeros_like(ids)
    types[:, middle:] = 1
    labels = torch.full_like(ids, -100)
    candidates = torch.tensor([p for p in range(1, seq_len - 1) if p != middle - 1])
    per_row = max(1, round(mask_rate * seq_len))
    for row in range(batch):
        chosen = candidates[torch.randperm(len(candidates), generator=gen)[:per_row]]
        labels[row, chosen] = ids[row, chosen]
        ids[row, chosen] = MASK_ID
    nsp = torch.randint(0, 2, (batch,), generator=gen)
    return {"input_ids": ids, "token_type_ids": types, "mlm_labels": labels, "nsp_labels": nsp}


def build_models(shape: BenchShape, vocab_size: int, device, seed: int):
    """Our model and transformers' model with identical weights, both in train mode on `device`."""
    import torch
    import transformers

    from bertstudy.hf_export import to_transformers_state_dict, transformers_config
    from bertstudy.model import BertConfig, BertForPretraining

    config = BertConfig(vocab_size=vocab_size, hidden_size=shape.hidden_size, num_layers=shape.num_layers,
                        num_heads=shape.num_heads, intermediate_size=shape.intermediate_size,
                        max_position=max(shape.seq_len, 128))
    torch.manual_seed(seed)
    ours = BertForPretraining(config)
    hf_config = transformers.BertConfig(**{k: v for k, v in transformers_config(config).items()
                                           if k not in ("architectures", "model_type")})
    theirs = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    missing, unexpected = theirs.load_state_dict(to_transformers_state_dict(ours), strict=False)
    if unexpected or [k for k in missing if not k.startswith("cls.predictions.decoder")]:
        raise StudyError(f"weight mapping to transformers failed: missing {missing}, unexpected {unexpected}")
    theirs.tie_weights()
    return ours.to(device).train(), theirs.to(device).train(), config


def make_optimizer(model, device_type: str, fused: bool):
    """The same AdamW for both models: decay on matrices, none on biases/LayerNorm (BERT)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-6, fused=fused)


class PeakMemory:
    """Peak memory during a block: CUDA's max_memory_allocated, or on CPU the process RSS sampled
    every 2 ms by a thread (the CPU allocator has no peak counter)."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        import torch

        if self.device_type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self.peak_bytes = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak_bytes = max(self.peak_bytes, self._rss())

    def __exit__(self, *exc):
        import torch

        if self.device_type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self._rss())
        return False


def make_step(model, optimizer, is_ours: bool, device, use_bf16: bool, pinned_batch: dict):
    """One training step: copy the batch to the device (non_blocking from pinned memory), forward
    under the precision policy, backward, optimizer step. Returns the loss tensor (not synced)."""
    import torch

    def step():
        batch = {k: v.to(device, non_blocking=True) for k, v in pinned_batch.items()}
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if is_ours:  # attention_mask None: no padding, SDPA may take its flash/efficient kernel
                loss = model(batch["input_ids"], batch["token_type_ids"], None,
                             batch["mlm_labels"], batch["nsp_labels"]).loss
            else:
                loss = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                             labels=batch["mlm_labels"], next_sentence_label=batch["nsp_labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, device) -> float:
    """Seconds for `steps` steps; on CUDA timed with events around the queued work."""
    import torch

    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - began


# ------------------------------------------------------------------------------ the benchmark
def run_benchmark(preset: str, vocab_size: int, batch: int | None, steps: int | None, warmup: int | None,
                  repeats: int | None, device_name: str, peak_tflops: float | None, compile_models: bool,
                  tf32: bool, seed: int = 0) -> dict:
    import torch
    import transformers

    from bertstudy.model import training_flops_per_token

    if device_name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    device = torch.device("cuda" if device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available()) else "cpu")
    shape = PRESETS[preset]
    if batch is not None:
        shape = BenchShape(**{**asdict(shape), "batch": batch})
    if vocab_size <= FIRST_CHAR_ID:
        raise UsageError(f"--vocab-size must exceed the {FIRST_CHAR_ID} special tokens, got {vocab_size}")
    defaults = STEP_DEFAULTS[device.type]
    steps, warmup, repeats = (steps or defaults["steps"]), (defaults["warmup"] if warmup is None else warmup), (repeats or defaults["repeats"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32  # fp32 matmuls outside autocast (optimizer-free paths)
        torch.backends.cudnn.allow_tf32 = tf32
        peak_tflops = peak_tflops or H100_BF16_DENSE_TFLOPS
    use_bf16 = device.type == "cuda"
    fused = device.type == "cuda" or hasattr(torch._C, "_fused_adamw_")  # fused AdamW on CPU since torch 2.4

    ours, theirs, config = build_models(shape, vocab_size, device, seed)
    cpu_batch = make_batch(vocab_size, shape.batch, shape.seq_len, 0.15, seed)
    if device.type == "cuda":
        cpu_batch = {k: v.pin_memory() for k, v in cpu_batch.items()}
    flops_per_token = training_flops_per_token(ours, shape.seq_len)
    runners = {}
    for name, model, is_ours in (("ours", ours, True), ("transformers", theirs, False)):
        compiled = torch.compile(model) if compile_models else model
        optimizer = make_optimizer(model, device.type, fused)
        runners[name] = make_step(compiled, optimizer, is_ours, device, use_bf16, cpu_batch)

    first_loss = {name: float(step().detach()) for name, step in runners.items()}  # same weights: same loss
    for step in runners.values():
        for _ in range(warmup):
            step()
        synchronize(device)

    tokens_per_step = shape.batch * shape.seq_len
    seconds = {name: [] for name in runners}
    peaks = {name: 0 for name in runners}
    for repeat in range(repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))  # alternate who goes first
        for name in order:
            with PeakMemory(device.type) as memory:
                seconds[name].append(time_steps(runners[name], steps, device))
            peaks[name] = max(peaks[name], memory.peak_bytes)

    results = {}
    for name in runners:
        rates = [tokens_per_step * steps / s for s in seconds[name]]
        tokens_per_s = statistics.median(rates)
        results[name] = {
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_repeats": rates,
            "step_time_s": statistics.median(s / steps for s in seconds[name]),
            "peak_memory_mb": peaks[name] / 2**20,
            "mfu": tokens_per_s * flops_per_token / (peak_tflops * 1e12) if peak_tflops else None,
            "first_loss": first_loss[name],
        }
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers_version": transformers.__version__,
        "preset": preset,
        "shape": asdict(shape),
        "vocab_size": vocab_size,
        "precision": "bf16 autocast" if use_bf16 else "fp32",
        "tf32": bool(tf32 and device.type == "cuda"),
        "fused_adamw": fused,
        "compile": compile_models,
        "warmup": warmup,
        "steps": steps,
        "repeats": repeats,
        "mask_rate": 0.15,
        "parameters": ours.num_parameters(),
        "non_embedding_parameters": ours.num_parameters(non_embedding=True),
        "flops_per_token": flops_per_token,
        "mfu_formula": "tokens_per_s * (6 * non_embedding_parameters + 12 * layers * hidden * seq_len) / (peak_tflops * 1e12)",
        "peak_tflops": peak_tflops,
        "memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process RSS peak (both models resident)",
        "ours": results["ours"],
        "transformers": results["transformers"],
        "ratio_tokens_per_s": results["ours"]["tokens_per_s"] / results["transformers"]["tokens_per_s"],
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


# ------------------------------------------------------------------------------ command line
def build_parser():
    parser = make_parser(
        "bench/throughput.py",
        "Training tokens/s, step time, peak memory and MFU of our BERT vs transformers' BertForPreTraining (sdpa).",
        examples=[
            "python bench/throughput.py --preset quick --threads 2",
            "python bench/throughput.py --preset large_100k --device cuda --compile --out bench/throughput_result.json",
            "python bench/throughput.py --preset tiny --steps 2 --warmup 1 --repeats 1 --out /tmp/bench.json",
        ],
        exit_codes=[EXIT_OK, EXIT_USAGE, EXIT_RUNTIME],
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="large_100k", help="model and batch shape (default large_100k)")
    parser.add_argument("--vocab-size", type=positive_int, default=10000, help="vocabulary size (default 10000)")
    parser.add_argument("--batch", type=positive_int, default=None, help="micro-batch (default: the preset's, 32 for large_100k)")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed steps per repeat (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=non_negative_int, default=None, help="untimed steps per model first (default 10 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed repeats, medians reported (default 5 CUDA, 3 CPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto: CUDA when present")
    parser.add_argument("--peak-tflops", type=positive_float, default=None,
                        help=f"device peak for MFU (default {H100_BF16_DENSE_TFLOPS:g} on CUDA: H100 bf16; none on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models first")
    parser.add_argument("--no-tf32", dest="tf32", action="store_false", help="keep fp32 matmuls exact on CUDA")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="bench/throughput_result.json", help="result JSON, written atomically")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = run_benchmark(args.preset, args.vocab_size, args.batch, args.steps, args.warmup, args.repeats,
                               args.device, args.peak_tflops, args.compile, args.tf32)
        atomic_write_json(args.out, result)
        for name in ("ours", "transformers"):
            r = result[name]
            mfu = f"  MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
            print(f"{name:>12}: {r['tokens_per_s']:10.0f} tokens/s  step {1000 * r['step_time_s']:8.1f} ms  "
                  f"peak {r['peak_memory_mb']:8.0f} MB{mfu}")
        print(f"ours/transformers tokens/s: {result['ratio_tokens_per_s']:.2f}x  "
              f"({result['device_name']}, {result['precision']}, {result['preset']}) -> {args.out}")
        return EXIT_OK

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
