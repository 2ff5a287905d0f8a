#!/usr/bin/env python3
"""Stage 3: pretrain a character-level Chinese BERT (MLM + NSP) and record its learning curve.

Writes into --out-dir: vocab.txt, training_log_100k.jsonl, training_history_100k.json,
resolved_config.json, checkpoints_100k/step_XXXXXX.pth, stage4_large_100k_final.pth and export_hf/.
Multi-GPU/CPU: torchrun --nproc_per_node N train_large_100k.py ... (DDP; the global batch is
batch x accumulation x N).
"""

import sys

from bertstudy.cli import make_parser, run_main
from bertstudy.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from bertstudy.train_config import add_config_arguments, config_from_args

EXAMPLES = [
    "python train_large_100k.py --preset quick --corpus data/corpus.jsonl --out-dir runs/quick",
    "python train_large_100k.py --preset cpu_study --out-dir runs/cpu_study --resume",
    "python train_large_100k.py --corpus data/corpus.jsonl --hidden-size 256 --steps 500 --out-dir runs/try",
    "torchrun --nproc_per_node 8 train_large_100k.py --corpus data/corpus.jsonl --out-dir runs/large_100k",
]


def build_parser():
    parser = make_parser("train_large_100k.py", __doc__.strip().splitlines()[0], EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED])
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                        help="continue from the newest valid checkpoint in OUT_DIR/checkpoints_100k "
                             "(or from CHECKPOINT); starts fresh when there is none")
    add_config_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from bertstudy.training_run import run_training  # torch is imported only once the command line is valid

        return run_training(config_from_args(args), resume=args.resume)

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
