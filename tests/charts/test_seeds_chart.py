"""seeds.png: the held-out accuracies across seeds as a band with each seed's line and
the predicted shortcut level, from a seeds summary; visualize_results.py --seeds-summary and its guards."""

import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import visualize_results  # noqa: E402
from bertstudy.analysis.seeds import SUMMARY_FORMAT, seed_bands  # noqa: E402
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE  # noqa: E402
from bertstudy.charts.fonts import TextStyle  # noqa: E402
from bertstudy.charts.seed_chart import seed_name, seeds_chart  # noqa: E402

ENGLISH = TextStyle("en")
SHORTCUT = {"top_char": "，", "mask_level": 0.046, "overall_level": 0.137}


def _summary(shift: float = 0.0) -> dict:
    steps = [0, 125, 250, 375]
    series = {f"runs/cpu_study_seed{seed}": (steps, [0.0, 0.04 + shift, 0.05 + seed / 100, 0.12 + seed / 50])
              for seed in (1, 2, 3)}
    kinds = {"eval_mask_acc": series, "eval_mlm_acc": {run: (s, [v + 0.1 for v in vals]) for run, (s, vals) in series.items()}}
    return {"format": SUMMARY_FORMAT, "runs": list(series), "figures": {}, "bands": seed_bands(kinds), "shortcut": SHORTCUT}


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_each_accuracy_is_a_band_with_its_seeds_and_the_shortcut_level():
    fig = seeds_chart(_summary(), ENGLISH)
    mask, mlm = fig.axes
    assert mask.get_title() == "held-out [MASK] accuracy" and mlm.get_title() == "held-out MLM accuracy (all positions)"
    labels = _legend(mask)
    assert labels[:3] == ["seed 1", "seed 2", "seed 3"] and "min-max across seeds" in labels and "mean of the seeds" in labels
    assert "predicted shortcut: 0.046\n(top character at [MASK])" in labels
    assert "predicted shortcut: 0.137\n(top character at [MASK], copy elsewhere)" in _legend(mlm)
    mean = [line for line in mask.get_lines() if line.get_label() == "mean of the seeds"][0]
    assert list(mean.get_ydata()) == pytest.approx([0.0, 0.04, 0.07, 0.16])
    assert seed_name("runs/cpu_study_seed12") == "12" and seed_name("runs/other") == "other"
    with pytest.raises(ValueError, match="no bands"):
        seeds_chart({**_summary(), "bands": {}}, ENGLISH)


@pytest.mark.slow  # renders charts
def test_visualize_seeds_summary_writes_seeds_png_and_keeps_another_summarys_chart(tmp_path, capsys):
    summary = tmp_path / "seeds_summary.json"
    summary.write_text(json.dumps(_summary()), encoding="utf-8")
    assert visualize_results.main(["--seeds-summary", str(summary), "--lang", "en"]) == EXIT_OK
    chart = tmp_path / "seeds.png"
    first = chart.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert visualize_results.main(["--seeds-summary", str(summary), "--lang", "en"]) == EXIT_OK  # the same: redrawn
    summary.write_text(json.dumps(_summary(shift=0.01)), encoding="utf-8")  # another summary's bands
    capsys.readouterr()
    assert visualize_results.main(["--seeds-summary", str(summary), "--lang", "en"]) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err and chart.read_bytes() == first
    assert visualize_results.main(["--seeds-summary", str(summary), "--lang", "en", "--overwrite"]) == EXIT_OK
    # not a summary: one line naming the file, exit 3
    other = tmp_path / "other.json"
    other.write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert visualize_results.main(["--seeds-summary", str(other), "--out-dir", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other.json" in err
