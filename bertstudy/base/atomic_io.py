"""Writing files so that a crash never leaves a half-written output, and reading JSON(L) with
errors that name the file and line.

Every output of the pipeline goes through atomic_write_* : the data is written to a temporary
file in the same folder, flushed and fsynced, then renamed over the target (rename is atomic on
POSIX), so a reader sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from bertstudy.base.errors import BadInputError, StudyError, UsageError


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest existing ancestor (the folder a mkdir -p would start from)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _can_write_in(folder: Path) -> str | None:
    """None when a new file can be made in `folder`, else why not. Tried with a temporary file:
    permission bits alone miss read-only mounts and say yes to root everywhere."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def _check_creatable_under(path: Path, flag: str) -> None:
    """`path` does not exist yet: its nearest existing ancestor must be a writable folder."""
    ancestor = _first_existing(path.parent)
    if not ancestor.is_dir():
        raise UsageError(f"{flag}{path}: {ancestor} is a file, not a folder; choose another path")
    why = _can_write_in(ancestor)
    if why:
        raise UsageError(f"{flag}{path}: folder {ancestor} is not writable ({why}); choose another path")


def check_writable_file(path: str | os.PathLike, flag: str | None = None) -> Path:
    """Check, before any work, that an output file could be written at `path`; nothing is created.

    Refused with UsageError (exit 2, a bad command-line value): `path` is a folder, a parent on
    the way is a file (`README.md/x.json`), or the folder is not writable. `flag` (e.g. "--out")
    prefixes the message so the user knows which option to change.
    """
    path = Path(path)
    prefix = f"{flag} " if flag else ""
    if path.is_dir():
        raise UsageError(f"{prefix}{path}: is a folder; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise UsageError(f"{prefix}{path}: not writable; choose another path")
        return path
    _check_creatable_under(path, prefix)
    return path


def check_writable_dir(path: str | os.PathLike, flag: str | None = None) -> Path:
    """Check, before any work, that `path` is (or could be created as) a writable folder; nothing is created.

    Refused with UsageError (exit 2): `path` is a file, a parent on the way is a file, or the
    folder is not writable.
    """
    path = Path(path)
    prefix = f"{flag} " if flag else ""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{prefix}{path}: is a file, not a folder; choose another path")
        why = _can_write_in(path)
        if why:
            raise UsageError(f"{prefix}{path}: folder is not writable ({why}); choose another path")
        return path
    _check_creatable_under(path, prefix)
    return path


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", fsync: bool = True):
    """Open a temporary sibling of `path` for writing; rename it over `path` on success.

    fsync=False skips forcing the data to disk before the rename: a reader still never sees a torn file,
    but a power loss may leave the previous version (or, on some file systems, an empty file): for files
    rewritten often whose durable copy is written elsewhere (the run history between checkpoints).

    On any exception the temporary file is removed and `path` is left as it was. An OSError
    (disk full, read-only folder) becomes a StudyError naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file owner-only (0600); give outputs the usual umask-based mode instead
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise StudyError(f"{path}: could not write ({exc.strerror or exc}); the previous file is intact") from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    with atomic_writer(path, "w", fsync=fsync) as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, fsync: bool = True) -> None:
    """Write JSON atomically; NaN/inf are refused (they are not JSON) rather than written."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False)
    atomic_write_text(path, text + "\n", fsync=fsync)


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} is not valid JSON")


def read_text_utf8(path: str | os.PathLike) -> str:
    """Read a whole UTF-8 file, or raise BadInputError naming the file (missing, empty, not UTF-8)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a file")
    data = path.read_bytes()
    if not data.strip():
        raise BadInputError(path, "file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInputError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line=line) from None


def read_json(path: str | os.PathLike) -> Any:
    """Parse a whole JSON file; errors name the file and line. NaN/Infinity literals are refused."""
    text = read_text_utf8(path)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"invalid JSON ({exc.msg})", line=exc.lineno) from None
    except ValueError as exc:
        raise BadInputError(path, str(exc)) from None


def iter_jsonl(path: str | os.PathLike, *, allow_partial_last: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines file.

    allow_partial_last: a file still being written may end in a half-written line (no newline
    yet); with this flag that last line is skipped silently instead of being an error.
    """
    text = read_text_utf8(path)
    lines = text.split("\n")
    ends_with_newline = text.endswith("\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        lineno = index + 1
        try:
            yield lineno, json.loads(line, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            is_last = index == len(lines) - 1 and not ends_with_newline
            if allow_partial_last and is_last:
                return
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise BadInputError(path, f"invalid JSON line ({msg})", line=lineno) from None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
