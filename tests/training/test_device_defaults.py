"""--compile and --save-interval left unset take the device's value (run_start.device_defaults): eager and a
checkpoint every 2,000 steps on a CPU (as before), compiled and every 10,000 steps on CUDA; a value the
command line or the preset gives stays, and a resumed run keeps its own save interval. CPU only: a CUDA
run is stood in for by the device type a pure function takes, or a Distributed naming a CUDA device whose
planning reads no GPU (--no-amp, --batch-size N)."""

from __future__ import annotations

import shutil

import pytest
import torch

import train_large_100k
from bertstudy.base.atomic_io import read_json
from bertstudy.base.errors import UsageError
from bertstudy.pretraining.loader import DEFAULT_CUDA_WORKERS, resolve_workers
from bertstudy.training import checkpoint as ckpt
from bertstudy.training.config import PRESETS, preset_config
from bertstudy.training.device import Distributed
from bertstudy.training.run_start import device_defaults, resolve_run
from tests.train_helpers import tiny_args, write_tiny_corpus

CUDA = Distributed(device=torch.device("cuda"))  # a torch.device needs no GPU; nothing here allocates on it
CPU = Distributed(device=torch.device("cpu"))
DEVICE_TYPES = ("cpu", "cuda")  # looped over, not parametrized: a test id with "cuda" in it is skipped without a GPU


def test_unset_fields_take_the_device_s_values():
    config = preset_config("large_100k")
    assert config.compile is None and config.save_interval is None  # unset until the run is resolved
    on_cpu, on_cuda = device_defaults(config, "cpu"), device_defaults(config, "cuda")
    assert (on_cpu.compile, on_cpu.save_interval) == (False, 2_000)
    assert (on_cuda.compile, on_cuda.save_interval) == (True, 10_000)
    assert device_defaults(on_cuda, "cuda") is on_cuda and device_defaults(on_cpu, "cuda") is on_cpu  # once set, kept


def test_explicit_values_win_on_either_device():
    for device_type in DEVICE_TYPES:
        for compile_, every in ((False, 123), (True, 7)):
            resolved = device_defaults(preset_config("large_100k", compile=compile_, save_interval=every), device_type)
            assert (resolved.compile, resolved.save_interval) == (compile_, every)


def test_presets_with_their_own_save_interval_keep_it():
    own = {name: values["save_interval"] for name, values in PRESETS.items() if "save_interval" in values}
    assert own == {"quick": 300, "quick_plateau": 300, "cpu_study": 500, "gpu_study": 20_000, "cpu_100k": 5_000}
    for name, every in own.items():
        for device_type in DEVICE_TYPES:
            assert device_defaults(preset_config(name), device_type).save_interval == every
    assert set(PRESETS) - set(own) == {"large_100k"}  # the one that takes the device's


def test_help_and_show_preset_say_what_unset_means(capsys):
    help_text = " ".join(train_large_100k.build_parser().format_help().split())
    assert "torch.compile the model (unset: on for CUDA, off for CPU)" in help_text
    assert "steps between checkpoints (unset: 10,000 on CUDA, 2,000 on CPU) (large_100k: unset; quick: 300" in help_text
    assert "(-1: 4 on CUDA, 0 on CPU" in help_text
    assert train_large_100k.main(["--show-preset", "large_100k"]) == 0
    shown = capsys.readouterr().out
    assert "--compile unset: torch.compile the model (unset: on for CUDA, off for CPU)" in shown
    assert "--save-interval unset: steps between checkpoints (unset: 10,000 on CUDA, 2,000 on CPU)" in shown


def test_four_loader_workers_on_cuda_by_default():
    assert DEFAULT_CUDA_WORKERS == 4
    assert resolve_workers(-1, torch.device("cuda")) == 4 and resolve_workers(-1, torch.device("cpu")) == 0


def _cuda_graph_config(tmp_path, corpus):
    return preset_config("large_100k", compile_mode="reduce-overhead", batch_size=64, grad_accum=2, auto_batch=False,
                         amp=False, threads=1, corpus=str(corpus), out_dir=str(tmp_path / "run"),
                         cache_dir=str(tmp_path / "cache"))


def test_unset_compile_on_cuda_refuses_a_cuda_graph_mode_with_accumulation_before_any_work(tmp_path):
    """On CUDA an unset --compile compiles, so --compile-mode reduce-overhead at 64 x 2 (fixed by --batch-size)
    is refused while the start is planned, as --compile would be; on a CPU it stays eager and is not."""
    corpus = write_tiny_corpus(tmp_path)
    config = _cuda_graph_config(tmp_path, corpus)
    assert config.compile is None
    with pytest.raises(UsageError, match="64 x 2"):
        resolve_run(config, None, {}, False, False, CUDA)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    resolved, plan = resolve_run(config, None, {}, False, False, CPU)
    assert resolved.compile is False and resolved.save_interval == 2_000 and plan.state is None


def _without_save_interval(args: list[str]) -> list[str]:
    at = args.index("--save-interval")
    return args[:at] + args[at + 2:]


@pytest.fixture(scope="module")
def unset_run(tmp_path_factory):
    """A tiny CPU run of large_100k's preset (no save_interval of its own) without --compile or --save-interval."""
    root = tmp_path_factory.mktemp("unset")
    corpus = write_tiny_corpus(root)
    out = root / "run"
    args = _without_save_interval(tiny_args(corpus, out, root / "cache", preset="large_100k", steps=4, eval_interval=2))
    assert "--compile" not in args and "--no-compile" not in args
    assert train_large_100k.main(args) == 0
    return root, corpus, out, args


def test_a_cpu_run_records_the_values_it_resolved(unset_run):
    root, corpus, out, args = unset_run
    resolved = read_json(out / "resolved_config.json")
    assert resolved["compile"] is False and resolved["save_interval"] == 2_000
    assert type(resolved["save_interval"]) is int
    (_, newest), = ckpt.list_checkpoints(out / ckpt.CHECKPOINT_DIR_NAME)  # step 4: the end (2,000 not reached)
    stored = ckpt.load_checkpoint(newest)["config"]
    assert stored["compile"] is False and stored["save_interval"] == 2_000


def test_a_resume_keeps_the_run_s_save_interval(unset_run, tmp_path):
    root, corpus, out, args = unset_run
    # on a CPU, the whole run: resumed to step 6 with its own 2,000 (no --save-interval on the line)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    line = [a if a != str(out) else str(copy) for a in args]
    steps_at = line.index("--steps")
    line[steps_at + 1] = "6"
    assert train_large_100k.main(line + ["--resume"]) == 0
    assert read_json(copy / "resolved_config.json")["save_interval"] == 2_000
    assert read_json(copy / "training_history_100k.json")["steps"][-1] == 6
    assert [step for step, _ in ckpt.list_checkpoints(copy / ckpt.CHECKPOINT_DIR_NAME)] == [4, 6]  # none at 2,000
    # on CUDA the run would keep its 2,000 too (not CUDA's 10,000), and compile (a session field) there
    session = preset_config("large_100k", out_dir=str(out), corpus=str(corpus), cache_dir=str(root / "cache"),
                            amp=False, threads=1)
    resumed, plan = resolve_run(session, "auto", {"steps": 8}, False, False, CUDA)
    assert plan.state is not None and resumed.steps == 8
    assert resumed.save_interval == 2_000 and resumed.compile is True
    # and a --save-interval on the resume line changes it
    resumed, _ = resolve_run(session, "auto", {"steps": 8, "save_interval": 50}, False, False, CUDA)
    assert resumed.save_interval == 50
