"""analyze_100k.py end to end: main([...]) on the original study's history, our JSONL log, two real
files for --compare, --require-r exit codes, and bad input (exit 3, one line, old output intact)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import analyze_100k
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURE = ROOT / "tests" / "data" / "original_training_history_100k.json"


def run(args, capsys):
    code = analyze_100k.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def first_half(tmp_path) -> Path:
    """The published run cut at 50K steps: a real history file, as a 50K run's would be."""
    obj = json.loads(FIXTURE.read_text(encoding="utf-8"))
    keep = sum(1 for s in obj["steps"] if s <= 50_000)
    path = tmp_path / "history_50k.json"
    path.write_text(json.dumps({k: v[:keep] for k, v in obj.items()}), encoding="utf-8")
    return path


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_original_history_end_to_end(tmp_path, capsys):
    out_path = tmp_path / "analysis_100k_result.json"
    code, out, err = run([FIXTURE, "--out", out_path, "--bootstrap", "100", "--target", "0.6"], capsys)
    assert code == EXIT_OK and err == ""
    result = json.loads(out_path.read_text(encoding="utf-8"))
    assert round(result["pearson_correlation"], 4) == 0.7869 and round(result["r_squared"], 4) == 0.6193
    assert result["best_curve"] == "log_linear" and result["bootstrap"]["resamples"] == 100
    assert [row["target"] for row in result["targets"]] == [0.6]
    assert "Pearson r   0.7869" in out and f"wrote {out_path}" in out
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left no temporary file


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
@pytest.mark.parametrize("goal, expected", [(0.85, EXIT_CHECK_FAILED), (0.75, EXIT_OK)])
def test_require_r_exit_codes(tmp_path, capsys, goal, expected):
    out_path = tmp_path / "a.json"
    code, out, err = run([FIXTURE, "--out", out_path, "--bootstrap", "0", "--quiet", "--require-r", goal], capsys)
    assert code == expected
    result = json.loads(out_path.read_text(encoding="utf-8"))  # written either way
    assert result["goal_achieved"] is (expected == EXIT_OK)
    assert out.strip() == f"wrote {out_path}"
    if expected == EXIT_CHECK_FAILED:  # --quiet still says, in one line on stderr, why the exit is 1
        assert err == f"check failed: Pearson r 0.7869 is below --require-r {goal}\n"
    else:
        assert err == ""


@pytest.mark.parametrize("out", ["README.md/x.json", "sub/dir"])
def test_bad_out_path_is_refused_before_the_work(tmp_path, capsys, out):
    (tmp_path / "README.md").write_text("keep")
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    code, out_text, err = run([FIXTURE, "--out", tmp_path / out, "--bootstrap", "0"], capsys)
    assert code == 2 and out_text == ""  # no report printed: nothing was analysed
    assert err.startswith("error: --out ") and len(err.strip().splitlines()) == 1
    assert (tmp_path / "README.md").read_text() == "keep"


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_compare_two_real_files(tmp_path, capsys, first_half):
    out_path = tmp_path / "a.json"
    code, out, _ = run([FIXTURE, "--out", out_path, "--bootstrap", "0",
                        "--compare", f"50K={first_half}", f"100K={FIXTURE}"], capsys)
    assert code == EXIT_OK
    comparison = json.loads(out_path.read_text(encoding="utf-8"))["comparison"]
    assert comparison["baseline"] == "50K" and list(comparison["runs"]) == ["50K", "100K"]
    r50, r100 = comparison["runs"]["50K"]["pearson_r"], comparison["runs"]["100K"]["pearson_r"]
    assert comparison["runs"]["50K"]["total_steps"] == 50_000 and round(r100, 4) == 0.7869
    assert comparison["differences"]["100K - 50K"]["pearson_r"] == pytest.approx(r100 - r50)
    assert "Comparison (mlm_acc, baseline 50K)" in out


def test_jsonl_log_with_eval_metric(tmp_path, capsys):
    lines = [{"kind": "start", "time": 0, "total_steps": 2000, "preset": "tiny", "resumed_from": None}]
    for i in range(1, 21):
        lines.append({"kind": "train", "step": 100 * i, "mlm_acc": 0.05 + 0.02 * i, "nsp_acc": 0.5, "loss": 8 - 0.2 * i,
                      "mlm_loss": 7.5, "nsp_loss": 0.69, "lr": 1e-4, "tokens_per_s": 1e3, "elapsed_s": i, "time": i})
        if i % 4 == 0:
            lines.append({"kind": "eval", "step": 100 * i, "mlm_acc": 0.04 + 0.018 * i + 0.003 * (i % 8 == 0),
                          "nsp_acc": 0.5, "mlm_loss": 7.0, "time": i})
    log = tmp_path / "training_log_100k.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"kind": "tra', encoding="utf-8")
    out_path = tmp_path / "a.json"
    code, out, _ = run([log, "--metric", "eval_mlm_acc", "--out", out_path, "--bootstrap", "20"], capsys)
    assert code == EXIT_OK
    result = json.loads(out_path.read_text(encoding="utf-8"))
    assert result["metric"]["name"] == "eval_mlm_acc" and result["data_points"] == 5
    assert result["source"]["format"] == "jsonl-log" and result["source"]["preset"] == "tiny"
    assert result["mlm_stats"]["max"] == pytest.approx(0.45)  # mlm_stats stays the training accuracy


@pytest.mark.parametrize("content, fragment", [
    ("", "file is empty"),
    ('{"steps": [1, 2], "mlm_acc": [0.1', "invalid JSON"),
    ('{"steps": [1, 2], "mlm_acc": [0.1, "0.2"]}', "'mlm_acc'[1] must be a finite number"),
    ('{"steps": [2, 1], "mlm_acc": [0.1, 0.2]}', "out of order"),
    ('{"steps": [1, 2], "mlm_acc": [0.1, 0.2]}', "at least 3 are needed"),
])
def test_bad_input_exits_3_with_one_line_and_keeps_the_old_result(tmp_path, capsys, content, fragment):
    bad = tmp_path / "history.json"
    bad.write_text(content, encoding="utf-8")
    out_path = tmp_path / "analysis_100k_result.json"
    out_path.write_text('{"old": true}\n', encoding="utf-8")
    code, out, err = run([bad, "--out", out_path], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.startswith(f"error: {bad}") and fragment in err and err.count("\n") == 1
    assert "Traceback" not in err and out == ""
    assert out_path.read_text(encoding="utf-8") == '{"old": true}\n'


def test_missing_metric_and_missing_compare_file_exit_3(tmp_path, capsys):
    code, _, err = run([FIXTURE, "--metric", "eval_mlm_acc", "--out", tmp_path / "a.json"], capsys)
    assert code == EXIT_BAD_INPUT and "no 'eval_mlm_acc' values" in err
    code, _, err = run([FIXTURE, "--out", tmp_path / "a.json", "--compare", f"50K={tmp_path / 'nope.json'}"], capsys)
    assert code == EXIT_BAD_INPUT and "nope.json: no such file" in err
    assert not (tmp_path / "a.json").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = run([FIXTURE, "--out", tmp_path / "a.json", "--compare", f"A={FIXTURE}", f"A={FIXTURE}"], capsys)
    assert code == EXIT_USAGE and "used twice" in err
    for bad in (["--train-fraction", "1.5"], ["--bootstrap", "-1"], ["--target", "80"], ["--compare", "nolabel"]):
        with pytest.raises(SystemExit) as info:
            analyze_100k.main([str(FIXTURE), *bad])
        assert info.value.code == EXIT_USAGE
    capsys.readouterr()


def test_help_lists_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        analyze_100k.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes:" in text
    for code in ("0 ", "1 ", "2 ", "3 ", "4 "):
        assert f"\n  {code}" in text


@pytest.mark.slow  # a script run as a program (its own interpreter)
def test_script_runs_as_a_program_without_traceback(tmp_path):
    bad = tmp_path / "h.json"
    bad.write_bytes(b"\xff\xfe not utf-8")
    proc = subprocess.run([sys.executable, str(ROOT / "analyze_100k.py"), str(bad), "--out", str(tmp_path / "a.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip() == f"error: {bad}:1: not UTF-8 text (byte 0xff)"
