"""The README's test counts are checked against the suite: each "N tests" (or "about N tests") in its
Tests section is the count `pytest --collect-only` gives for the make target named last before it
(`make test`: the whole suite; `make test-fast`: the tests not marked slow). The time beside a count was
measured with that many tests, so a count off by more than the tolerance means the time is stale too."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = re.compile(r"^#{2,3} Test(?:s|ing)?\b.*?$(.*?)(?=^#{1,3} |\Z)", re.MULTILINE | re.DOTALL)
CLAIM = re.compile(r"\b(about |~)?(\d[\d,]*) tests\b")
TARGET = re.compile(r"`make (test(?:-fast)?)`")
ABOUT = 0.05  # "about N tests" holds within 5% of the collected count; "N tests" exactly


def readme_claims(text: str) -> list[tuple[str, int, bool]]:
    """(make target, count, approximate) for each count claim in the README's Tests section."""
    section = SECTION.search(text)
    assert section, "README.md has no Tests section"
    # a command's own words are not claims (`pytest -n 2 tests`): code spans other than the targets are blanked
    body = re.sub(r"`[^`\n]*`", lambda code: code.group(0) if TARGET.fullmatch(code.group(0)) else " " * len(code.group(0)),
                  section.group(1))
    claims = []
    for claim in CLAIM.finditer(body):
        targets = TARGET.findall(body[:claim.start()])
        claims.append((targets[-1] if targets else "test", int(claim.group(2).replace(",", "")),
                       claim.group(1) is not None))
    return claims


def collected() -> dict[str, int]:
    """The number of tests `make test` and `make test-fast` run (one collection, slow ones deselected)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    both = re.search(r"(\d+)/(\d+) tests? collected", summary)
    if both:
        return {"test-fast": int(both.group(1)), "test": int(both.group(2))}
    one = re.search(r"(\d+) tests? collected", summary)
    assert one, f"pytest --collect-only said: {summary or done.stderr[-2000:]}"
    return {"test-fast": int(one.group(1)), "test": int(one.group(1))}


def holds(claimed: int, actual: int, approximate: bool) -> bool:
    return abs(claimed - actual) <= ABOUT * actual if approximate else claimed == actual


def test_claims_are_read_from_the_tests_section():
    text = ("# T\n## Tests\n`make test` runs about 700 tests (690 passed) in 12 min; `make test-fast`, 600 tests\n"
            "in 2 min.\n## License\n900 tests\n")
    assert readme_claims(text) == [("test", 700, True), ("test-fast", 600, False)]
    assert readme_claims("## Testing\nabout 90 tests\n") == [("test", 90, True)]
    assert readme_claims("## Tests\n`make test` (`pytest -n 2 tests`) runs about 90 tests\n") == [("test", 90, True)]
    assert holds(700, 730, True) and not holds(700, 740, True) and not holds(700, 701, False)


@pytest.mark.slow
def test_the_readme_test_counts_are_the_suites():
    claims = readme_claims(README.read_text(encoding="utf-8"))
    assert any(target == "test" for target, _, _ in claims), "the README's Tests section gives no test count"
    counts = collected()
    wrong = [f"`make {target}`: README {'about ' if approx else ''}{claimed}, collected {counts[target]}"
             for target, claimed, approx in claims if not holds(claimed, counts[target], approx)]
    assert not wrong, ("README.md's test counts are stale (and so are the times measured with them): "
                       + "; ".join(wrong))
