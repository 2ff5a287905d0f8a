#!/usr/bin/env python3
"""Verify the corpus: compute its quality figures, print a report, write it as JSON, and exit 1
when a threshold fails. The figures are computed from the sentences, never read from metadata."""

from __future__ import annotations

import sys

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base import cli
from bertstudy.base.atomic_io import atomic_write_json, check_writable_file
from bertstudy.corpus.dataset_report import (AUTO_PROFILE, PROFILES, ReportConfig, build_report, check_report_out,
                                             format_report)
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE


THRESHOLD_FLAGS = (
    ("--min-sentences", cli.non_negative_int, "minimum number of sentences"),
    ("--min-vocab", cli.non_negative_int, "minimum distinct characters"),
    ("--min-mean-len", cli.non_negative_float, "minimum mean sentence length (characters)"),
    ("--max-mean-len", cli.positive_float, "maximum mean sentence length (characters)"),
    ("--max-dup-rate", cli.unit_float, "exact duplicate sentences must be below this share"),
    ("--max-near-dup-rate", cli.unit_float, "near-duplicate distinct sentences must be below this share"),
    ("--max-non-cjk-share", cli.unit_float, "maximum share of characters that are not CJK ideographs"),
    ("--max-traditional-share", cli.unit_float, "maximum share of characters OpenCC t2s would change"),
)


def _profile_defaults(name: str) -> str:
    """'embedded: 60000; original: 100000': a threshold's value in each profile (--help shows the defaults)."""
    shown = []
    for profile in sorted(PROFILES):
        value = getattr(PROFILES[profile], name)
        shown.append(f"{profile}: {'unchecked' if value is None else format(value, 'g')}")
    return "; ".join(shown)


def build_parser():
    parser = cli.make_parser(
        "verify_dataset.py",
        "Compute the corpus's quality (size, vocabulary, lengths, duplicates, near duplicates, script, "
        "traditional residue, domains, sources) and check it against thresholds.",
        examples=[
            "python verify_dataset.py data/corpus.jsonl --profile embedded",
            "python verify_dataset.py chinese_dataset_100k.json          # the original study's format",
            "python verify_dataset.py data/corpus.jsonl --min-vocab 8000 --max-near-dup-rate 0.05",
        ],
        exit_codes=[EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_BAD_INPUT],
        exit_code_lines={EXIT_CHECK_FAILED: "a threshold check failed (the report is written all the same)"},
    )
    parser.add_argument("corpus", nargs="?", default="data/corpus.jsonl", help="corpus: ours (JSONL) or the original's JSON (default: %(default)s)")
    parser.add_argument("--report", default="data/dataset_report.json",
                        help="where to write the JSON report (default: %(default)s); an existing file there is "
                             "replaced only when it is a dataset report, else --overwrite is needed")
    parser.add_argument("--overwrite", action="store_true", help="replace a --report file that is not a dataset report")
    parser.add_argument("--profile", choices=[AUTO_PROFILE, *sorted(PROFILES)], default=AUTO_PROFILE,
                        help="threshold profile (default: %(default)s = 'embedded' when every document's recorded "
                             "source is the embedded corpus, else 'original', the original study's)")
    limits = parser.add_argument_group("thresholds (override the profile's; defaults: each profile's value, "
                                       "'unchecked' = reported only)")
    for flag, kind, text in THRESHOLD_FLAGS:
        limits.add_argument(flag, type=kind, help=f"{text} ({_profile_defaults(flag[2:].replace('-', '_'))})")
    figures = parser.add_argument_group("how figures are computed")
    defaults = ReportConfig()
    figures.add_argument("--near-dup-threshold", type=cli.open_unit_float, default=defaults.near_dup_threshold, help="Jaccard of character shingles that counts as a near duplicate (default: %(default)s)")
    figures.add_argument("--num-perm", type=cli.positive_int, default=defaults.num_perm, help="MinHash permutations (default: %(default)s)")
    figures.add_argument("--shingle-size", type=cli.positive_int, default=defaults.shingle_size, help="character n-gram size (default: %(default)s)")
    figures.add_argument("--seed", type=cli.non_negative_int, default=defaults.seed, help="MinHash seed (default: %(default)s)")
    figures.add_argument("--hist-bin-width", type=cli.positive_int, default=defaults.hist_bin_width, help="length histogram bin width (default: %(default)s)")
    figures.add_argument("--hist-max", type=cli.positive_int, default=defaults.hist_max, help="lengths from here go to the overflow bin (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="print only the result line")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def verify() -> int:
        check_writable_file(args.report, "--report")  # before the work: near duplicates take a while
        check_report_out(args.report, args.overwrite)  # an unrelated JSON there is not replaced
        config = ReportConfig(
            near_dup_threshold=args.near_dup_threshold,
            num_perm=args.num_perm,
            shingle_size=args.shingle_size,
            seed=args.seed,
            hist_bin_width=args.hist_bin_width,
            hist_max=args.hist_max,
        )
        overrides = dict(
            min_sentences=args.min_sentences,
            min_vocab=args.min_vocab,
            min_mean_len=args.min_mean_len,
            max_mean_len=args.max_mean_len,
            max_dup_rate=args.max_dup_rate,
            max_near_dup_rate=args.max_near_dup_rate,
            max_non_cjk_share=args.max_non_cjk_share,
            max_traditional_share=args.max_traditional_share,
        )
        report = build_report(args.corpus, config, profile=args.profile, overrides=overrides)
        atomic_write_json(args.report, report)
        text = format_report(report)
        print(text.splitlines()[-1] if args.quiet else text)
        print(f"report written to {args.report}")
        return EXIT_OK if report["passed"] else EXIT_CHECK_FAILED

    return cli.run_main(verify)


if __name__ == "__main__":
    sys.exit(main())
