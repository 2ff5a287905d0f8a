"""A resumable search over training recipes for the `quick` preset (the recipe before it, `quick_plateau`, ends
on the copy plateau: held-out [MASK] accuracy at the share of the most frequent character).

A candidate is a name and overrides of the `quick_plateau` preset (that recipe) ({"schedule": "constant", "lr": 3e-3}); with
`equal_flops` its steps are scaled so that its training FLOPs (model.training_flops_per_token x tokens per
step x steps) equal the preset's: width and depth compared at (about) equal compute, hence time. Each
candidate and seed trains into its own folder under the search's --out-dir (named by the name, seed and a
hash of what it trains with) through training.run.run_training with its TrainConfig built here (the values
`train_large_100k.py --resume-if-possible` would resolve from the same flags): an interrupted candidate
continues from its checkpoint. Then one JSON line is appended to the results file (rewritten atomically):
`result_record`. A candidate already there with the same name, seed, overrides and steps is skipped, so a
rerun continues the search.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bertstudy.base.atomic_io import atomic_write_text, iter_jsonl, read_json, read_text_utf8
from bertstudy.base.errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, BadInputError, StudyError,
                                   UsageError)
from bertstudy.base.run_files import FINAL_MODEL_NAME, HISTORY_NAME, VOCAB_NAME
from bertstudy.recipe_search.recipe_table import percent

if TYPE_CHECKING:
    from bertstudy.training.config import TrainConfig

PRESET = "quick_plateau"  # the candidates are changes to the recipe that ends on the plateau
# What make quickstart asks the model (the Makefile's PROBE_SENTENCES), one [MASK] each.
PROBE_SENTENCES = ("中国[MASK]民", "北京是中国的首[MASK]", "我们明[MASK]去上学")
TOP_K = 3
# Set by the search itself (folder, data, seed, this machine), never by a candidate.
RESERVED = ("out_dir", "corpus", "cache_dir", "seed", "threads", "progress", "preset", "device")
# One change at a time against the preset, then a few combinations. A higher mask rate comes with the
# max_predictions it needs (the preset's cap of 10 would keep it near 15% of the 62 characters of a row: 25%
# is 16, 40% is 25); a sequence length keeps the tokens per step (batch x length); width and depth are
# compared at the preset's training FLOPs (equal_flops). The held-out instances stay at 15% (eval_mask_rate).
ALL = {"pre_ln": True, "mlm_bias_init": "unigram", "schedule": "constant", "lr": 4e-3, "nsp_weight": 0.0,
       "mask_rate": 0.25, "max_predictions": 16}
DEFAULT_CANDIDATES = [
    {"name": "baseline", "overrides": {}},
    {"name": "warmup-10", "overrides": {"warmup_steps": 10}},
    {"name": "warmup-200", "overrides": {"warmup_steps": 200}},
    {"name": "lr-1e-3", "overrides": {"lr": 1e-3}},
    {"name": "lr-4e-3", "overrides": {"lr": 4e-3}},
    {"name": "constant", "overrides": {"schedule": "constant"}},
    {"name": "constant-decay-0.5", "overrides": {"schedule": "constant", "decay_fraction": 0.5}},
    {"name": "pre-ln", "overrides": {"pre_ln": True}},
    {"name": "unigram-bias", "overrides": {"mlm_bias_init": "unigram"}},
    {"name": "mask-25", "overrides": {"mask_rate": 0.25, "max_predictions": 16}},
    {"name": "mask-40", "overrides": {"mask_rate": 0.4, "max_predictions": 26}},
    {"name": "seq-32", "overrides": {"max_seq_len": 32, "max_predictions": 5, "batch_size": 128}},
    {"name": "seq-128", "overrides": {"max_seq_len": 128, "max_predictions": 20, "batch_size": 32}},
    {"name": "wide-256", "overrides": {"hidden_size": 256, "intermediate_size": 1024}, "equal_flops": True},
    {"name": "deep-4", "overrides": {"num_layers": 4}, "equal_flops": True},
    {"name": "narrow-96x4", "overrides": {"hidden_size": 96, "intermediate_size": 384, "num_layers": 4},
     "equal_flops": True},
    {"name": "nsp-0", "overrides": {"nsp_weight": 0.0}},
    {"name": "nsp-0.1", "overrides": {"nsp_weight": 0.1}},
    {"name": "pre-ln+constant+lr-4e-3", "overrides": {"pre_ln": True, "schedule": "constant", "lr": 4e-3}},
    {"name": "unigram+constant+nsp-0", "overrides": {"mlm_bias_init": "unigram", "schedule": "constant",
                                                     "nsp_weight": 0.0}},
    {"name": "all", "overrides": ALL},
    # "all" less one knob each: which of them it needs. Without pre-LN the model keeps its transformers export.
    *({"name": f"all-no-{knob}", "overrides": {k: v for k, v in ALL.items() if k not in keys}}
      for knob, keys in (("pre-ln", ("pre_ln",)), ("unigram", ("mlm_bias_init",)), ("constant", ("schedule",)),
                         ("lr-4e-3", ("lr",)), ("nsp-0", ("nsp_weight",)), ("mask-25", ("mask_rate", "max_predictions")))),
    # the quick preset's recipe (all-no-pre-ln) on quick_plateau's cosine schedule: does quick need the constant one?
    {"name": "quick-no-constant", "overrides": {k: v for k, v in ALL.items() if k not in ("pre_ln", "schedule")}},
]


@dataclass(frozen=True)
class Candidate:
    name: str
    overrides: dict  # TrainConfig fields -> values, as in the candidates file
    equal_flops: bool = False


@dataclass(frozen=True)
class SearchSettings:
    corpus: str
    out_dir: Path
    results: Path
    cache_dir: str
    seeds: tuple[int, ...]
    steps: int | None  # --steps: every candidate's (before equal_flops scaling); None: the preset's or its own
    threads: int | None


# ---------------------------------------------------------------------------- candidates
def _typed_overrides(overrides, where: str, name: str) -> dict:
    """The overrides with each value read as its command-line flag would read it (cli's range checks)."""
    import argparse

    from bertstudy.training.config import TrainConfig, batch_size_or_auto

    known = {f.name: f for f in fields(TrainConfig)}
    if not isinstance(overrides, dict):
        raise BadInputError(where, f"candidate {name!r}: overrides must be an object of field: value")
    typed = {}
    for key, value in overrides.items():
        if key not in known or key in RESERVED or key == "auto_batch":
            why = "is set by the search" if key in RESERVED else "is not a training option (train_large_100k.py --help)"
            raise BadInputError(where, f"candidate {name!r}: {key!r} {why}")
        kind = batch_size_or_auto if key == "batch_size" else known[key].metadata["type"]
        if kind is bool:
            if not isinstance(value, bool):
                raise BadInputError(where, f"candidate {name!r}: {key} must be true or false, got {value!r}")
            typed[key] = value
            continue
        if isinstance(value, (bool, list, dict)) or value is None:
            raise BadInputError(where, f"candidate {name!r}: {key} must be a number or a string, got {value!r}")
        try:
            typed[key] = kind(str(value))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise BadInputError(where, f"candidate {name!r}: {key}: {exc}") from None
    return typed


def config_of(typed: dict):
    """The TrainConfig a candidate trains with (before the search's own fields)."""
    from bertstudy.training.config import preset_config, with_batch_choice

    return preset_config(PRESET, **with_batch_choice(typed))


def parse_candidates(items, where: str) -> list[Candidate]:
    """Candidates from a list of {name, overrides[, equal_flops]}; anything else is a BadInputError naming
    `where` (the file). Each is checked as the training would check it (validate), before any training."""
    if not isinstance(items, list) or not items:
        raise BadInputError(where, "must be a non-empty JSON list of {\"name\": ..., \"overrides\": {...}}")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise BadInputError(where, f"each candidate needs a non-empty \"name\", got {json.dumps(item, ensure_ascii=False)[:80]}")
        name = item["name"]
        extra = sorted(set(item) - {"name", "overrides", "equal_flops"})
        if extra:
            raise BadInputError(where, f"candidate {name!r}: unknown key(s) {', '.join(extra)} (name, overrides, equal_flops)")
        if name in seen or "/" in name or name.startswith("."):
            raise BadInputError(where, f"candidate {name!r}: " + ("the name repeats" if name in seen else "not a folder name"))
        seen.add(name)
        if not isinstance(item.get("equal_flops", False), bool):
            raise BadInputError(where, f"candidate {name!r}: equal_flops must be true or false")
        typed = _typed_overrides(item.get("overrides", {}), where, name)
        try:
            config_of(typed)
        except UsageError as exc:
            raise BadInputError(where, f"candidate {name!r}: {exc}") from None
        out.append(Candidate(name, dict(item.get("overrides", {})), item.get("equal_flops", False)))
    return out


def load_candidates(path: str | None) -> list[Candidate]:
    if path is None:
        return parse_candidates(DEFAULT_CANDIDATES, "the built-in candidates")
    return parse_candidates(read_json(path), path)


def select(candidates: list[Candidate], only: list[str] | None) -> list[Candidate]:
    if not only:
        return candidates
    names = [c.name for c in candidates]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise UsageError(f"--only: no candidate named {', '.join(unknown)}; the candidates are {', '.join(names)}")
    return [c for c in candidates if c.name in only]


# ---------------------------------------------------------------------------- one candidate
def flops_per_step(config, vocab_size: int = 5000) -> float:
    """Training FLOPs of one step of `config` (6 N + attention per token, x global batch x sequence length);
    the vocabulary only adds the MLM bias to N, so a nominal size serves for comparisons."""
    from bertstudy.model import BertForPretraining, training_flops_per_token
    from bertstudy.training.trainer import model_config_for

    model = BertForPretraining(model_config_for(config, vocab_size))
    return float(training_flops_per_token(model, config.max_seq_len) * config.global_batch * config.max_seq_len)


def candidate_steps(candidate: Candidate, steps: int | None) -> int:
    """--steps (else the candidate's own, else the preset's), scaled to the preset's FLOPs with equal_flops."""
    from bertstudy.training.config import preset_config

    typed = _typed_overrides(candidate.overrides, "candidates", candidate.name)
    base = steps or typed.get("steps") or preset_config(PRESET).steps
    if not candidate.equal_flops:
        return int(base)
    ratio = flops_per_step(preset_config(PRESET)) / flops_per_step(config_of(typed))
    return max(1, round(base * ratio))


def run_key(candidate: Candidate, seed: int, steps: int) -> dict:
    return {"name": candidate.name, "seed": seed, "overrides": candidate.overrides, "steps": steps}


def run_folder(settings: SearchSettings, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return settings.out_dir / f"{key['name']}_seed{key['seed']}_{digest}"


def train_fields(settings: SearchSettings, candidate: Candidate, seed: int, steps: int, folder: Path) -> dict:
    """The fields the search sets for one run, as config.given_fields gives a command line's (`preset`
    included): the search's own, the candidate's overrides (its `steps` replaced by `steps`), the threads
    when the search has them. run_training checks them against the run's config on a resume."""
    from bertstudy.training.config import with_batch_choice

    typed = _typed_overrides(candidate.overrides, "candidates", candidate.name)
    typed.pop("steps", None)
    given = {"preset": PRESET, "corpus": str(settings.corpus), "cache_dir": str(settings.cache_dir),
             "out_dir": str(folder), "seed": seed, "progress": False, **with_batch_choice(typed), "steps": steps}
    if settings.threads is not None:
        given["threads"] = settings.threads
    return given


def train_config(given: dict) -> TrainConfig:
    """The run's TrainConfig: what `given` asks for, as from a command line."""
    from bertstudy.training.config import config_from_given

    return config_from_given(given)


def train_candidate(config: TrainConfig, given: dict) -> int:
    """Train one run: resumed from the newest valid checkpoint in its folder, else started there (without
    threads in `config`, run_training's resolve_run takes the free cores). An error is its exit code (its
    one line `error: ...` on stderr, as a script prints it), an interrupt 130."""
    from bertstudy.base.cli import run_main

    def train() -> int:
        from bertstudy.training.run import run_training  # torch only once a run trains

        return run_training(config, resume="auto", given=given, if_possible=True)

    return run_main(train)


def _seconds_at(history: dict, step: int) -> float:
    """Training seconds at `step`: elapsed_s of the last training log point at or before it (0 at step 0)."""
    seconds = 0.0
    for logged, elapsed in zip(history.get("steps", []), history.get("elapsed_s", [])):
        if logged > step:
            break
        seconds = elapsed
    return float(seconds)


def probe_answers(folder: Path, sentences=PROBE_SENTENCES, top_k: int = TOP_K) -> list[dict]:
    """fill_mask.py --json's rows, from the run's final model (no export: a pre-LN model has none)."""
    import torch

    from bertstudy.model import BertConfig, BertForPretraining
    from bertstudy.pretraining.vocab import load_vocab
    from bertstudy.training.checkpoint import load_final_model
    from bertstudy.training.fill_mask import fill_mask

    state = load_final_model(folder / FINAL_MODEL_NAME)
    vocab = load_vocab(folder / VOCAB_NAME)
    if state["vocab_hash"] != vocab.hash:
        raise BadInputError(folder / FINAL_MODEL_NAME, f"was trained with another vocabulary than {folder / VOCAB_NAME}")
    model = BertForPretraining(BertConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    with torch.no_grad():
        rows = [fill_mask(model.eval(), vocab.tokens, text, top_k=top_k) for text in sentences]
    return [{"text": text, "masks": [[{"token": t, "prob": round(p, 6)} for t, p in row] for row in masks]}
            for text, masks in zip(sentences, rows)]


def result_record(key: dict, equal_flops: bool, folder: Path) -> dict:
    """The results line of a finished candidate, from its history and final model."""
    history = read_json(folder / HISTORY_NAME)
    steps, accs = history.get("eval_steps", []), history.get("eval_mask_acc") or []
    level = ((history.get("meta") or {}).get("shortcut") or {}).get("mask_level")
    target = 2 * level if level is not None else None
    reached = next((s for s, a in zip(steps, accs) if target is not None and a >= target), None)
    best = max(range(len(accs)), key=lambda i: (accs[i], -i)) if accs else None
    return {**key, "equal_flops": equal_flops, "status": "done", "run_dir": str(folder),
            "config": history["meta"]["config"], "steps_done": history["steps"][-1] if history.get("steps") else 0,
            "seconds": history["elapsed_s"][-1] if history.get("elapsed_s") else 0.0,
            "final_mask_acc": accs[-1] if accs else None, "best_mask_acc": accs[best] if accs else None,
            "best_step": steps[best] if accs else None, "shortcut_mask_level": level, "target": target,
            "step_to_target": reached, "seconds_to_target": None if reached is None else _seconds_at(history, reached),
            "eval": {"steps": steps, "mask_acc": accs, "seconds": [_seconds_at(history, s) for s in steps]},
            "probes": probe_answers(folder), "time": time.time()}


# ---------------------------------------------------------------------------- the search
RESULT_KEYS = ("name", "seed", "overrides", "steps")  # what identifies a results line (run_key)


def read_results(results: Path, required=RESULT_KEYS) -> list[dict]:
    """The results file's lines; one not a dict with the `required` keys is bad input naming file and line."""
    records = []
    for lineno, record in iter_jsonl(results):
        if not isinstance(record, dict) or not set(required) <= set(record):
            raise BadInputError(results, f"not a results line of this search ({', '.join(required)})", line=lineno)
        records.append(record)
    return records


def done_keys(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [{k: record[k] for k in RESULT_KEYS} for record in read_results(results)]


def append_line(results: Path, record: dict) -> None:
    """The file rewritten with one more line, atomically: a crash leaves the old file or the new one."""
    before = read_text_utf8(results) if results.exists() and results.stat().st_size else ""
    if before and not before.endswith("\n"):
        before += "\n"
    atomic_write_text(results, before + json.dumps(record, ensure_ascii=False) + "\n")


def summary_line(record: dict) -> str:
    """What the search prints for a finished candidate."""
    reached = record["seconds_to_target"]
    answers = "; ".join(f"{p['text']} -> {' '.join(c['token'] for c in p['masks'][0])}" for p in record["probes"])
    return (f"{record['name']} (seed {record['seed']}, {record['steps']} steps, {record['seconds']:.0f} s): held-out "
            f"[MASK] {percent(record['final_mask_acc'])} (best {percent(record['best_mask_acc'])}), shortcut "
            f"{percent(record['shortcut_mask_level'])}, target {percent(record['target'])} "
            f"{'never reached' if reached is None else f'reached at {reached:.0f} s'}; {answers}")


def run_search(candidates: list[Candidate], settings: SearchSettings,
               train: Callable[[TrainConfig, dict], int] | None = None) -> int:
    """Train and record every (candidate, seed) not yet in the results file; `train(config, given)` trains one
    run and returns its exit code (default train_candidate). A candidate whose training could not finish
    (exit 4: non-finite losses, a full disk) is recorded with status "failed" and the search goes on; an
    interruption (130), a usage or input error (2, 3: nothing a next candidate would do better) stops it
    with that code, recording nothing: a rerun continues (the run resumes from its checkpoint)."""
    train = train or train_candidate
    done = done_keys(settings.results)
    failed = 0
    for candidate in candidates:
        for seed in settings.seeds:
            steps = candidate_steps(candidate, settings.steps)
            key = run_key(candidate, seed, steps)
            if key in done:
                print(f"{candidate.name} (seed {seed}, {steps} steps): in {settings.results} already; skipped")
                continue
            folder = run_folder(settings, key)
            print(f"{candidate.name} (seed {seed}, {steps} steps): training in {folder}", file=sys.stderr)
            given = train_fields(settings, candidate, seed, steps, folder)
            code = train(train_config(given), given)
            if code in (EXIT_INTERRUPTED, EXIT_USAGE, EXIT_BAD_INPUT):
                return code
            if code != EXIT_OK:
                failed += 1
                append_line(settings.results, {**key, "equal_flops": candidate.equal_flops, "status": "failed",
                                               "exit_code": code, "run_dir": str(folder), "time": time.time()})
                print(f"{candidate.name} (seed {seed}): training failed (exit {code}); recorded", file=sys.stderr)
                continue
            record = result_record(key, candidate.equal_flops, folder)
            append_line(settings.results, record)
            done.append(key)
            print(summary_line(record))
    if failed:
        raise StudyError(f"{failed} candidate(s) failed; their lines in {settings.results} say how "
                         f"(delete a line to try it again)")
    return EXIT_OK
