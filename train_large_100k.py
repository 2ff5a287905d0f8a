#!/usr/bin/env python3
"""Stage 3: pretrain a character-level Chinese BERT (MLM + NSP) and record its learning curve.

Writes into --out-dir: vocab.txt, training_log_100k.jsonl, training_history_100k.json,
resolved_config.json, checkpoints_100k/step_XXXXXX.pth, stage4_large_100k_final.pth and export_hf/.
A folder that already holds a run is never replaced silently: continue it with --resume, or
replace it with --overwrite. Multi-GPU/CPU: torchrun --nproc_per_node N train_large_100k.py ...
(DDP; the global batch is batch x accumulation x N).
"""

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base.cli import exit_script, make_parser, run_main
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from bertstudy.training.config import PRESETS, add_config_arguments, config_from_args, describe_preset, given_fields

EXAMPLES = [
    "python train_large_100k.py --preset quick --corpus data/corpus.jsonl --out-dir runs/quick",
    "python train_large_100k.py --out-dir runs/quick --resume",
    "python train_large_100k.py --preset cpu_study --out-dir runs/cpu_study --resume-if-possible",
    "python train_large_100k.py --corpus data/corpus.jsonl --hidden-size 256 --steps 500 --out-dir runs/try",
    "python train_large_100k.py --show-preset quick",
    "torchrun --nproc_per_node 8 train_large_100k.py --corpus data/corpus.jsonl --out-dir runs/large_100k",
]


def build_parser():
    parser = make_parser("train_large_100k.py", __doc__.strip().splitlines()[0], EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED],
                         {EXIT_RUNTIME: "the run could not finish (disk full, non-finite losses)",
                          EXIT_INTERRUPTED: "interrupted by SIGINT/SIGTERM after saving a checkpoint (continue with --resume)"})
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                       help="continue the run in --out-dir from its newest valid checkpoint (or from CHECKPOINT), "
                            "with the run's own config; only --steps, the intervals, --keep-last, --max-nonfinite, "
                            "--corpus/--cache-dir (same content) and this session's --device, --threads, --amp, "
                            "--compile, --progress may be given. Fails when there is no checkpoint")
    start.add_argument("--resume-if-possible", action="store_true",
                       help="for scripts: --resume when --out-dir holds a checkpoint, else start a new run")
    start.add_argument("--overwrite", action="store_true",
                       help="start a new run in an --out-dir that holds another run, deleting its checkpoints "
                            "and log (without it such a folder is refused)")
    parser.add_argument("--show-preset", choices=sorted(PRESETS), metavar="NAME",
                        help=f"print the values of preset NAME ({', '.join(PRESETS)}) and exit")
    add_config_arguments(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_preset:
        print(describe_preset(args.show_preset))
        return EXIT_OK

    def train() -> int:
        from bertstudy.training.run import run_training  # torch is imported only once the command line is valid

        resume = "auto" if args.resume_if_possible else args.resume
        return run_training(config_from_args(args), resume=resume, given=given_fields(args),
                            overwrite=args.overwrite, if_possible=args.resume_if_possible)

    return run_main(train)


if __name__ == "__main__":
    exit_script(main())
