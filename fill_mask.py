"""Fill the [MASK] characters of a Chinese sentence with a model exported by train_large_100k.py."""

from __future__ import annotations

import json
import sys

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base.cli import make_parser, positive_int, run_main
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE


def build_parser():
    parser = make_parser(
        "fill_mask.py",
        "Predict the characters hidden behind [MASK] in a sentence, with the exported model (export_hf/).",
        examples=[
            'python fill_mask.py runs/quick/export_hf "中国[MASK]民"',
            'python fill_mask.py --model-dir export_hf "中国的首都是北[MASK]。" --top-k 5',
            'python fill_mask.py --model-dir runs/quick/export_hf "[MASK][MASK]是中国的首都。" --json',
        ],
        exit_codes=[EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT],
    )
    parser.add_argument("words", nargs="+", metavar="MODEL_DIR TEXT",
                        help="the export folder (or give it as --model-dir) and the sentence, with one or more "
                             "literal [MASK]")
    parser.add_argument("--model-dir", help="export folder (config.json, model.safetensors, vocab.txt)")
    parser.usage = "fill_mask.py [-h] [--top-k TOP_K] [--json] (MODEL_DIR | --model-dir MODEL_DIR) TEXT"
    parser.add_argument("--top-k", type=positive_int, default=5, help="candidates per mask (default 5)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON instead of a table")
    return parser


def parse_args(argv=None):
    """MODEL_DIR TEXT, or TEXT with --model-dir: exactly one of the two ways names the folder."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model_dir is not None:
        if len(args.words) != 1:
            parser.error(f"with --model-dir give only the sentence, got {len(args.words)} arguments")
        args.text = args.words[0]
    elif len(args.words) == 2:
        args.model_dir, args.text = args.words
    else:
        parser.error("give the export folder and the sentence: fill_mask.py MODEL_DIR TEXT "
                     "(or fill_mask.py --model-dir MODEL_DIR TEXT)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        import torch

        from bertstudy.training.hf_export import fill_mask, load_exported

        torch.set_num_threads(min(4, torch.get_num_threads()))
        model, vocab = load_exported(args.model_dir)
        predictions = fill_mask(model, vocab, args.text, top_k=args.top_k)
        if args.json:
            rows = [[{"token": token, "prob": prob} for token, prob in row] for row in predictions]
            print(json.dumps({"text": args.text, "masks": rows}, ensure_ascii=False))
            return EXIT_OK
        for number, row in enumerate(predictions, start=1):
            candidates = "  ".join(f"{token} {prob:.4f}" for token, prob in row)
            print(f"[MASK] {number}: {candidates}")
        return EXIT_OK

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
