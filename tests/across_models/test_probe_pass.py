"""The across-model pass end to end on tiny data: prepare, a tiny run with milestones, one probed point."""

from pathlib import Path

import pytest

from bertstudy.across_models.plan import PlannedRun, candidates
from bertstudy.across_models.prepare import prepare
from bertstudy.across_models.probe_pass import CONTROLS_NAME, PROBES_NAME, ProbePass
from bertstudy.base.atomic_io import read_json
from bertstudy.corpus.corpus_io import load_documents
from tests.across_models.test_data import write_msra
from tests.downstream_helpers import embedded_like_corpus, write_task_data
from tests.train_helpers import tiny_args


@pytest.mark.slow
def test_prepare_then_a_tiny_run_probed_at_one_milestone(tmp_path):
    import train_large_100k

    task_data = write_task_data(tmp_path / "tasks")
    corpus = embedded_like_corpus(task_data, tmp_path / "embedded.jsonl")
    data_dir = tmp_path / "data"
    split = prepare(corpus, data_dir, task_data, seg_lines=30, review_count=40)
    kept = {d.id for d in load_documents(data_dir / "corpus.jsonl")}
    assert not kept & set(split["segmentation_test_articles"]) and not kept & set(split["test_reviews"])

    msra_root = write_msra(tmp_path / "msra", "新 B-ORG\n华 M-ORG\n社 E-ORG\n记 O\n者 O\n\n" * 8)
    runs_dir = tmp_path / "runs"
    folder = runs_dir / "quick_seed1"
    code = train_large_100k.main(tiny_args(data_dir / "corpus.jsonl", folder, tmp_path / "cache", milestones="3,6",
                                           min_freq=1, heldout_fraction=0.2))
    assert code == 0
    probe_pass = ProbePass(data_dir, runs_dir, width=30, task_data=task_data, msra_root=msra_root)
    run = PlannedRun("quick", 1, candidates()["quick"])
    assert probe_pass.probe_point(run, folder, 6) is True
    assert probe_pass.probe_point(run, folder, 6) is False  # already in the file: a rerun continues
    doc = read_json(folder / PROBES_NAME)
    (point,) = doc["points"]
    assert point["step"] == 6 and point["heldout_mask_acc"] is not None
    for task in ("ner", "segmentation", "sentiment"):
        layers = point["tasks"][task]
        assert [layer["layer"] for layer in layers] == [0, 2]
        for layer in layers:
            assert layer["score_ci"][0] <= layer["score"] <= layer["score_ci"][1]
            assert layer["context_gain_ci"][0] <= layer["context_gain"] <= layer["context_gain_ci"][1] + 1e-12
    assert "selectivity" in point["tasks"]["segmentation"][1] and "selectivity" in point["tasks"]["ner"][1]
    controls = read_json(runs_dir / CONTROLS_NAME)
    assert controls["controls"]["ner"]["identity_projected"]["dimensions"] == 128
    assert controls["data"]["counts"]["segmentation"]["test"] > 0
