"""Training throughput measured the way the study trains: the trainer's own step (Trainer.train_step:
masked-count weighting, gradient accumulation, clipping, AdamW) on the trainer's own batches (the
real corpus, drawn and masked by the sampler, through the step loader), for

  * ours-packed:        our model on packed rows (what train_large_100k.py runs);
  * ours-plain:         our model on the same instances one per padded row (the layout before packing);
  * transformers-plain: transformers' BertForPreTraining (sdpa) with the same weights, same instances,
                        same padded rows and padding mask, through the same Trainer;

alternating runner by runner over the repeats after a warm-up. tokens/s counts real (non-padding)
tokens over the loop's time (waiting for the batch + the step). Each model's peak memory is
measured alone, in a child process of its own. The matmul peak: on CUDA bf16 8192^3 products timed with
CUDA events (a 2048^3 product takes 25-40 us, below what a host clock around one launch can time: it
read 434 TFLOP/s on an H200 that does 769-798), on CPU fp32 2048^3 products timed with the host clock
(a CPU product takes tens of ms). On CPU the measured peak is MFU's denominator; on CUDA --peak-tflops
(the found GPU's dense bf16 datasheet peak by default).
Also: a global batch's build time on one core and its padding (bench/data_pipeline.py), and ours
with torch.compile on and off (at the --compile-preset shape: compiling large_100k on 2 CPU cores
takes minutes). The machine's load average is recorded before and after: figures from a shared CPU
are low and noisy.

MFU = tokens/s x FLOPs per real token / peak FLOP/s, the FLOPs counted from the timed steps' real
tokens, attention blocks, masked positions and sentences (training/flops.py, model.training_flops).
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/throughput.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.data_pipeline import build_figures, corpus_sampler  # noqa: E402
from bertstudy.base.atomic_io import atomic_write_json  # noqa: E402
from bertstudy.base.cli import make_parser, non_negative_int, positive_float, positive_int, run_main  # noqa: E402
from bertstudy.base.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, StudyError, UsageError  # noqa: E402
from bertstudy.pretraining.loader import LoaderClock, make_step_loader, resolve_workers  # noqa: E402
from bertstudy.model import BertForPretraining, PretrainingOutput, _masked_cross_entropy, training_flops_per_token  # noqa: E402
from bertstudy.pretraining.packing import collate_padded, host_counts  # noqa: E402
from bertstudy.pretraining.instances import training_instances  # noqa: E402
from bertstudy.training.config import CUDA_GRAPH_MODES, TrainConfig, preset_config  # noqa: E402
from bertstudy.training.device import Distributed, enable_tf32, gpu_peak_tflops, precision_settings  # noqa: E402
from bertstudy.training.flops import step_flops  # noqa: E402
from bertstudy.training.machine import cpu_model  # noqa: E402
from bertstudy.training.run_data import step_shape  # noqa: E402
from bertstudy.training.trainer import Trainer, model_config_for  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM dense bf16 peak (NVIDIA datasheet), the CUDA default
BENCH_PRESETS = {  # train_config presets (tiny: for tests, a second a step on one thread)
    "large_100k": {}, "quick": {"preset": "quick"},
    "tiny": {"preset": "quick", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
             "max_seq_len": 32, "max_predictions": 5, "batch_size": 4, "grad_accum": 2},
}
# On 2 CPU cores a large_100k step of 32 x 4 takes ~30 s; the CPU default times 8 x 2 (same per-token work).
CPU_SPLIT = {"large_100k": (8, 2), "quick": (32, 1)}
STEP_DEFAULTS = {"cuda": dict(warmup=5, steps=10, repeats=3), "cpu": dict(warmup=1, steps=2, repeats=2)}
RUNNERS = ("ours-packed", "ours-plain", "transformers-plain")


class TransformersPretraining(torch.nn.Module):
    """transformers' BertForPreTraining behind our forward signature, so the same Trainer drives it. It
    computes the full [B, T, V] logits as transformers does; the loss is then taken at the host's positions."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids, token_type_ids, attention_mask=None, mlm_labels=None, nsp_labels=None,
                mlm_positions=None, **_):
        out = self.hf(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        logits = out.prediction_logits.reshape(-1, out.prediction_logits.shape[-1])
        mlm = _masked_cross_entropy(logits if mlm_positions is None else logits[mlm_positions], mlm_labels.reshape(-1))
        nsp = _masked_cross_entropy(out.seq_relationship_logits, nsp_labels.reshape(-1))
        return PretrainingOutput(mlm[0] + nsp[0], mlm[0], nsp[0], mlm[1], mlm[2], nsp[1], nsp[2])

    configure_optimizer = BertForPretraining.configure_optimizer  # the same AdamW groups as ours


def build_model(name: str, config, vocab_size: int, device):
    """Ours, or transformers' initialised from ours (same seed: the same weights)."""
    torch.manual_seed(config.seed)
    ours = BertForPretraining(model_config_for(config, vocab_size))
    if name.startswith("ours"):
        return ours.to(device).train()
    import transformers

    from bertstudy.training.hf_export import to_transformers_state_dict, transformers_config

    hf_config = transformers.BertConfig(**{k: v for k, v in transformers_config(ours.config).items()
                                           if k not in ("architectures", "model_type")})
    theirs = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    missing, unexpected = theirs.load_state_dict(to_transformers_state_dict(ours), strict=False)
    if unexpected or [k for k in missing if not k.startswith("cls.predictions.decoder")]:
        raise StudyError(f"weight mapping to transformers failed: missing {missing}, unexpected {unexpected}")
    theirs.tie_weights()
    return TransformersPretraining(theirs).to(device).train()


class Runner:
    """One model with its own Trainer and its own stream of steps (packed via the loader, or plain)."""

    def __init__(self, name: str, config, sampler, vocab_size: int, device, compiled: bool = False):
        self.name, self.config, self.sampler, self.device = name, config, sampler, device
        config = replace(config, compile=compiled)
        shape = step_shape(config, sampler, 0)  # as a run's: row buckets in a CUDA-graph mode, else None
        self.trainer = Trainer(config, build_model(name, config, vocab_size, device), sampler,
                               Distributed(device=device), shape=shape)
        self.trainer.wrap()
        self.step = 0
        self.model_config = model_config_for(config, vocab_size)  # for the FLOPs of the steps it times
        self.loader = LoaderClock(make_step_loader(sampler, config.seed, 0, config.batch_size, config.grad_accum, 0,
                                                   10**9, device, resolve_workers(config.data_workers, device), shape)
                                  if name.endswith("packed") else [])

    def _batches(self):
        if self.name.endswith("packed"):
            return self.loader.next_step()[1]
        started = time.monotonic()  # the plain layout is built in the loop, as the trainer did before
        c = self.config
        instances = training_instances(self.sampler, c.seed, self.step, 0, c.batch_size * c.grad_accum)
        batches = [collate_padded(instances[m * c.batch_size:(m + 1) * c.batch_size], c.max_seq_len)
                   for m in range(c.grad_accum)]
        self.loader.waited += time.monotonic() - started
        return batches

    def run(self, steps: int) -> dict:
        """Run `steps` steps; returns loop seconds, data-wait seconds, real tokens and computed positions."""
        waited_before, tokens, positions, timed = self.loader.waited, 0, 0, []
        synchronize(self.device)
        started = time.perf_counter()
        for _ in range(steps):
            batches = self._batches()
            self.trainer.train_step(self.step, batches)
            timed.append(batches)  # their FLOPs are counted after the clock stops
            tokens += sum(host_counts(b)[2] for b in batches)
            positions += sum(b["input_ids"].numel() if torch.is_tensor(b["input_ids"]) else b["input_ids"].size
                             for b in batches)
            self.step += 1
        synchronize(self.device)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "wait": self.loader.waited - waited_before, "tokens": tokens,
                "positions": positions, "flops": sum(step_flops(self.model_config, list(b))["flops"] for b in timed)}


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MATMUL_PEAK = {"cuda": dict(size=8192, products=20, timing="CUDA events"),  # ~1.4 ms a product on an H100
               "cpu": dict(size=2048, products=1, timing="host clock")}  # tens of ms a product: a host clock suffices


def matmul_peak_gflops(device, repeats: int = 5) -> float:
    """Best-of-repeats fp32 (CPU) or bf16 (CUDA) matmul rate (MATMUL_PEAK: sizes and timing per device)."""
    plan = MATMUL_PEAK["cuda" if device.type == "cuda" else "cpu"]
    size, products = plan["size"], plan["products"]
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":  # events on the stream: the products' own time, not the launch's
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(products):
                torch.mm(a, b)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            started = time.perf_counter()
            torch.mm(a, b)
            seconds = time.perf_counter() - started
        best = min(best, seconds / products)
    return 2 * size**3 / best / 1e9


def bench_config(preset: str, device, batch, grad_accum):
    overrides = dict(BENCH_PRESETS[preset])
    name = overrides.pop("preset", "large_100k")
    if device.type == "cpu" and preset in CPU_SPLIT:
        overrides["batch_size"], overrides["grad_accum"] = CPU_SPLIT[preset]
    overrides.update({k: v for k, v in (("batch_size", batch), ("grad_accum", grad_accum)) if v})
    return preset_config(name, device=device.type, progress=False, **overrides)


def compile_pair_config(preset: str, mode: str, device) -> TrainConfig:
    """The split at which eager and compiled are timed side by side: the preset's, except that a CUDA-graph
    mode takes the whole per-process batch as one micro-batch, as a run in that mode must
    (config.check_cuda_graph_split: a second micro-batch would overwrite the first's gradients)."""
    config = replace(bench_config(preset, device, None, None), compile_mode=mode)
    if mode in CUDA_GRAPH_MODES and config.grad_accum > 1:
        config = replace(config, batch_size=config.batch_size * config.grad_accum, grad_accum=1)
    return config


def time_runners(runners: dict, warmup: int, steps: int, repeats: int) -> dict:
    """Warm-up, then `repeats` rounds of `steps` steps per runner, alternating who goes first."""
    compile_seconds = {}
    for name, runner in runners.items():
        compile_seconds[name] = runner.run(warmup)["seconds"] if warmup else 0.0
    rounds = {name: [] for name in runners}
    for repeat in range(repeats):
        for name in (list(runners) if repeat % 2 == 0 else list(reversed(runners))):
            rounds[name].append(runners[name].run(steps))
    out = {}
    for name, results in rounds.items():
        rates = [r["tokens"] / r["seconds"] for r in results]
        out[name] = {"tokens_per_s": statistics.median(rates), "tokens_per_s_repeats": rates,
                     "step_time_s": statistics.median(r["seconds"] / steps for r in results),
                     "data_wait_s_per_step": statistics.median(r["wait"] / steps for r in results),
                     "padding": 1 - sum(r["tokens"] for r in results) / sum(r["positions"] for r in results),
                     "flops_per_token": sum(r["flops"] for r in results) / max(sum(r["tokens"] for r in results), 1),
                     "warmup_s": compile_seconds[name]}
    return out


def memory_child(name: str, args) -> int:
    """Run one model alone for a few steps and print its peak memory (the parent starts this)."""
    device = pick_device(args.device)
    config = bench_config(args.preset, device, args.batch, args.grad_accum)
    sampler, vocab_size = corpus_sampler(config, args.corpus, args.cache_dir)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    Runner(name, config, sampler, vocab_size, device).run(2)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else process_peak_rss()
    print(json.dumps({"peak_bytes": peak}))
    return EXIT_OK


def process_peak_rss() -> int:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over fork and
    exec, so a child started by a 3 GB parent reports at least 3 GB whatever it used."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # no /proc: the best there is


def peak_memory_alone(name: str, argv: list[str]) -> float:
    done = subprocess.run([sys.executable, __file__, *argv, "--memory-child", name], capture_output=True, text=True)
    if done.returncode != 0:
        raise StudyError(f"memory run of {name} failed: {done.stderr.strip()[-500:]}", exit_code=EXIT_RUNTIME)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20


def run_benchmark(args, argv: list[str]) -> dict:
    device = pick_device(args.device)
    if device.type == "cuda":
        enable_tf32()  # as a training run does (device.bind_device)
    if not Path(args.corpus).exists():
        raise UsageError(f"{args.corpus}: no corpus; make one with: python rare_char_fetch.py --source embedded --out {args.corpus}")
    load_before = os.getloadavg()
    config = bench_config(args.preset, device, args.batch, args.grad_accum)
    sampler, vocab_size = corpus_sampler(config, args.corpus, args.cache_dir)
    defaults = STEP_DEFAULTS[device.type]
    warmup = defaults["warmup"] if args.warmup is None else args.warmup
    steps, repeats = args.steps or defaults["steps"], args.repeats or defaults["repeats"]

    data = build_figures(sampler, preset_config("large_100k", seed=config.seed) if args.preset == "large_100k" else config)
    peak_gflops = matmul_peak_gflops(device)
    peak_flops = (args.peak_tflops * 1e12) if args.peak_tflops else (
        peak_gflops * 1e9 if device.type == "cpu" else (gpu_peak_tflops(torch.cuda.get_device_name(device))
                                                         or H100_BF16_DENSE_TFLOPS) * 1e12)
    runners = {name: Runner(name, config, sampler, vocab_size, device) for name in RUNNERS}
    full_length = training_flops_per_token(runners["ours-packed"].trainer.raw_model, config.max_seq_len)
    models = time_runners(runners, warmup, steps, repeats)
    del runners
    for name, figures in models.items():
        figures["mfu"] = figures["tokens_per_s"] * figures["flops_per_token"] / peak_flops
        figures["peak_memory_mb"] = peak_memory_alone(name, argv) if args.memory else None

    compiled = None
    if args.compile_preset != "none":
        c_config = compile_pair_config(args.compile_preset, args.compile_mode, device)
        c_sampler, c_vocab = corpus_sampler(c_config, args.corpus, args.cache_dir)
        pair = {"eager": Runner("ours-packed", c_config, c_sampler, c_vocab, device),
                "compiled": Runner("ours-packed", c_config, c_sampler, c_vocab, device, compiled=True)}
        compiled = {"preset": args.compile_preset, "mode": args.compile_mode, "batch_size": c_config.batch_size,
                    "grad_accum": c_config.grad_accum,
                    **time_runners(pair, max(warmup, 8), steps, repeats)}  # 8 warm-up steps: the compile, row buckets' graphs
        compiled["speedup"] = compiled["compiled"]["tokens_per_s"] / compiled["eager"]["tokens_per_s"]

    import transformers

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers_version": transformers.__version__,
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count(),
        "preset": args.preset, "corpus": str(args.corpus), "vocab_size": vocab_size,
        "batch_size": config.batch_size, "grad_accum": config.grad_accum, "max_seq_len": config.max_seq_len,
        "precision": str(runners_precision(device)), "warmup": warmup, "steps": steps, "repeats": repeats,
        "non_embedding_parameters": BertForPretraining(model_config_for(config, vocab_size)).num_parameters(True),
        "flops_per_token_at_full_length": full_length,  # 6 x non-embedding parameters + 12 x layers x hidden x seq_len
        "mfu_formula": "tokens_per_s * flops_per_token (each model's: its timed steps' FLOPs / their real tokens) / peak",
        "matmul_peak_gflops": peak_gflops, "mfu_peak_gflops": peak_flops / 1e9,
        "matmul_peak_method": "{size}^3 products, {timing}".format(**MATMUL_PEAK[device.type]),
        "memory_kind": ("cuda max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)") + ", each model alone",
        "data": data, "models": models, "compile": compiled,
        "ratio_ours_packed_vs_transformers": models["ours-packed"]["tokens_per_s"] / models["transformers-plain"]["tokens_per_s"],
        "ratio_ours_plain_vs_transformers": models["ours-plain"]["tokens_per_s"] / models["transformers-plain"]["tokens_per_s"],
    }


def runners_precision(device) -> str:
    dtype, scaler = precision_settings(device, None)[:2]
    return "fp32" if dtype is None else f"{dtype} autocast" + (" + GradScaler" if scaler else "")


# ------------------------------------------------------------------------------ command line
def build_parser():
    parser = make_parser(
        "bench/throughput.py",
        "Training throughput of the trainer's own step on its own batches: ours (packed and padded rows) vs "
        "transformers' BertForPreTraining, data-pipeline build time and padding, MFU, memory, compile on/off.",
        examples=[
            "python bench/throughput.py --threads 2 --out bench/throughput_result.json",
            "python bench/throughput.py --preset large_100k --device cuda --out bench/throughput_cuda.json",
            "python bench/throughput.py --preset tiny --corpus /tmp/c.jsonl --steps 1 --repeats 1 --out /tmp/bench.json",
        ],
        exit_codes=[EXIT_OK, EXIT_USAGE, EXIT_RUNTIME],
    )
    parser.add_argument("--preset", choices=sorted(BENCH_PRESETS), default="large_100k", help="model shape (default large_100k)")
    parser.add_argument("--corpus", default="data/corpus.jsonl", help="the corpus the batches come from (default data/corpus.jsonl)")
    parser.add_argument("--cache-dir", default="data/cache", help="token cache folder (default data/cache)")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="micro-batch (default: the preset's; 8 for large_100k on CPU)")
    parser.add_argument("--grad-accum", type=positive_int, default=None, help="micro-batches per step (default: preset's; 2 on CPU)")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed steps per repeat (default 10 CUDA, 2 CPU)")
    parser.add_argument("--warmup", type=non_negative_int, default=None, help="untimed steps per runner first (default 5 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed repeats, medians reported (default 3 CUDA, 2 CPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto: CUDA when present")
    parser.add_argument("--peak-tflops", type=positive_float, default=None,
                        help=f"MFU denominator (default: the measured fp32 matmul peak on CPU; on CUDA the found GPU's dense "
                             f"bf16 peak, device.GPU_PEAK_TFLOPS, or {H100_BF16_DENSE_TFLOPS:g} for an unknown one)")
    parser.add_argument("--compile-preset", choices=[*sorted(BENCH_PRESETS), "none"], default="quick",
                        help="shape at which ours is timed with torch.compile on and off (default quick; none: skip)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for that (reduce-overhead: CUDA graphs)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the per-model peak-memory runs")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="bench/throughput_result.json", help="result JSON, written atomically")
    parser.add_argument("--memory-child", choices=RUNNERS, help=argparse_suppress())
    return parser


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def report(result: dict) -> list[str]:
    d = result["data"]
    lines = [f"device {result['device_name']} ({result['device']}, {result['threads']} threads, {result['precision']}); "
             f"load average before/after {result['load_average_before'][0]:.1f}/{result['load_average_after'][0]:.1f} "
             f"on {result['cpu_count']} CPUs",
             f"data: one global batch of {d['batch_size']} x {d['grad_accum']} (len {d['max_seq_len']}) built in "
             f"{d['packed']['build_ms']:.1f} ms of one core (packed; plain rows {d['plain']['build_ms']:.1f} ms); "
             f"padding {100 * d['packed']['padding']:.1f}% packed vs {100 * d['plain']['padding']:.1f}% plain",
             f"matmul peak ({result['matmul_peak_method']}, {'fp32' if result['device'] == 'cpu' else 'bf16'}): "
             f"{result['matmul_peak_gflops']:.0f} GFLOP/s; "
             f"MFU against {result['mfu_peak_gflops']:.0f} GFLOP/s",
             f"trainer step, {result['preset']} {result['batch_size']} x {result['grad_accum']}:"]
    for name, r in result["models"].items():
        memory = f"  peak {r['peak_memory_mb']:6.0f} MB alone" if r["peak_memory_mb"] is not None else ""
        lines.append(f"{name:>20}: {r['tokens_per_s']:9.0f} tokens/s  step {r['step_time_s']:7.3f} s  data wait "
                     f"{1000 * r['data_wait_s_per_step']:6.1f} ms/step  padding {100 * r['padding']:4.1f}%  "
                     f"MFU {100 * r['mfu']:5.1f}%{memory}")
    lines.append(f"ours/transformers tokens/s: {result['ratio_ours_packed_vs_transformers']:.2f}x packed, "
                 f"{result['ratio_ours_plain_vs_transformers']:.2f}x on the same padded rows")
    c = result["compile"]
    if c:
        lines.append(f"torch.compile ({c['mode']}), {c['preset']} {c['batch_size']} x {c['grad_accum']}: eager "
                     f"{c['eager']['tokens_per_s']:.0f} vs compiled {c['compiled']['tokens_per_s']:.0f} tokens/s "
                     f"({c['speedup']:.2f}x; compile + warm-up {c['compiled']['warmup_s']:.0f} s)")
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def measure():
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.memory_child:
            return memory_child(args.memory_child, args)
        result = run_benchmark(args, argv)
        atomic_write_json(args.out, result)
        print("\n".join(report(result)) + f"\n-> {args.out}")
        return EXIT_OK

    return run_main(measure)


if __name__ == "__main__":
    sys.exit(main())
