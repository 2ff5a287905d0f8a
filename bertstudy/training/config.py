"""The training run's configuration: one dataclass, the presets in PRESETS, every field a command-line flag.

`--preset` picks the starting values; any `--field-name VALUE` then overrides one field, e.g.
`--preset quick --hidden-size 256 --steps 500`. The resolved config is written to
resolved_config.json next to the run's outputs and stored in every checkpoint.

The recipe options (`--pre-ln`, `--mlm-bias-init`, `--schedule`/`--decay-fraction`, `--nsp-weight`,
`--eval-mask-rate`) default to what a run made before these options existed trained with, so such a
run's checkpoint resumes with those values (weights.migrate fills them into its stored config).
scripts/quick_recipes.py searches over them.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace

from bertstudy.base import cli
from bertstudy.training.device import device_choice
from bertstudy.base.errors import UsageError


# The fields whose unset value (None) depends on the device the run trains on: run_start.device_defaults
# fills them in (the reasons are there) before anything is built, so a run's resolved_config.json and its
# checkpoints hold these values, never None.
UNSET_ON_CPU = dict(compile=False, save_interval=2_000)
UNSET_ON_CUDA = dict(compile=True, save_interval=10_000)


def flag_field(default, kind, help_text):
    """A TrainConfig field that is also a command-line flag: its argparse type and help text ride in the metadata."""
    return field(default=default, metadata={"type": kind, "help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    # ---- data
    corpus: str = flag_field("data/corpus.jsonl", str, "corpus: ours JSONL or the original study's JSON")  # rare_char_fetch.py's output
    out_dir: str = flag_field(".", str, "folder for history, log, checkpoints, final model")  # "." as in the original study
    cache_dir: str = flag_field("data/cache", str, "folder for the tokenized-corpus cache")  # beside the corpus, never committed
    min_freq: int = flag_field(1, cli.positive_int, "keep characters seen at least this often")  # 1: every character; rare ones are the study's point
    heldout_fraction: float = flag_field(0.02, cli.open_unit_float, "fraction of documents held out for eval")  # 2%: enough instances, little lost
    max_seq_len: int = flag_field(128, cli.positive_int, "tokens per instance incl. [CLS]/[SEP]")  # the original's length; BERT phase 1
    mask_rate: float = flag_field(0.15, cli.open_unit_float, "fraction of tokens to predict in training")  # BERT's 15%
    eval_mask_rate: float = flag_field(0.15, cli.open_unit_float, "fraction of tokens predicted in the held-out "
                                                          "instances, whatever --mask-rate training uses")
    # BERT's 15%, apart from mask_rate so that runs trained at another rate are scored on the same
    # kind of held-out instances; a run from before the field evaluated at its mask_rate and keeps it (resume_config)
    max_predictions: int = flag_field(20, cli.positive_int, "most masked positions per instance")  # BERT's 20 for length 128
    short_seq_prob: float = flag_field(0.1, cli.unit_float, "chance of a shorter target length")  # BERT's 0.1: fewer train/test length mismatches
    wwm: bool = flag_field(False, bool, "whole-word masking with jieba words (Chinese-BERT-wwm)")  # off: character masking as the original
    eval_instances: int = flag_field(1024, cli.positive_int, "held-out instances scored at each eval")  # ~150k masked tokens of 128-length: +-0.3% noise
    # ---- model
    hidden_size: int = flag_field(512, cli.positive_int, "hidden width")  # the original's large_100k
    num_layers: int = flag_field(12, cli.positive_int, "encoder layers")  # BERT-base depth
    num_heads: int = flag_field(8, cli.positive_int, "attention heads")  # 64-dim heads
    intermediate_size: int = flag_field(2048, cli.positive_int, "feed-forward width")  # 4 x hidden
    dropout: float = flag_field(0.1, cli.unit_float, "dropout rate")  # BERT's 0.1
    pre_ln: bool = flag_field(False, bool, "pre-LayerNorm layers (x + Attn(LN(x)), x + FFN(LN(x)), a final LayerNorm); "
                                   "not exportable to transformers' post-LN BERT")  # off: BERT's post-LN, as the original
    mlm_bias_init: str = flag_field("zeros", str, "the MLM output bias at a fresh start: zeros, or unigram (log of the "
                                          "training characters' add-one frequencies)")  # zeros: BERT's
    # unigram starts the model at the "most frequent character" answer instead of learning it first
    # ---- optimizer and schedule
    lr: float = flag_field(5e-4, cli.positive_float, "peak learning rate")
    # 5e-4, not the original's 5e-5: that is a fine-tuning rate; from scratch with a batch of 128 a
    # 512-wide BERT needs ~1e-4..1e-3 (BERT-base used 1e-4 at batch 256, RoBERTa 6e-4 at 8k with
    # post-LN warm-up); 5e-4 with 2k warm-up steps and beta2 0.98 trains stably at this width.
    min_lr_ratio: float = flag_field(0.1, cli.unit_float, "the schedule decays to lr x this (0: to zero)")  # 10%: the tail still learns
    schedule: str = flag_field("cosine", str, "after the warm-up: cosine (decay over all remaining steps) or constant "
                                      "(the peak lr, then a linear decay over the last --decay-fraction of the "
                                      "steps)")  # cosine: the study's schedule; constant is the trapezoid / WSD one
    decay_fraction: float = flag_field(0.2, cli.unit_float, "with --schedule constant: the share of the steps at the end "
                                                    "that decay linearly")  # 20%: the usual WSD cool-down
    warmup_steps: int = flag_field(2000, cli.non_negative_int, "linear warm-up steps")  # 2% of 100k, BERT used 1%
    weight_decay: float = flag_field(0.01, cli.non_negative_float, "AdamW weight decay")  # BERT's 0.01
    beta1: float = flag_field(0.9, cli.open_unit_float, "AdamW beta1")  # BERT's
    beta2: float = flag_field(0.98, cli.open_unit_float, "AdamW beta2")  # RoBERTa's 0.98: steadier with large lr
    adam_eps: float = flag_field(1e-6, cli.positive_float, "AdamW epsilon")  # BERT's 1e-6
    grad_clip: float = flag_field(1.0, cli.non_negative_float, "clip the global grad norm (0: off)")  # BERT's 1.0
    nsp_weight: float = flag_field(1.0, cli.non_negative_float, "the loss is MLM + this x NSP (0: NSP measured, "
                                                        "not trained)")  # BERT's plain sum
    # ---- run
    steps: int = flag_field(100_000, cli.positive_int, "optimizer steps")  # the study's 100k
    batch_size: int = flag_field(32, cli.positive_int, "instances per micro-batch per process, or auto: keep the global "
                                               "batch (batch size x grad accum) and pick the largest micro-batch "
                                               "that fits the GPU (a CPU keeps the split)")  # the original's 32
    grad_accum: int = flag_field(4, cli.positive_int, "micro-batches per optimizer step")  # 32 x 4 = 128 per step
    log_interval: int = flag_field(100, cli.positive_int, "steps between training log points")  # 1000 points over 100k
    eval_interval: int = flag_field(1000, cli.positive_int, "steps between held-out evals")  # 100 evals over 100k
    save_interval: int | None = flag_field(None, cli.positive_int, "steps between checkpoints (unset: "
                                           f"{UNSET_ON_CUDA['save_interval']:,} on CUDA, "
                                           f"{UNSET_ON_CPU['save_interval']:,} on CPU)")
    # unset: the device's (run_start.device_defaults); a resumed run keeps its own unless the flag is given
    keep_last: int = flag_field(3, cli.non_negative_int, "checkpoints kept (0: all)")  # 3: a corrupt newest still leaves two
    milestones: str = flag_field("none", str, "weights kept for probing, never pruned: none, log (0, 1, 2, 5, 10, ... "
                                      "and the end) or steps, e.g. 100,500,log")  # none: a probe pass is opt-in (milestones.py)
    seed: int = flag_field(42, cli.non_negative_int, "seed of init, dropout, training batches and their masks")
    split_seed: int = flag_field(42, cli.non_negative_int, "seed of the held-out split and the fixed held-out instances")
    # apart from --seed so that runs with several pretraining seeds (make study-cpu SEEDS="1 2 3") hold
    # out the same documents and score the same held-out instances; 42, the seed's default, so a run
    # with the default seed splits as it did before the field existed (resume_config: older runs keep theirs)
    amp: bool | None = flag_field(None, bool, "mixed precision (default: on for CUDA, off for CPU)")  # CPU bf16 is slower on most CPUs
    compile: bool | None = flag_field(None, bool, "torch.compile the model (unset: on for CUDA, off for CPU)")
    # unset: the device's (run_start.device_defaults); on a CPU compile time dominates short runs
    compile_mode: str = flag_field("default", str, "torch.compile mode: default, reduce-overhead (CUDA graphs) or "
                                           "max-autotune")  # default: CUDA graphs unmeasured here (docs/PERFORMANCE.md)
    auto_batch: bool | None = flag_field(None, bool, "pick the largest micro-batch that fits the GPU, keeping the global "
                                             "batch (unset: on CUDA unless --batch-size N fixes the split)")
    # unset: on a GPU the split follows the device (the same mathematics, fewer launches), on a CPU the
    # configured split stays; --batch-size auto sets it, --batch-size N clears it (batch_fit.py)
    device: str = flag_field("auto", device_choice, "auto, cpu, cuda or cuda:N")  # auto: CUDA when present; cuda: GPU LOCAL_RANK
    data_workers: int = flag_field(-1, cli.int_in_range(-1, 64), "processes building batches ahead (-1: 4 on CUDA, "
                                                        "0 on CPU = built in the loop)")
    # -1: on a GPU loader.DEFAULT_CUDA_WORKERS keep ahead of the step; on a CPU they would take cores from the model
    max_nonfinite: int = flag_field(5, cli.positive_int, "stop after this many non-finite losses in a row")
    progress: bool = flag_field(True, bool, "show a tqdm progress bar")
    threads: int | None = flag_field(None, cli.non_negative_int, "torch CPU threads (unset: the cores free at the start, "
                                                         "i.e. cores minus the load average, at least 1, said at "
                                                         "the start; 0: torch's default, one per core)")
    # unset: the run takes the free cores (training/machine.py): threads on cores busy with other jobs wait
    # on each other at every matmul; on idle cores one per core is fastest.
    preset: str = "large_100k"  # set by --preset, recorded for the history's meta

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum


# quick_plateau's values, which quick changes (below)
_QUICK_PLATEAU = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_seq_len=64,
                      max_predictions=10, batch_size=64, grad_accum=1, steps=1200, warmup_steps=50, lr=2e-3,
                      log_interval=10, eval_interval=100, save_interval=300, eval_instances=512, dropout=0.0,
                      min_lr_ratio=0.1)

PRESETS: dict[str, dict] = {
    # the study's run: the original's shape, a learning rate that learns from scratch
    "large_100k": {},
    # The whole pipeline in minutes on 2 CPU cores (make quickstart): 1.1M parameters, 1,000 steps of
    # 64 x 64 tokens, the recipe scripts/quick_recipes.py found (docs/PRESETS.md): quick_plateau's
    # model and batch, with the output bias starting at the log character frequencies (no steps spent
    # learning them), lr 4e-3 held until the last 20% of the steps (constant schedule), 25% of the
    # characters masked (15% in the held-out test), NSP measured but not trained. quick_plateau's held-out
    # [MASK] accuracy stays at ~5% (always "，"); this leaves the plateau by step ~700 (24% at 1,200 steps in
    # the search). 1,000 steps, not the search's 1,200, to keep make quickstart short on 2 CPU cores
    # (its measured times: docs/PRESETS.md).
    "quick": dict(_QUICK_PLATEAU, max_predictions=16, steps=1000, lr=4e-3, schedule="constant",
                  mlm_bias_init="unigram", mask_rate=0.25, nsp_weight=0.0),
    # The quickstart recipe before the recipe search, kept as the search's baseline: lr 2e-3 (the edge of
    # stable with a zero output bias), cosine, 15% masked, NSP trained. It ends on the copy plateau
    # (held-out [MASK] accuracy ~5.5% at step 1,200: always "，").
    "quick_plateau": _QUICK_PLATEAU,
    # The reduced but genuine study (make study-cpu): 2.4M parameters, 5,000 steps of 32 x 64 tokens,
    # ~9.6M tokens (~3 passes over the embedded corpus), near 20 tokens per non-embedding parameter:
    # long enough to show the first rise, the plateau and the second rise. dropout 0: a model this
    # small, seeing each token ~3 times, underfits. 500 log points, 40 held-out evals; log milestones
    # (13 weight files) for probe_downstream.py. Timings: docs/PRESETS.md.
    "cpu_study": dict(milestones="log", hidden_size=192, num_layers=3, num_heads=4, intermediate_size=768, max_seq_len=64,
                      max_predictions=10, batch_size=32, grad_accum=1, steps=5000, warmup_steps=200, lr=1.5e-3,
                      log_interval=10, eval_interval=125, save_interval=500, eval_instances=512, dropout=0.0,
                      min_lr_ratio=0.1),
    # The original's protocol on a CPU: 100,000 steps, a point every 100 (1,000 points), a held-out
    # eval every 1,000, 2K warm-up, cosine; the model (64 x 2 layers, batch 8 x 64 tokens) is what one
    # core finishes in about an hour. lr 1e-3 for the small batch. Log milestones keep 0, 1, 2, 5, ...,
    # 50,000 and 100,000 for probe_downstream.py. How the size was chosen: docs/PRESETS.md.
    # The GPU study tier (scripts/gpu_study.sh): 3-4 seeds at once on one GPU within one 10-minute command.
    # 4.6M parameters (hidden 256, 4 layers of 4 heads, FFN 1024) at large_100k's length 128 and global batch
    # 128 in one micro-batch, 20,000 steps (~260M real tokens, ~85 passes over the embedded corpus, so
    # dropout stays on); lr 1e-3 for the smaller width with a 5% warm-up, cosine to 10%; log milestones
    # (0, 1, 2, 5, ..., 10,000, 20,000) probed on the GPU machine; an eval every 500 steps (40 points); a log
    # point every 20 steps (1,000 points); no periodic checkpoint (nothing of it comes back, and a SIGTERM
    # from the script's time limit saves one anyway).
    "gpu_study": dict(milestones="log", hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                      max_seq_len=128, max_predictions=20, batch_size=128, grad_accum=1, steps=20_000,
                      warmup_steps=1000, lr=1e-3, min_lr_ratio=0.1, log_interval=20, eval_interval=500,
                      save_interval=20_000, keep_last=1),
    "cpu_100k": dict(milestones="log", hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                     max_seq_len=64, max_predictions=10, batch_size=8, grad_accum=1, steps=100_000, warmup_steps=2000,
                     lr=1e-3, log_interval=100, eval_interval=1000, save_interval=5000, eval_instances=512,
                     dropout=0.0, min_lr_ratio=0.1),
}


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the modes that capture CUDA graphs: a graph's outputs (the gradients of a backward among them) live in its
# memory pool, and the next micro-batch's forward reuses that pool, so a second micro-batch in one step
# reads overwritten gradients (a crash in torch 2.13, only the last micro-batch's gradients before it)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
SCHEDULES = ("cosine", "constant")  # trainer.lr_at
MLM_BIAS_INITS = ("zeros", "unigram")  # run.init_mlm_bias


def batch_size_or_auto(text: str):
    """--batch-size: a positive integer, or `auto` (auto_batch: the preset's split is the global batch)."""
    return "auto" if text.strip().lower() == "auto" else cli.positive_int(text)


def preset_config(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return validate(replace(TrainConfig(), preset=name, **{**PRESETS[name], **overrides}))


def validate(config: TrainConfig) -> TrainConfig:
    """Cross-field checks the per-flag range types cannot make."""
    if config.hidden_size % config.num_heads:
        raise UsageError(f"--hidden-size {config.hidden_size} is not a multiple of --num-heads {config.num_heads}")
    from bertstudy.training.milestones import milestone_steps  # no torch: parses the spec, refusing a bad one here

    milestone_steps(config.milestones, config.steps)
    if config.compile_mode not in COMPILE_MODES:
        raise UsageError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {config.compile_mode!r}")
    if config.schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    if config.mlm_bias_init not in MLM_BIAS_INITS:
        raise UsageError(f"--mlm-bias-init must be one of {', '.join(MLM_BIAS_INITS)}, got {config.mlm_bias_init!r}")
    if config.max_seq_len < 8:
        raise UsageError(f"--max-seq-len must be >= 8 ([CLS] A [SEP] B [SEP] and some text), got {config.max_seq_len}")
    return config


def check_cuda_graph_split(config: TrainConfig) -> None:
    """A CUDA-graph compile mode takes exactly one micro-batch per optimizer step (see CUDA_GRAPH_MODES):
    a split with accumulation is refused in one line. Called once the split is known: at the start when
    the command line fixes it, again after the batch probe has chosen it on a GPU."""
    if config.compile and config.compile_mode in CUDA_GRAPH_MODES and config.grad_accum > 1:
        per_process = config.batch_size * config.grad_accum
        raise UsageError(f"--compile-mode {config.compile_mode} (CUDA graphs) needs one micro-batch per step, this "
                         f"run has {config.batch_size} x {config.grad_accum} (accumulation overwrites the first "
                         f"micro-batch's gradients): use --batch-size {per_process} --grad-accum 1 where it fits, "
                         f"or --compile-mode default")


def _preset_values(name: str) -> str:
    """' (large_100k: 512; quick: 128; cpu_study: 192)' where the presets differ, else the one default."""
    values = {preset: PRESETS[preset].get(name, TrainConfig.__dataclass_fields__[name].default) for preset in PRESETS}
    if len(set(map(repr, values.values()))) == 1:
        value = next(iter(values.values()))
        return "" if value is None else f" (default {value})"
    return " (" + "; ".join(f"{preset}: {'unset' if value is None else value}" for preset, value in values.items()) + ")"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field (--field-name), default None so an unset flag keeps the preset's (or, on
    --resume, the run's) value."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="starting values (default large_100k); the flags below override them; "
                             "--show-preset NAME lists a preset's values")
    for f in fields(TrainConfig):
        if f.name in ("preset", "auto_batch"):  # auto_batch is set by --batch-size auto: one flag, not two
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = batch_size_or_auto if f.name == "batch_size" else f.metadata["type"]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f.metadata["help"] + _preset_values(f.name))
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f.metadata["help"] + _preset_values(f.name))


def with_batch_choice(values: dict) -> dict:
    """Field values as a command line sets them: `batch_size` "auto" (--batch-size auto) keeps the global batch
    of the preset's (or the given) split and asks for the device's choice (auto_batch); a number (--batch-size
    N) fixes the split, also on a GPU."""
    values = dict(values)
    if values.get("batch_size") == "auto":
        del values["batch_size"]
        values["auto_batch"] = True
    elif "batch_size" in values:
        values["auto_batch"] = False
    return values


def given_fields(args: argparse.Namespace) -> dict:
    """The fields set on the command line (not their defaults), --preset included when given."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name != "preset" and getattr(args, f.name, None) is not None}
    if getattr(args, "preset", None) is not None:
        given["preset"] = args.preset
    return with_batch_choice(given)


def config_from_given(given: dict) -> TrainConfig:
    """The config that `given` (given_fields' form) asks for: its preset (default large_100k) with its fields."""
    overrides = {name: value for name, value in given.items() if name != "preset"}
    return preset_config(given.get("preset") or "large_100k", **overrides)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_from_given(given_fields(args))


def describe_preset(name: str) -> str:
    """`--show-preset NAME`: every field's value in that preset, as the flags that would set it."""
    config = preset_config(name)
    lines = [f"preset {name} (any flag overrides its value):"]
    for f in fields(TrainConfig):
        if f.name in ("preset", "auto_batch"):  # auto_batch is set by --batch-size auto: one flag, not two
            continue
        value = getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool) or value is None:  # unset: the flag, then what unset means (its help)
            shown = {True: flag, False: "--no-" + f.name.replace("_", "-"), None: f"{flag} unset: " + f.metadata["help"]}
            lines.append(f"  {shown[value]}")
        else:
            lines.append(f"  {flag} {value}")
    return "\n".join(lines)


# model-shape fields: a checkpoint whose values differ cannot be loaded into this run's model
ARCHITECTURE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_seq_len", "pre_ln")
# On --resume the run's own config (from its checkpoint) is used. These fields may be changed by a flag
# on the resume line: how long, how often to log/eval/save, and where the (same) corpus and cache are.
# A new --steps moves the end of the cosine schedule from the resumed step on.
CHANGEABLE_ON_RESUME = ("steps", "log_interval", "eval_interval", "save_interval", "keep_last", "milestones", "max_nonfinite",
                        "corpus", "cache_dir")
# These belong to this session, not to the run: they come from the resume line, defaults included.
SESSION_FIELDS = ("out_dir", "device", "threads", "progress", "compile", "amp", "compile_mode", "data_workers")


def preset_drift(resumed: TrainConfig, given: dict) -> list[tuple[str, object, object]]:
    """(field, run's value, preset's value today) where a resumed run (resume_config's result) differs from
    the preset its resume line names (--preset given and equal to the run's), over the preset's fields the
    line does not set itself. A preset can change between versions (quick has): `make quickstart` in a
    folder holding a run of an older quick resumes that run as it was, and the caller says so instead of
    staying silent."""
    name = given.get("preset")
    if name is None or name != resumed.preset or name not in PRESETS:
        return []
    today = preset_config(name)
    changeable = set(CHANGEABLE_ON_RESUME) | set(SESSION_FIELDS) | set(given)
    return [(field, getattr(resumed, field), getattr(today, field)) for field in PRESETS[name]
            if field not in changeable and getattr(resumed, field) != getattr(today, field)]


def resume_config(saved: dict, given: dict, session: TrainConfig, source: str) -> TrainConfig:
    """The config a resumed run continues with: the run's own (`saved`, as weights.migrate brought it up to
    date: every field it trains with is there), the changeable fields that
    `given` sets, this session's fields. Any other given flag that differs from the run's value
    (architecture, lr, batch, seed, preset...) is refused, naming each field: it would silently make
    another run (the optimizer's saved moments, the data order and the schedule belong to these values)."""
    known = {f.name for f in fields(TrainConfig)}
    base = {name: value for name, value in saved.items() if name in known}
    fixed = [name for name, value in given.items()
             if name not in CHANGEABLE_ON_RESUME and name not in SESSION_FIELDS and base.get(name) != value]
    if fixed:
        run = ", ".join(f"{name} {base.get(name)}" for name in fixed)
        asked = ", ".join(f"{name} {given[name]}" for name in fixed)
        raise UsageError(f"--resume: {source} was trained with {run}; this command line gives {asked}. "
                         f"A resumed run may change only {', '.join('--' + n.replace('_', '-') for n in CHANGEABLE_ON_RESUME)} "
                         f"and this session's {', '.join('--' + n.replace('_', '-') for n in SESSION_FIELDS[1:])}: "
                         f"drop the others, or start a new run in another --out-dir")
    values = {**base, **{name: given[name] for name in CHANGEABLE_ON_RESUME if name in given},
              **{name: getattr(session, name) for name in SESSION_FIELDS}}
    return validate(TrainConfig(**values))
