#!/usr/bin/env python3
"""The across-model test: do models with higher MLM accuracy at the same step make better features?

Steps, in order (docs/ACROSS_MODELS_PLAN.md is the analysis plan, fixed before the runs):
  prepare  the pretraining corpus without the segmentation and sentiment test items, and their split file
  train    the planned runs (6 recipes x 3 seeds + 3 more quick seeds, 1,000 steps each), resumable;
           --shard K/N trains every N-th run, so N processes can share the cores
  probe    each run's milestones on MSRA NER, segmentation and sentiment, with the controls (resumable)
  analyze  the primary endpoint and the secondary analyses, as one JSON, and the chart
  publish  the runs' histories, probe files and controls (no weights) into results/across_models/
Rerun any step to continue it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bertstudy.base import deps  # noqa: E402,F401  (first of ours: a missing package is one line)
from bertstudy.base.cli import make_parser, non_negative_int, positive_int, run_main  # noqa: E402
from bertstudy.base.errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME,  # noqa: E402
                                   EXIT_USAGE, BadInputError)

EXAMPLES = [
    "python scripts/across_models.py prepare",
    "python scripts/across_models.py train --processes 2 --threads 1",
    "python scripts/across_models.py probe --processes 2 --threads 1",
    "python scripts/across_models.py analyze --out results/across_models/analysis.json",
]
DATA_DIR = "data/across_models"
RUNS_DIR = "runs/across_models"


def shard_spec(text: str) -> tuple[int, int]:
    """'1/2' -> (1, 2)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 1/2; got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected 1 <= K <= N in K/N, got {text!r}")
    return index, count


def build_parser():
    parser = make_parser("across_models.py", __doc__.strip().splitlines()[0], EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED])
    parser.add_argument("--data-dir", default=DATA_DIR, help="the prepared corpus and split (default: %(default)s)")
    parser.add_argument("--runs-dir", default=RUNS_DIR, help="one folder per run (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{prepare,train,probe,analyze,publish}")
    prep = sub.add_parser("prepare", help="write the pretraining corpus without the test items, and the split")
    prep.add_argument("--corpus", default="data/embedded/corpus.jsonl",
                      help="the embedded corpus to filter (default: make quickstart's, %(default)s)")
    prep.add_argument("--overwrite", action="store_true",
                      help="replace a split made from another corpus (runs trained on the old one no longer match)")
    train = sub.add_parser("train", help="train the planned runs (resumable)")
    train_split = train.add_mutually_exclusive_group()
    train_split.add_argument("--shard", type=shard_spec, default=(1, 1), metavar="K/N", help="train every N-th run from the K-th")
    train.add_argument("--threads", type=non_negative_int, help="torch CPU threads of each run")
    train.add_argument("--cache-dir", default="data/cache", help="tokenized-corpus cache (default: %(default)s)")
    train_split.add_argument("--processes", type=positive_int, default=1,
                       help="run the shards 1/N..N/N as N processes side by side (default: %(default)s)")
    probe = sub.add_parser("probe", help="probe every finished run's milestones (resumable)")
    probe.add_argument("--threads", type=non_negative_int, default=1, help="torch CPU threads (default: %(default)s)")
    probe_split = probe.add_mutually_exclusive_group()
    probe_split.add_argument("--shard", type=shard_spec, default=(1, 1), metavar="K/N", help="probe every N-th run from the K-th")
    probe_split.add_argument("--processes", type=positive_int, default=1,
                       help="run the shards 1/N..N/N as N processes side by side (default: %(default)s)")
    probe.add_argument("--follow", action="store_true",
                       help="keep probing runs as their training finishes, until every planned run is probed")
    analyze = sub.add_parser("analyze", help="the plan's analysis of the probe files, as JSON, and its chart")
    analyze.add_argument("--out", default=None, help="the analysis JSON (default: RUNS_DIR/analysis.json)")
    analyze.add_argument("--overwrite", action="store_true", help="replace an existing --out and chart")
    publish = sub.add_parser("publish", help="copy the runs' histories, probe files and controls (no weights) to --out")
    publish.add_argument("--out", default="results/across_models", help="the results folder (default: %(default)s)")
    publish.add_argument("--overwrite", action="store_true", help="replace published files that differ")
    return parser


def prepare(args) -> int:
    from bertstudy.across_models.prepare import prepare as write_split
    from bertstudy.base.atomic_io import check_writable_dir

    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise BadInputError(corpus, "no such corpus file (make quickstart collects it; or give --corpus)")
    split = write_split(corpus, check_writable_dir(args.data_dir, "--data-dir"), overwrite=args.overwrite)
    print(f"{split['corpus']}: {split['documents_kept']} documents ({split['documents_dropped']} test documents left out: "
          f"{len(split['segmentation_test_articles'])} articles, {len(split['test_reviews'])} reviews)")
    return EXIT_OK


def train(args) -> int:
    from bertstudy.across_models.plan import STEPS, planned_runs, shard
    from bertstudy.base.atomic_io import check_writable_dir
    from bertstudy.recipe_search import recipes

    corpus = Path(args.data_dir) / "corpus.jsonl"
    if not corpus.is_file():
        raise BadInputError(corpus, "no such corpus file (run `across_models.py prepare` first)")
    out_dir = check_writable_dir(args.runs_dir, "--runs-dir")
    index, count = args.shard
    for run in shard(planned_runs(), index, count):
        settings = recipes.SearchSettings(str(corpus), out_dir, out_dir / f"runs_shard{index}of{count}.jsonl",
                                          args.cache_dir, (run.seed,), STEPS, args.threads)
        code = recipes.run_search([run.candidate], settings)
        if code != EXIT_OK:
            return code
    return EXIT_OK


def probe(args) -> int:
    import torch

    from bertstudy.across_models.probe_pass import probe_all

    if args.threads:
        torch.set_num_threads(args.threads)
    scored, waiting = probe_all(Path(args.data_dir), Path(args.runs_dir), 60.0 if args.follow else 0, args.shard)
    print(f"{scored} checkpoint(s) probed now; {waiting} planned run(s) not finished yet"
          + ("" if not waiting else ": rerun after training"))
    return EXIT_OK


def analyze(args) -> int:
    import json

    from bertstudy.across_models.analysis import analyze as across_analysis
    from bertstudy.across_models.probe_pass import read_probes
    from bertstudy.base.atomic_io import atomic_write_json, atomic_writer
    from bertstudy.charts.across_models import ACROSS_CHART, across_models_chart

    out = Path(args.out or Path(args.runs_dir) / "analysis.json")
    chart = out.parent / ACROSS_CHART
    for path in (out, chart):
        if path.exists() and not args.overwrite:
            raise BadInputError(path, "exists; give --overwrite to replace it")
    docs = read_probes(Path(args.runs_dir))
    if not docs:
        raise BadInputError(Path(args.runs_dir), "has no probed run yet (run `across_models.py probe`)")
    result = across_analysis(docs)
    atomic_write_json(out, result)
    with atomic_writer(chart, "wb", encoding=None) as handle:
        across_models_chart(result).savefig(handle, format="png", dpi=110)
    primary = result["primary"]
    print(json.dumps({k: primary[k] for k in ("n", "rho", "ci", "reading")}))
    if not result["complete"]:
        print(f"warning: {result['runs_probed_at_primary_step']} of {result['runs_planned']} planned runs are probed "
              f"at step {primary['step']}: an interim figure, not the plan's endpoint", file=sys.stderr)
    print(f"wrote {out} and {chart}")
    return EXIT_OK


def publish(args) -> int:
    from bertstudy.across_models.publish import publish as copy_results

    count = copy_results(Path(args.runs_dir), Path(args.out), args.overwrite)
    print(f"{count} files in {args.out}")
    return EXIT_OK


def side_by_side(argv: list[str], command: str, count: int) -> int:
    """This script's `command` as `count` processes, --shard K/count each; the worst exit code of them."""
    import subprocess

    at = argv.index(command)
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv[:at + 1],
                               *_without_processes(argv[at + 1:]), "--shard", f"{k}/{count}"])
             for k in range(1, count + 1)]
    codes = [proc.wait() for proc in procs]
    return max(codes, key=lambda code: (code != 0, code))


def _without_processes(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "processes", 1) > 1:
        return side_by_side(argv, args.command, args.processes)
    commands = {"prepare": prepare, "train": train, "probe": probe, "analyze": analyze, "publish": publish}
    return run_main(lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
