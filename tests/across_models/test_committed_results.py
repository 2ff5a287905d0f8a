"""results/across_models/ as committed: every run's history and probe file is there (a clean clone can
recompute the analysis), the test sets have the planned sizes, and the committed analysis.json is what
the committed probe files give."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bertstudy.across_models.analysis import analyze
from bertstudy.across_models.plan import planned_runs

RESULTS = Path(__file__).resolve().parents[2] / "results" / "across_models"


def _close(a, b, path="") -> list[str]:
    """Where two JSON values differ (numbers to 1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} against {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a} against {b}"]
    return [] if a == b else [f"{path}: {a!r} against {b!r}"]


def test_every_run_has_its_history_config_and_probe_file_with_the_three_controls():
    runs = sorted(p for p in (RESULTS / "runs").iterdir() if p.is_dir())
    assert len(runs) >= 18
    for run in runs:
        for name in ("training_history_100k.json", "resolved_config.json", "heldout_documents.json", "across_probes.json"):
            assert (run / name).is_file(), f"{run.name}/{name} is not committed"
        probes = json.loads((run / "across_probes.json").read_text(encoding="utf-8"))
        steps = [point["step"] for point in probes["points"]]
        assert 500 in steps and 1000 in steps, run.name
        if probes["recipe"] == "quick":
            assert steps == [0, 300, 500, 700, 1000], f"{run.name}: a quick seed is probed at every milestone"
        for point in probes["points"]:
            for layer in point["tasks"]["ner"]:  # the control task's selectivity and the context gain, per layer
                assert {"selectivity", "context_gain", "context_gain_ci", "score_ci"} <= layer.keys()
    controls = json.loads((RESULTS / "probe_controls.json").read_text(encoding="utf-8"))
    for task in ("ner", "segmentation"):  # the identity at the features' width beside the wide one-hot
        assert {"identity_wide", "identity_projected"} <= controls["controls"][task].keys()


def test_the_test_sets_have_the_planned_sizes():
    counts = json.loads((RESULTS / "probe_controls.json").read_text(encoding="utf-8"))["data"]["counts"]
    assert counts["ner"]["test"] >= 4000 and counts["ner"]["test_dropped_shared_string"] > 0
    assert counts["sentiment"]["test"] >= 3000
    assert counts["segmentation"]["test"] >= 1500


def test_the_committed_analysis_is_what_the_committed_probe_files_give():
    committed = json.loads((RESULTS / "analysis.json").read_text(encoding="utf-8"))
    docs = {}
    for path in (RESULTS / "runs").glob("*/across_probes.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[(doc["recipe"], doc["seed"])] = doc
    recomputed = analyze([docs[(run.recipe, run.seed)] for run in planned_runs()])  # the probe pass's order
    assert recomputed["complete"] and recomputed["runs_probed_at_primary_step"] >= 18
    differences = _close(json.loads(json.dumps(recomputed)), committed)
    assert not differences, "\n".join(differences[:10])
