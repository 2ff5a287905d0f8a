"""Fill the [MASK] characters of Chinese sentences with a model exported by train_large_100k.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base.cli import make_parser, positive_int, run_main
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, UsageError


def build_parser():
    parser = make_parser(
        "fill_mask.py",
        "Predict the characters hidden behind [MASK] in one or more sentences, with the exported model (export_hf/).",
        examples=[
            'python fill_mask.py runs/quick/export_hf "中国[MASK]民"',
            'python fill_mask.py --model-dir export_hf "中国的首都是北[MASK]。" --top-k 5',
            'python fill_mask.py --model-dir runs/quick/export_hf "[MASK][MASK]是中国的首都。" --json',
            'python fill_mask.py runs/quick/export_hf "中国[MASK]民" "北京是中国的首[MASK]" "我们明[MASK]去上学" --top-k 3',
        ],
        exit_codes=[EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT],
    )
    parser.add_argument("words", nargs="+", metavar="MODEL_DIR TEXT",
                        help="the export folder (or give it as --model-dir) and one or more sentences, each with "
                             "one or more literal [MASK]")
    parser.add_argument("--model-dir", help="export folder (config.json, model.safetensors, vocab.txt)")
    parser.usage = "fill_mask.py [-h] [--top-k TOP_K] [--json] (MODEL_DIR | --model-dir MODEL_DIR) TEXT [TEXT ...]"
    parser.add_argument("--top-k", type=positive_int, default=5, help="candidates per mask (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print the predictions as JSON instead of a table (one object a line, one per sentence)")
    return parser


def parse_args(argv=None):
    """MODEL_DIR TEXT [TEXT ...], or TEXT [TEXT ...] with --model-dir: exactly one of the two ways names
    the folder (a folder among the sentences after --model-dir is refused: it was meant as the folder)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model_dir is not None:
        folders = [word for word in args.words if Path(word).is_dir()]
        if folders:
            parser.error(f"with --model-dir give only sentences, got the folder {folders[0]} too")
        args.texts = list(args.words)
    elif len(args.words) >= 2:
        args.model_dir, args.texts = args.words[0], list(args.words[1:])
    else:
        parser.error("give the export folder and the sentence(s): fill_mask.py MODEL_DIR TEXT [TEXT ...] "
                     "(or fill_mask.py --model-dir MODEL_DIR TEXT [TEXT ...])")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def fill_masks():
        import torch

        from bertstudy.training.fill_mask import MASK, fill_mask
        from bertstudy.training.hf_export import load_exported

        no_mask = [text for text in args.texts if MASK not in text]
        if no_mask:  # before loading the model, and before printing any other sentence's answers
            text = no_mask[0]
            found = re.search(re.escape(MASK), text, flags=re.IGNORECASE)  # [mask]: the vocabulary's token is upper case
            hint = f"; write {MASK} in capitals, not {found.group(0)}" if found else ""
            raise UsageError(f"text has no {MASK} to fill: {text!r}{hint}")
        torch.set_num_threads(min(4, torch.get_num_threads()))
        model, vocab = load_exported(args.model_dir)
        for text in args.texts:
            predictions = fill_mask(model, vocab, text, top_k=args.top_k)
            if args.json:
                rows = [[{"token": token, "prob": prob} for token, prob in row] for row in predictions]
                print(json.dumps({"text": text, "masks": rows}, ensure_ascii=False))
                continue
            if len(args.texts) > 1:  # one sentence: the table alone
                print(text)
            for number, row in enumerate(predictions, start=1):
                candidates = "  ".join(f"{token} {prob:.4f}" for token, prob in row)
                print(f"[MASK] {number}: {candidates}")
        return EXIT_OK

    return run_main(fill_masks)


if __name__ == "__main__":
    sys.exit(main())
