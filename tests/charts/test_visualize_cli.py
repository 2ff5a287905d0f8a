"""visualize_results.py end to end on tiny histories: five valid PNGs at the requested dpi, written
atomically; JSONL logs and --compare; the English fallback; bad input is one line and exit 3."""

import json
import struct
import zlib

import numpy as np
import pytest

import visualize_results
from bertstudy.charts.fonts import NO_CJK_FONT_ENV
from bertstudy.charts.plots import CHART_FILES
from tests.charts.test_plots import synthetic_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_history(path, n=40, total=4000, seed=0, held_out=True):
    """A tiny history in our JSON format (with eval lists and meta when held_out)."""
    h = synthetic_history(n=n, total=total, seed=seed, held_out=held_out)
    obj = {"steps": h.steps.tolist(), "mlm_acc": h.mlm_acc.tolist(), "nsp_acc": h.nsp_acc.tolist(),
           "loss": h.loss.tolist(), "lr": h.lr.tolist()}
    if held_out:
        obj.update({k: v.tolist() for k, v in h.series.items()})
        obj.update(eval_steps=h.eval_steps.tolist(), eval_mlm_acc=h.eval_mlm_acc.tolist(),
                   eval_nsp_acc=h.eval_nsp_acc.tolist(), eval_mlm_loss=h.eval_mlm_loss.tolist(),
                   meta={"format": "chinese-bert-correlation/history-v1", "total_steps": total})
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl_log(path, n=30, total=3000):
    h = synthetic_history(n=n, total=total)
    lines = [{"kind": "start", "time": 0, "total_steps": total, "preset": "tiny", "resumed_from": None, "config": {}}]
    for i, step in enumerate(h.steps.tolist()):
        lines.append({"kind": "train", "step": step, "mlm_acc": h.mlm_acc[i], "nsp_acc": h.nsp_acc[i],
                      "loss": h.loss[i], "mlm_loss": h.loss[i] * 0.9, "nsp_loss": h.loss[i] * 0.1, "lr": h.lr[i],
                      "tokens_per_s": 1000.0, "elapsed_s": float(i), "time": float(i)})
        if i % 10 == 9:
            lines.append({"kind": "eval", "step": step, "mlm_acc": h.mlm_acc[i] - 0.01, "nsp_acc": 0.5,
                          "mlm_loss": h.loss[i], "time": float(i)})
    # A half-written last line, as while training runs: it is skipped.
    text = "\n".join(json.dumps(line) for line in lines) + '\n{"kind": "train", "st'
    path.write_text(text, encoding="utf-8")
    return path


def png_info(path):
    """(width, height, dpi) of a PNG, read from its IHDR and pHYs chunks."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    width, height = struct.unpack(">II", data[16:24])
    dpi, pos = None, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if kind == b"pHYs":
            per_metre_x, _, unit = struct.unpack(">IIB", body)
            assert unit == 1  # metres
            dpi = round(per_metre_x * 0.0254)
        if kind == b"IEND":
            break
        pos += 12 + length
    return width, height, dpi


@pytest.mark.slow  # renders charts
def test_writes_five_valid_pngs_at_the_requested_dpi(tmp_path, capsys):
    history = write_history(tmp_path / "training_history_100k.json")
    out = tmp_path / "charts"
    code = visualize_results.main([str(history), "--out-dir", str(out), "--dpi", "150"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # a CJK font is installed: no fallback warning
    assert sorted(p.name for p in out.iterdir()) == sorted(CHART_FILES)  # no temp files left behind
    for name in CHART_FILES:
        width, height, dpi = png_info(out / name)
        assert dpi == 150, name
        assert width == 13 * 150, name  # ChartConfig.width inches at 150 dpi
        assert (out / name).stat().st_size > 30_000, name
        assert f"wrote {out / name}" in captured.out


def test_an_analysis_without_chart_data_is_one_line_and_exit_3(tmp_path, capsys):
    history = write_history(tmp_path / "training_history_100k.json")
    analysis = tmp_path / "analysis_100k_result.json"
    # the original study's own keys only (as an analysis written before chart_data): matched on last step and
    # point count, then refused: the curve charts draw the analysis' chart data, and it has none
    analysis.write_text(json.dumps({"total_steps": 4000, "data_points": 40, "pearson_correlation": 0.81,
                                    "best_curve": "log_linear"}))
    out = tmp_path / "charts"
    code = visualize_results.main([str(history), "--analysis", str(analysis), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: {analysis}: ") and "rerun analyze_100k.py" in err
    assert not out.exists() or not list(out.iterdir())


def test_train_fraction_other_than_the_analysis_is_refused(tmp_path, capsys):
    import analyze_100k

    history = write_history(tmp_path / "h.json", n=40, total=4000)
    analysis = tmp_path / "a.json"
    assert analyze_100k.main([str(history), "--out", str(analysis), "--bootstrap", "0", "--quiet"]) == 0
    capsys.readouterr()
    code = visualize_results.main([str(history), "--analysis", str(analysis), "--out-dir", str(tmp_path / "c"),
                                   "--train-fraction", "0.6"])
    err = capsys.readouterr().err
    assert code == 2 and "--train-fraction 0.6" in err and "0.5" in err and len(err.strip().splitlines()) == 1


def test_headline_from_a_real_analyze_100k_result(tmp_path, capsys):
    import analyze_100k

    history = write_history(tmp_path / "h.json", n=60, total=6000)
    analysis = tmp_path / "analysis_100k_result.json"
    assert analyze_100k.main([str(history), "--out", str(analysis), "--bootstrap", "0", "--quiet"]) == 0
    result = json.loads(analysis.read_text())
    import matplotlib

    matplotlib.use("Agg")
    from bertstudy.charts.fonts import TextStyle
    from bertstudy.analysis.history import load_history
    from bertstudy.charts.plots import ChartConfig, correlation_analysis

    fig = correlation_analysis(load_history(history), TextStyle(lang="en"), result, ChartConfig(width=8, height=5))
    headline = fig.get_suptitle().splitlines()[1]
    assert headline.startswith(f"{result['total_steps']:,} steps, Pearson r = {result['pearson_correlation']:.3f}")
    assert "chosen curve: —" not in headline  # analyze_100k's chosen_curve is a curve name this chart knows
    # The chart draws the analysis' fits: the starred line is its chosen curve, with the analysis' R².
    legend = "\n".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    chosen = result["chosen_curve"]
    starred = [line for line in legend.splitlines() if "★" in line]
    assert len(starred) == 1 and chosen != "phases"
    assert f"R²={result['curves'][chosen]['r_squared']:.3f}" in starred[0]
    capsys.readouterr()


@pytest.mark.slow  # renders charts
def test_jsonl_log_and_compare_with_a_second_run(tmp_path, capsys):
    log = write_jsonl_log(tmp_path / "training_log_100k.jsonl")
    other = write_history(tmp_path / "other.json", n=25, total=2000, seed=3, held_out=False)
    out = tmp_path / "out"
    code = visualize_results.main([str(log), "--compare", f"3K={log}", f"2K={other}", "--out-dir", str(out),
                                   "--lang", "en", "--train-fraction", "0.6", "--dpi", "160"])
    assert code == 0, capsys.readouterr().err
    assert png_info(out / "comparison_50k_100k.png")[2] == 160
    assert capsys.readouterr().err == ""  # --lang en is a choice, not a fallback: no warning


@pytest.mark.slow  # renders charts
def test_no_cjk_font_falls_back_to_english_with_one_warning_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(NO_CJK_FONT_ENV, "1")
    history = write_history(tmp_path / "h.json", n=12, held_out=False)
    code = visualize_results.main([str(history), "--out-dir", str(tmp_path / "out"), "--dpi", "150"])
    err = capsys.readouterr().err
    assert code == 0
    assert len(err.strip().splitlines()) == 1 and err.startswith("warning:") and NO_CJK_FONT_ENV in err
    assert all((tmp_path / "out" / name).exists() for name in CHART_FILES)


@pytest.mark.slow  # renders charts
def test_history_too_short_for_a_fit_still_writes_every_chart(tmp_path, capsys):
    history = tmp_path / "short.json"
    history.write_text(json.dumps({"steps": [100, 200], "mlm_acc": [0.1, 0.2], "loss": [9.0, 8.5]}))
    code = visualize_results.main([str(history), "--out-dir", str(tmp_path / "out"), "--lang", "en", "--dpi", "150"])
    assert code == 0, capsys.readouterr().err
    assert all(png_info(tmp_path / "out" / name)[2] == 150 for name in CHART_FILES)


@pytest.mark.parametrize("content, needle", [
    (None, "no such file"),
    ("", "file is empty"),
    ('{"steps": [1, 2], "mlm_acc": [0.1]}', "mlm_acc"),
    ('{"steps": [1, 2], "mlm_acc": [10, 20]}', "[0, 1]"),
    ('{"steps": [1, 2], ', "invalid JSON"),
])
def test_bad_history_is_one_line_exit_3_and_old_charts_survive(tmp_path, capsys, content, needle):
    history = tmp_path / "bad.json"
    if content is not None:
        history.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "training_curves.png").write_bytes(b"previous chart")
    code = visualize_results.main([str(history), "--out-dir", str(out), "--lang", "en"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: ") and str(history) in err and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (out / "training_curves.png").read_bytes() == b"previous chart"
    assert sorted(p.name for p in out.iterdir()) == ["training_curves.png"]


def test_bad_analysis_and_bad_compare_run_name_their_file(tmp_path, capsys):
    history = write_history(tmp_path / "h.json", n=12)
    analysis = tmp_path / "analysis.json"
    analysis.write_text("[1, 2]")
    assert visualize_results.main([str(history), "--analysis", str(analysis), "--out-dir", str(tmp_path)]) == 3
    assert f"{analysis}: expected a JSON object" in capsys.readouterr().err
    missing = tmp_path / "nope.json"
    assert visualize_results.main([str(history), "--compare", f"a={missing}", "--out-dir", str(tmp_path)]) == 3
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert visualize_results.main([str(history), "--compare", f"a={history}", f"a={history}",
                                   "--out-dir", str(tmp_path)]) == 2
    assert "label(s) used twice: a" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("argv", [["--dpi", "100"], ["--dpi", "301"], ["--train-fraction", "1"],
                                  ["--compare", "no-equals-sign"], ["--lang", "zh"]])
def test_out_of_range_arguments_exit_2(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        visualize_results.main(["h.json", "--out-dir", str(tmp_path)] + argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_lists_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        visualize_results.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--compare 50K=" in text
    assert "exit codes:" in text and all(f"  {code} " in text for code in (0, 2, 3, 4))


@pytest.mark.parametrize("where", ["file-not-folder", "file-not-folder/sub"])
def test_out_dir_on_or_under_a_file_is_a_usage_error_before_drawing(tmp_path, capsys, where):
    history = write_history(tmp_path / "h.json", n=12)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    code = visualize_results.main([str(history), "--out-dir", str(tmp_path / where), "--lang", "en"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""  # exit 2 (the command line), not 4 (disk full); nothing drawn
    assert captured.err.startswith("error: --out-dir ") and len(captured.err.strip().splitlines()) == 1
    assert "is a file, not a folder" in captured.err and blocker.read_text() == "x"


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow  # renders charts
def test_default_out_dir_is_the_historys_folder_and_never_the_committed_results(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"  # a checkout's committed charts, as the README shows them
    results.mkdir()
    for name in CHART_FILES:
        (results / name).write_bytes(b"committed chart " + name.encode())
    run = tmp_path / "runs" / "try"
    run.mkdir(parents=True)
    history = write_history(run / "training_history_100k.json", n=12)
    monkeypatch.chdir(tmp_path)
    before = snapshot(results)
    assert visualize_results.main(["runs/try/training_history_100k.json", "--lang", "en", "--dpi", "150"]) == 0
    assert snapshot(results) == before  # nothing lost
    assert all((run / name).exists() for name in CHART_FILES)
    # Redrawing the same history's charts is fine; they record which history they show.
    assert visualize_results.main([str(history), "--lang", "en", "--dpi", "150"]) == 0
    capsys.readouterr()


@pytest.mark.slow  # renders charts
def test_a_folder_of_another_runs_charts_is_refused_without_overwrite(tmp_path, capsys):
    first = write_history(tmp_path / "a.json", n=12, seed=0)
    second = write_history(tmp_path / "b.json", n=12, seed=5)  # same length, other numbers
    out = tmp_path / "charts"
    assert visualize_results.main([str(first), "--out-dir", str(out), "--lang", "en", "--dpi", "150"]) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    capsys.readouterr()
    code = visualize_results.main([str(second), "--out-dir", str(out), "--lang", "en", "--dpi", "150"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "--overwrite" in captured.err and "another run" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert snapshot(out) == before  # nothing lost: every file byte-identical
    # Charts of unknown origin (the committed results/ before provenance) are refused too.
    (out / "forecast.png").write_bytes(b"an older chart")
    before = snapshot(out)
    assert visualize_results.main([str(first), "--out-dir", str(out), "--lang", "en"]) == 2
    assert snapshot(out) == before
    capsys.readouterr()
    # The explicit flag replaces them.
    assert visualize_results.main([str(second), "--out-dir", str(out), "--lang", "en", "--dpi", "150",
                                   "--overwrite"]) == 0
    assert snapshot(out)["forecast.png"] != b"an older chart" and (out / "notes.txt").read_text() == "mine"
    capsys.readouterr()


@pytest.mark.slow  # renders charts
def test_analysis_of_another_history_is_refused(tmp_path, capsys):
    import analyze_100k

    short = write_history(tmp_path / "short.json", n=20, total=200)
    other = write_history(tmp_path / "other.json", n=20, total=200, seed=9)
    long = write_history(tmp_path / "long.json", n=60, total=6000)
    analysis = tmp_path / "analysis_100k_result.json"
    assert analyze_100k.main([str(long), "--out", str(analysis), "--bootstrap", "0", "--quiet"]) == 0
    same_shape = tmp_path / "analysis_other.json"
    assert analyze_100k.main([str(other), "--out", str(same_shape), "--bootstrap", "0", "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "charts"
    cases = [(analysis, "is the analysis of another run"), (same_shape, "same length, different numbers"),
             (long, "is a training history, not an analysis")]
    for wrong, needle in cases:
        code = visualize_results.main([str(short), "--analysis", str(wrong), "--out-dir", str(out), "--lang", "en"])
        err = capsys.readouterr().err
        assert code == 3, err
        assert err.startswith(f"error: {wrong}: ") and needle in err and len(err.strip().splitlines()) == 1
        assert not out.exists() or not list(out.iterdir())
    # its own analysis is accepted
    own = tmp_path / "analysis_short.json"
    assert analyze_100k.main([str(short), "--out", str(own), "--bootstrap", "0", "--quiet"]) == 0
    assert visualize_results.main([str(short), "--analysis", str(own), "--out-dir", str(out), "--lang", "en",
                                   "--dpi", "150"]) == 0
    capsys.readouterr()


def test_png_reader_used_above_rejects_a_corrupt_file(tmp_path):
    good = tmp_path / "good.png"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot(np.arange(3))
    fig.savefig(good, dpi=150)
    assert png_info(good)[2] == 150
    data = bytearray(good.read_bytes())
    data[40] ^= 0xFF
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(AssertionError):
        png_info(tmp_path / "bad.png")
