"""Every command line of README.md, read from the README at test time, so that the README cannot drift:
lines in fenced shell blocks and inline code that starts with `python`, `make` or `.venv/bin/python`.

- Script lines (`python X.py ...`) run, in README order, as subprocesses in a temporary copy of the
  repository (committed results/ included), on tiny data: each script gets the flags in TINY_FLAGS
  appended, which only shrink the work (fewer articles, a tiny model, fewer resamples, one refresh),
  never change what the line means. A line that cannot run here is in NOT_RUN with the reason; it is
  still checked to parse (argparse accepts it).
- The README's next steps follow `make quickstart`, so the script lines run in a copy where the
  quickstart's own script lines ran first (on tiny data): its corpus in data/embedded/, its run in runs/quick.
- `make` lines are checked with `make -n` (the target exists and expands); the script lines they
  expand to are checked to parse, and those of `make quickstart` (first, in the copy the README's script
  lines then run in) and `make study-cpu` (in a copy of its own) run on tiny data too.
- `torchrun` lines: the one-machine line (`--standalone`) runs with its 2 gloo processes on the CPU on
  tiny data; the several-machine line runs as its 2 machines on this one (one process each, the
  rendezvous endpoint a free local port); both are checked to parse (torchrun's parser and the script's).
- Nothing is lost: the README's visualize line leaves the committed results/*.png byte-identical.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.readme_helpers import (README, README_VENV, ROOT, SCRIPTS, WORKSPACE_FOLDERS, check_parses, expand_placeholders,
                                  is_make, is_torchrun, make_script_lines, make_workspace, not_run_reason,
                                  readme_commands, readme_python, run_line, script_of, snapshot, split_torchrun, tiny)

@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    return expand_placeholders(readme_commands(README.read_text(encoding="utf-8")))


def test_the_readme_has_the_pipeline_lines(commands):
    scripts = {script_of(tokens) for tokens in commands if not is_make(tokens)}
    assert set(SCRIPTS) <= scripts, f"a pipeline script has no README line: {set(SCRIPTS) - scripts}"
    assert any("--resume" in tokens for tokens in commands), "the resume line is gone"
    assert any(is_make(tokens) and "quickstart" in tokens for tokens in commands)


def test_the_readme_says_to_run_the_scripts_with_the_venv_before_its_first_script_line(commands):
    """Once, where the reader needs it: before the first `python X.py` line of the README."""
    text = README.read_text(encoding="utf-8")
    said = text.find(f"`source {README_VENV}/bin/activate`")
    assert said >= 0 and f"`{README_VENV}/bin/python`" in text
    first_script_line = min(text.find(f"`python {script}") for script in SCRIPTS if f"`python {script}" in text)
    assert said < first_script_line
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^VENV \?= {re.escape(README_VENV)}$", makefile, re.M), "the README's venv is the Makefile's"


def test_every_make_line_expands_and_its_script_lines_parse(commands, tmp_path):
    work = make_workspace(tmp_path, "make-n")
    make_lines = [tokens for tokens in commands if is_make(tokens)]
    assert make_lines
    for tokens in make_lines:  # `make -n`: the README's variables and targets exist; nothing is installed
        for script_line in make_script_lines(tokens[1:], work):
            check_parses(script_line)


def test_readme_lines_that_cannot_run_still_parse(commands):
    skipped = [tokens for tokens in commands if not is_make(tokens) and not_run_reason(tokens)]
    for tokens in skipped:
        if script_of(tokens):
            check_parses(tokens)


def test_readme_torchrun_lines_parse(commands):
    """Both torchrun lines: torchrun accepts its part, the training script its own; one line per form."""
    from torch.distributed.run import get_args_parser

    lines = [tokens for tokens in commands if is_torchrun(tokens)]
    assert any("--standalone" in t for t in lines) and any("--nnodes" in t and "--rdzv_endpoint" in t for t in lines)
    for tokens in lines:
        launcher, script_line = split_torchrun(tokens)
        parsed = get_args_parser().parse_args([*launcher, *script_line[1:]])
        assert parsed.training_script == "train_large_100k.py" and parsed.nproc_per_node
        check_parses(script_line)


@pytest.mark.slow  # a torchrun pair
def test_readme_one_machine_torchrun_line_runs_two_gloo_processes(commands, tmp_path):
    """The one-machine line as written (2 processes), gloo on the CPU, tiny data: rank 0 writes one run."""
    from bertstudy.base.atomic_io import iter_jsonl, read_json
    from bertstudy.training import checkpoint as ckpt

    lines = [tokens for tokens in commands if is_torchrun(tokens) and "--standalone" in tokens]
    assert lines
    work = make_workspace(tmp_path, "torchrun")
    for tokens in lines:
        launcher, script_line = split_torchrun(tokens)
        corpus = script_line[script_line.index("--corpus") + 1]
        if not (work / corpus).exists():  # the corpus make quickstart collects
            run_line(tiny(["python", "rare_char_fetch.py", "--source", "embedded", "--out", corpus]), work)
        argv = [readme_python(), "-m", "torch.distributed.run", *launcher, *tiny(script_line)[1:]]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{shlex.join(tokens)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        out_dir = work / script_line[script_line.index("--out-dir") + 1]
        meta = read_json(out_dir / "training_history_100k.json")["meta"]
        processes = int(launcher[launcher.index("--nproc_per_node") + 1])
        assert meta["world_size"] == processes == 2
        assert meta["global_batch"] == 4 * processes  # TINY_TRAIN's batch 4 x 1 per process, times the processes
        starts = [r for _, r in iter_jsonl(out_dir / "training_log_100k.jsonl") if r.get("kind") == "start"]
        assert len(starts) == 1  # one log, written by rank 0 alone
        assert [s for s, _ in ckpt.list_checkpoints(out_dir / "checkpoints_100k")] == [12]
        assert (out_dir / "export_hf").is_dir()


@pytest.mark.slow  # two torchrun launchers
def test_readme_several_machine_torchrun_line_runs_as_two_machines_here(commands, tmp_path):
    """The --nnodes line, started once per machine as the README says, with this machine standing in for
    each: the endpoint becomes a local port and each machine gets one process (the README's
    --nproc_per_node is the GPUs of a machine). Both launchers finish; rank 0 writes one run.

    The c10d rendezvous store is hosted here, by the test, and both launchers join it as clients
    (`--rdzv_conf is_host=false`, the c10d backend's documented option). On a cluster exactly one machine
    matches the endpoint and hosts the store, and torch's exit barrier keeps that launcher alive until
    every node's workers are done. On one host both launchers match 127.0.0.1: the store's host is
    whichever binds first, and a launcher that cannot bind silently joins whatever already listens on the
    port (torch's fallback when is_host is inferred), so a port picked free and released before the
    launchers start, then taken by another job's store on a shared machine, leaves them on a store that
    goes away with that job ("The connection to the C10d store has failed" from num_nodes_waiting()). A
    store the test binds itself and holds until both launchers exit leaves nothing but the launchers to
    fail them; they still rendezvous over c10d as the line says."""
    from torch.distributed import TCPStore

    from bertstudy.base.atomic_io import read_json

    lines = [tokens for tokens in commands if is_torchrun(tokens) and "--nnodes" in tokens]
    assert lines
    work = make_workspace(tmp_path, "torchrun-nodes")
    for tokens in lines:
        launcher, script_line = split_torchrun(tokens)
        machines = int(launcher[launcher.index("--nnodes") + 1])
        assert launcher[launcher.index("--rdzv_backend") + 1] == "c10d" and "--rdzv_conf" not in launcher
        corpus = script_line[script_line.index("--corpus") + 1]
        if not (work / corpus).exists():
            run_line(tiny(["python", "rare_char_fetch.py", "--source", "embedded", "--out", corpus]), work)
        # port 0: the store binds a free port itself and keeps it, so nothing else can take it meanwhile
        store = TCPStore("127.0.0.1", 0, is_master=True, multi_tenant=True, wait_for_workers=False)
        try:
            launcher[launcher.index("--rdzv_endpoint") + 1] = f"127.0.0.1:{store.port}"
            launcher[launcher.index("--nproc_per_node") + 1] = "1"
            launcher += ["--rdzv_conf", "is_host=false"]
            argv = [readme_python(), "-m", "torch.distributed.run", *launcher, *tiny(script_line)[1:]]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"}
            started = [subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True) for _ in range(machines)]
            outputs = [process.communicate(timeout=600)[0] for process in started]
            # the launchers' rendezvous state is in this store (the c10d backend's key for the --rdzv_id)
            rendezvoused_here = store.check([f"torch.rendezvous.{launcher[launcher.index('--rdzv_id') + 1]}"])
        finally:
            del store  # only once no launcher needs it
        # every launcher's output when one failed: the first to fail may only be reporting the other's failure
        report = "\n".join(f"--- launcher {i}: exit {process.returncode}\n{output[-3000:]}"
                           for i, (process, output) in enumerate(zip(started, outputs)))
        assert [process.returncode for process in started] == [0] * machines, f"{shlex.join(tokens)}\n{report}"
        assert rendezvoused_here
        meta = read_json(work / script_line[script_line.index("--out-dir") + 1] / "training_history_100k.json")["meta"]
        assert meta["world_size"] == machines == 2


@pytest.mark.slow  # every README script line as a subprocess, after make quickstart's own
def test_readme_script_lines_run_in_order_on_tiny_data(commands, tmp_path):
    work = make_workspace(tmp_path, "readme")
    committed = snapshot(work / "results")
    assert committed, "results/ holds the committed charts the README shows"
    quickstart = make_script_lines(["quickstart"], work)  # `make quickstart`'s lines: the README's next steps follow it
    assert list(dict.fromkeys(s for s in map(script_of, quickstart) if s in SCRIPTS[:5])) == list(SCRIPTS[:5])
    for tokens in quickstart:
        run_line(tiny(tokens), work)
    assert (work / "data" / "embedded" / "corpus.jsonl").exists() and (work / "runs" / "quick" / "export_hf").is_dir()
    assert snapshot(work / "results") == committed and len(snapshot(work / "results" / "quickstart")) == 5
    ran = []
    for tokens in commands:
        if is_make(tokens) or is_torchrun(tokens) or not_run_reason(tokens):
            continue
        if "wiki-dump" in tokens:
            run_wiki_dump_line(tokens, tmp_path)
            ran.append(tokens)
            continue
        extra = []
        if "--resume" in tokens:
            out_dir = work / tokens[tokens.index("--out-dir") + 1] if "--out-dir" in tokens else work
            if not (out_dir / "checkpoints_100k").exists():
                # Resuming needs an earlier run in that folder: the same line without --resume, stopped early.
                run_line(tiny([t for t in tokens if t != "--resume"]) + ["--steps", "6"], work)
            extra = ["--steps", "16"]  # continue past where the earlier run stopped
        done = run_line(tiny(tokens) + extra, work)
        if script_of(tokens) == "fill_mask.py" and "--help" not in tokens:
            assert done.stdout.startswith("[MASK] 1: ")
        if "--help" in tokens:
            assert "exit codes:" in done.stdout
        ran.append(tokens)
    assert any(script_of(t) == "fill_mask.py" for t in ran) and any("--resume" in t for t in ran)
    # The README's visualize line wrote its charts beside the history, not over the committed ones.
    assert snapshot(work / "results") == committed


def run_wiki_dump_line(tokens: list[str], tmp_path: Path) -> None:
    """The dump line, on a tiny dump of 20 articles saved under the name the README gives."""
    import bz2

    from tests.corpus.test_crawl_faults import _dump_xml

    work = make_workspace(tmp_path, "wiki-dump")
    dump_name = next(t for t in tokens if t.endswith((".xml", ".xml.bz2")))
    (work / dump_name).write_bytes(bz2.compress(_dump_xml(20).encode("utf-8")))
    run_line(tiny(tokens), work)
    assert (work / "data" / "corpus.jsonl").stat().st_size > 0


@pytest.mark.slow  # the make target's whole pipeline, line by line as subprocesses
def test_make_study_cpu_lines_run_on_tiny_data(tmp_path):
    """`make study-cpu`'s lines in order (`make quickstart`'s run first in the README lines' test); the study
    replaces the committed charts on purpose, so its lines say --overwrite."""
    work = make_workspace(tmp_path, "study-cpu")
    committed = snapshot(work / "results")
    lines = make_script_lines(["study-cpu"], work)
    scripts = [script_of(t) for t in lines]
    # the five pipeline stages in order (probe_downstream.py and a second analysis come between them)
    assert list(dict.fromkeys(s for s in scripts if s in SCRIPTS[:5])) == list(SCRIPTS[:5])
    for tokens in lines:
        run_line(tiny(tokens), work)
    after = snapshot(work / "results")
    # seeds.png is drawn only with SEEDS=... (the seeds band); one run leaves the committed one as it is
    seeds_only = {"seeds.png"}
    assert committed.keys() <= after.keys()
    assert all(after[k] != committed[k] for k in committed if k not in seeds_only)
    assert all(after[k] == committed[k] for k in committed if k in seeds_only)


def test_workspace_leaves_out_what_the_users_runs_left(tmp_path):
    """`make quickstart` then `make test`: the quickstart's ignored results/quickstart/ stays out of the copy."""
    repo = tmp_path / "repo"
    for folder in WORKSPACE_FOLDERS:
        (repo / folder).mkdir(parents=True)
    (repo / "results" / "training_curves.png").write_bytes(b"committed")
    (repo / "results" / "quickstart").mkdir()
    (repo / "results" / "quickstart" / "training_curves.png").write_bytes(b"the user's own run")
    (repo / ".gitignore").write_text("results/quickstart/\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    work = make_workspace(tmp_path, "copy", root=repo)
    assert (work / "results" / "training_curves.png").read_bytes() == b"committed"
    assert not (work / "results" / "quickstart").exists()
