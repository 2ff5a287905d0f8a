"""Collect the study's Chinese corpus: the embedded People's Daily + reviews (default), Chinese
Wikipedia through its API, or a MediaWiki XML dump. Writes data/corpus.jsonl (one document per
line) and keeps data/crawl_progress.json current for check_progress.py."""

from __future__ import annotations

import sys

from bertstudy.base import deps  # noqa: F401  (first: a missing package is one line, not a traceback)
from bertstudy.base.atomic_io import check_writable_file
from bertstudy.base.cli import make_parser, non_negative_float, positive_float, positive_int, run_main
from bertstudy.corpus.collect import build_config, collect, summary_lines
from bertstudy.corpus.corpus_io import check_corpus_out
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from bertstudy.corpus.sources.embedded import PARTS


def build_parser():
    parser = make_parser(
        "rare_char_fetch.py",
        __doc__,
        [
            "python rare_char_fetch.py                                   # embedded corpus -> data/corpus.jsonl",
            "python rare_char_fetch.py --embedded-parts reviews --out /tmp/reviews.jsonl",
            "python rare_char_fetch.py --source wiki-api --target-vocab 10000 --max-rps 1",
            "python rare_char_fetch.py --source wiki-dump zhwiki-latest-pages-articles.xml.bz2 --workers 8",
        ],
        [EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_INTERRUPTED],
        {EXIT_RUNTIME: "the collection could not finish (disk full, the server gave up)"},
    )
    parser.add_argument("--source", nargs="+", default=["embedded"], metavar="SOURCE",
                        help="embedded (default), wiki-api, or wiki-dump PATH")
    parser.add_argument("--out", default="data/corpus.jsonl",
                        help="corpus to write (default %(default)s); an existing one is replaced only by a collection "
                             "from the same source (its documents' source field), else --overwrite is needed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out that holds another source's corpus (e.g. a crawl) or another file")
    parser.add_argument("--progress", help="progress file (default: crawl_progress.json beside --out)")
    parser.add_argument("--state", help="wiki-api resume state (default: crawl_state.json beside --out)")
    parser.add_argument("--embedded-parts", nargs="+", choices=PARTS, default=list(PARTS), help="which embedded texts (default: both)")
    parser.add_argument("--min-len", type=positive_int, default=10, help="shortest sentence kept, characters (default 10)")
    parser.add_argument("--max-len", type=positive_int, default=200, help="longest sentence kept, characters (default 200)")
    parser.add_argument("--keep-traditional", action="store_true", help="skip the OpenCC t2s conversion")
    parser.add_argument("--target-vocab", type=positive_int, help="stop once this many distinct characters are collected (wiki-api default 10000)")
    parser.add_argument("--target-sentences", type=positive_int, help="stop after this many sentences")
    parser.add_argument("--max-articles", type=positive_int, help="stop after this many documents")
    api = parser.add_argument_group("wiki-api")
    api.add_argument("--api-url", default="https://zh.wikipedia.org/w/api.php", help="MediaWiki api.php (default %(default)s)")
    api.add_argument("--keywords", help="domain keywords JSON, also labels wiki-dump pages (default: bertstudy/data/domain_keywords.json)")
    api.add_argument("--per-keyword", type=positive_int, default=20, help="pages listed per keyword by search and by category (default 20)")
    api.add_argument("--max-rps", type=positive_float, default=2.0, help="requests per second at most (default 2)")
    api.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per request (default 30)")
    api.add_argument("--max-retries", type=positive_int, default=6, help="retries per request (default 6)")
    api.add_argument("--retry-base-delay", type=non_negative_float, default=1.0, help="first backoff in seconds, doubled each retry (default 1)")
    api.add_argument("--retry-max-delay", type=non_negative_float, default=60.0, help="longest single wait, Retry-After included (default 60)")
    api.add_argument("--contact", default="https://example.org/chinese-bert-correlation (set --contact to your URL or e-mail)",
                     help="contact put in the User-Agent, as Wikimedia's policy asks")
    api.add_argument("--restart", action="store_true", help="ignore an existing crawl state and start over")
    api.add_argument("--no-progress-bar", action="store_true", help="no tqdm bar")
    dump = parser.add_argument_group("wiki-dump")
    dump.add_argument("--workers", type=positive_int, help="processes converting wikitext (default: all cores)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def fetch() -> int:
        check_writable_file(args.out, "--out")  # before the crawl: a bad path fails at once, not after it
        config = build_config(args)
        check_corpus_out(config.out, config.source, args.overwrite)  # a crawl saved there is not lost
        result = collect(config)
        for line in summary_lines(config, result):
            print(line)
        return EXIT_OK

    return run_main(fetch)


if __name__ == "__main__":
    sys.exit(main())
