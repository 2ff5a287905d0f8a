"""The analysed metric, the analysis side: the metric analysed by default (held-out [MASK] accuracy where the
history has it, else the original's training MLM accuracy), why it was chosen, any list of the history
as --metric, and the predicted shortcut level against the measured plateau."""

import json
from pathlib import Path

import pytest

import analyze_100k
from bertstudy.analysis.study import analyze, choose_metric
from bertstudy.analysis.history import load_history
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK
from tests.shortcut_helpers import PLATEAU, kinds_history

ORIGINAL = Path(__file__).resolve().parent.parent / "data" / "original_training_history_100k.json"


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_default_is_held_out_mask_accuracy_where_the_history_has_it(tmp_path):
    history = kinds_history(tmp_path)
    result = analyze(history, bootstrap=0)
    assert result["metric"]["name"] == "eval_mask_acc"
    assert result["metric"]["why"].startswith("default: held-out [MASK] accuracy")
    assert result["chart_data"]["metric"] == "eval_mask_acc"  # the curve charts draw what was analysed
    assert result["mlm_stats"]["max"] == pytest.approx(max(history.mlm_acc))  # still training MLM accuracy
    assert result["metric_stats"]["max"] == pytest.approx(max(history.eval_mask_acc))
    assert analyze(history, "mlm_acc", bootstrap=0)["metric"]["why"] == "given by --metric"


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_default_stays_the_originals_metric_without_held_out_mask_accuracy(tmp_path):
    metric, why = choose_metric(load_history(ORIGINAL))
    assert metric == "mlm_acc" and "no eval_mask_acc" in why
    few = kinds_history(tmp_path, n=20, eval_every=10)  # two held-out points: too few to analyse
    metric, why = choose_metric(few)
    assert metric == "mlm_acc" and "only 2 point(s) of eval_mask_acc" in why
    result = analyze(load_history(ORIGINAL), bootstrap=0)
    assert result["metric"]["name"] == "mlm_acc" and "shortcut" not in result


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
@pytest.mark.parametrize("mask_level, inside", [(PLATEAU, True), (0.2, False)])
def test_the_plateau_is_measured_against_the_predicted_shortcut_level(tmp_path, mask_level, inside):
    result = analyze(kinds_history(tmp_path, mask_level=mask_level), bootstrap=40)
    shortcut = result["shortcut"]
    assert shortcut["reference"]["key"] == "mask_level" and shortcut["reference"]["level"] == mask_level
    assert shortcut["predicted"]["top_char"] == "，"
    vs = shortcut["plateau_vs_predicted"]
    plateau = result["phases"]["plateau"]
    assert vs["level"] == plateau["level"] and vs["level_ci"] == plateau["level_ci"]
    assert vs["difference"] == pytest.approx(plateau["level"] - mask_level)
    assert vs["inside_ci"] is inside
    assert result["chart_data"]["shortcut"]["level"] == mask_level


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_the_all_positions_metric_gets_the_overall_level_and_nsp_none(tmp_path):
    history = kinds_history(tmp_path)
    shortcut = analyze(history, "eval_mlm_acc", bootstrap=0)["shortcut"]
    assert shortcut["reference"]["key"] == "overall_level"
    assert shortcut["reference"]["level"] == pytest.approx(history.meta["shortcut"]["overall_level"])
    assert analyze(history, "loss", bootstrap=0)["shortcut"]["reference"] is None


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_cli_reports_the_metric_why_and_the_shortcut(tmp_path, capsys):
    history = kinds_history(tmp_path)
    out = tmp_path / "a.json"
    assert analyze_100k.main([history.path, "--out", str(out), "--bootstrap", "40"]) == EXIT_OK
    report = capsys.readouterr().out
    assert "metric: eval_mask_acc - held-out accuracy at [MASK] positions" in report
    assert "(default: held-out [MASK] accuracy" in report
    assert f"predicted shortcut level for eval_mask_acc: {PLATEAU:.4f} (mask_level" in report
    assert "measured plateau level" in report and "prediction inside its 95% CI" in report
    assert json.loads(out.read_text(encoding="utf-8"))["shortcut"]["plateau_vs_predicted"]["inside_ci"] is True


def test_any_list_of_a_jsonl_log_is_a_metric(tmp_path, capsys):
    lines = [{"kind": "start", "time": 0, "total_steps": 200, "resumed_from": None}]
    lines += [{"kind": "train", "step": 10 * i, "mlm_acc": 0.01 * i, "data_wait_s": 0.1 * i, "skipped_steps": 0,
               "time": i} for i in range(1, 11)]
    log = tmp_path / "training_log_100k.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    out = tmp_path / "a.json"
    assert analyze_100k.main([str(log), "--metric", "data_wait_s", "--out", str(out), "--bootstrap", "0"]) == EXIT_OK
    assert json.loads(out.read_text(encoding="utf-8"))["metric"] == {
        "name": "data_wait_s", "description": "data_wait_s", "why": "given by --metric"}
    capsys.readouterr()
    assert analyze_100k.main([str(log), "--metric", "nope", "--out", str(out), "--overwrite"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(log) in err and "data_wait_s" in err
