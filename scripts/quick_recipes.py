#!/usr/bin/env python3
"""Search training recipes for the quick preset: train each candidate and record one JSON line.

Each candidate (a name and overrides of --preset quick_plateau, the recipe before the search) trains into its
own folder under --out-dir, the run `train_large_100k.py --resume-if-possible` with those flags would make;
its line in --results holds its config, steps, training seconds, held-out [MASK] accuracy (final, best, by
eval), the shortcut level (the most frequent character's share) and the target (twice it) with the seconds
to reach it, and the top 3 for the probe sentences. Rerun the same command to continue:
recorded candidates are skipped, an interrupted one resumes from its checkpoint. The search is
bertstudy/recipe_search/recipes.py; --list shows the built-in candidates.
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
    "python scripts/quick_recipes.py --list",
    "python scripts/quick_recipes.py --only baseline,constant,pre-ln --threads 1",
    "python scripts/quick_recipes.py --candidates my_recipes.json --seeds 1,2 --steps 2400",
    "python scripts/quick_recipes.py --table --results results/quick_recipes/recipes.jsonl",
]


def seed_list(text: str) -> list[int]:
    """'1,2' -> [1, 2]: distinct non-negative seeds."""
    try:
        seeds = [non_negative_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected seeds separated by commas, e.g. 1,2; got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed repeats in {text!r}")
    return seeds


def name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected candidate names separated by commas")
    return names


def print_table(results: Path) -> int:
    from bertstudy.recipe_search.recipe_table import markdown_table
    from bertstudy.recipe_search.recipes import RESULT_KEYS, read_results

    if not results.is_file():
        raise BadInputError(results, "no such results file (the search writes it; or give --results)")
    print(markdown_table(read_results(results, (*RESULT_KEYS, "status"))), end="")
    return EXIT_OK


def build_parser():
    parser = make_parser("quick_recipes.py", __doc__.strip().splitlines()[0], EXAMPLES,
                         [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED],
                         {EXIT_RUNTIME: "a candidate's training could not finish (its line says status failed)",
                          EXIT_INTERRUPTED: "interrupted; rerun the same command to continue"})
    parser.add_argument("--candidates", metavar="FILE.json",
                        help="a JSON list of {\"name\", \"overrides\": {field: value}, \"equal_flops\": bool}; "
                             "default: the built-in list (every knob once against the preset, a few combinations)")
    parser.add_argument("--only", type=name_list, metavar="NAME,...", help="run these candidates only")
    parser.add_argument("--seeds", type=seed_list, default=[42], metavar="S,S,...",
                        help="pretraining seeds, one run per candidate and seed (default: 42, the preset's)")
    parser.add_argument("--steps", type=positive_int, help="every candidate's steps (default: the preset's 1,200 "
                                                           "or the candidate's own; equal_flops scales it)")
    parser.add_argument("--corpus", default="data/embedded/corpus.jsonl",
                        help="the corpus (default: make quickstart's, %(default)s)")
    parser.add_argument("--cache-dir", default="data/cache", help="tokenized-corpus cache (default: %(default)s)")
    parser.add_argument("--out-dir", default="runs/recipes", help="one run folder per candidate and seed under it "
                                                                  "(default: %(default)s)")
    parser.add_argument("--results", help="the JSON Lines results (default: OUT_DIR/recipes.jsonl)")
    parser.add_argument("--threads", type=non_negative_int,
                        help="torch CPU threads of each run (default: train_large_100k.py's choice from the free cores)")
    parser.add_argument("--list", action="store_true", help="print the candidates and exit")
    parser.add_argument("--table", action="store_true", help="print the results file as a Markdown table (fastest to "
                                                             "the target first) and exit; trains nothing")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def search():
        import json

        from bertstudy.base.atomic_io import check_writable_dir, check_writable_file
        from bertstudy.recipe_search import recipes

        candidates = recipes.select(recipes.load_candidates(args.candidates), args.only)
        if args.list:
            for c in candidates:
                print(f"{c.name}: {json.dumps(c.overrides, ensure_ascii=False)}" + (" (equal FLOPs)" if c.equal_flops else ""))
            return EXIT_OK
        if args.table:
            return print_table(Path(args.results or Path(args.out_dir) / "recipes.jsonl"))
        corpus = Path(args.corpus)
        if not corpus.is_file():
            raise BadInputError(corpus, "no such corpus file (make quickstart collects it; or give --corpus)")
        out_dir = check_writable_dir(args.out_dir, "--out-dir")
        results = check_writable_file(args.results or out_dir / "recipes.jsonl", "--results")
        settings = recipes.SearchSettings(str(corpus), out_dir, results, args.cache_dir, tuple(args.seeds), args.steps,
                                          args.threads)
        return recipes.run_search(candidates, settings)

    return run_main(search)


if __name__ == "__main__":
    sys.exit(main())
