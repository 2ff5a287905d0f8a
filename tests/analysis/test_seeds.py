"""The summary across pretraining seeds: hand-made analyses with answers worked out
by hand, and analyze_100k.py --seeds-summary on real analyses of real histories."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import analyze_100k
from bertstudy.analysis.seeds import SeedsInputError, headline_figures, seed_band, seed_bands, summarize_seeds
from bertstudy.base.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "original_training_history_100k.json"


def _analysis(run: str, metric: str, final: float, r: float, plateau=None, downstream=None) -> dict:
    return {"source": {"path": f"runs/{run}/training_history_100k.json"}, "metric": {"name": metric},
            "metric_stats": {"final": final, "final_window_mean": final - 0.01}, "pearson_correlation": r,
            "association": {"spearman": {"rho": r + 0.05}},
            "phases": {"plateau": plateau}, **({"downstream": downstream} if downstream else {})}


def _downstream(score: float) -> dict:
    return {"tasks": {"cws": {"best": {"step": 5000, "score": score},
                              "mlm_vs_score": {"pearson": {"r": 0.9}, "spearman": {"rho": None}}}}}


def test_spread_of_three_seeds_by_hand():
    analyses = [
        _analysis("seed1", "eval_mlm_acc", 0.19, 0.85, {"start_step": 400, "end_step": 2500, "level": 0.135},
                  _downstream(0.67)),
        _analysis("seed1", "eval_mask_acc", 0.10, 0.80),
        _analysis("seed2", "eval_mlm_acc", 0.21, 0.87, {"start_step": 500, "end_step": 2300, "level": 0.137},
                  _downstream(0.69)),
        _analysis("seed2", "eval_mask_acc", 0.12, 0.82),
        _analysis("seed3", "eval_mlm_acc", 0.20, 0.89, None, _downstream(0.68)),
        _analysis("seed3", "eval_mask_acc", 0.14, 0.84),
    ]
    summary = summarize_seeds(analyses)
    assert summary["runs"] == ["runs/seed1", "runs/seed2", "runs/seed3"]
    final = summary["figures"]["eval_mlm_acc.final"]
    assert final["values"] == {"runs/seed1": 0.19, "runs/seed2": 0.21, "runs/seed3": 0.20}
    assert (final["n"], final["mean"], final["min"], final["max"]) == (3, pytest.approx(0.20), 0.19, 0.21)
    assert final["sd"] == pytest.approx(0.01)  # sample sd of 0.19, 0.20, 0.21
    mask = summary["figures"]["eval_mask_acc.final"]
    assert mask["mean"] == pytest.approx(0.12) and mask["sd"] == pytest.approx(0.02)
    start = summary["figures"]["eval_mlm_acc.plateau_start"]  # seed3 found no plateau: two runs
    assert start["n"] == 2 and start["mean"] == 450 and start["sd"] == pytest.approx(math.sqrt(5000))
    assert summary["figures"]["downstream.cws.best_score"]["mean"] == pytest.approx(0.68)
    assert "downstream.cws.mlm_vs_score_spearman_rho" not in summary["figures"]  # null: left out
    assert summary["figures"]["eval_mask_acc.spearman_rho"]["max"] == pytest.approx(0.89)


def test_inputs_that_cannot_be_summarized():
    one = _analysis("seed1", "eval_mlm_acc", 0.19, 0.85)
    with pytest.raises(ValueError, match="at least two"):
        summarize_seeds([one, _analysis("seed1", "eval_mask_acc", 0.1, 0.8)])
    with pytest.raises(SeedsInputError, match="other values of eval_mlm_acc.final") as caught:
        summarize_seeds([one, _analysis("seed2", "eval_mlm_acc", 0.2, 0.8), _analysis("seed1", "eval_mlm_acc", 0.3, 0.85)])
    assert caught.value.index == 2
    with pytest.raises(SeedsInputError, match="no source.path") as caught:
        summarize_seeds([one, {"metric": {"name": "x"}}])
    assert caught.value.index == 1
    with pytest.raises(ValueError, match="no metric.name"):
        headline_figures({"source": {"path": "a/b.json"}})


@pytest.mark.slow  # full analyses: curve fits, the phase model, bootstrap refits
def test_cli_on_real_analyses(tmp_path, capsys):
    """Two 'seeds' standing in as the published history and its first half, each in its own run folder."""
    outputs = []
    for name, keep in (("seed1", None), ("seed2", 50_000)):
        folder = tmp_path / name
        folder.mkdir()
        obj = json.loads(FIXTURE.read_text(encoding="utf-8"))
        if keep:
            n = sum(1 for s in obj["steps"] if s <= keep)
            obj = {k: v[:n] for k, v in obj.items()}
        (folder / "training_history_100k.json").write_text(json.dumps(obj), encoding="utf-8")
        out = folder / "analysis.json"
        assert analyze_100k.main([str(folder / "training_history_100k.json"), "--out", str(out), "--bootstrap", "0",
                                  "--quiet"]) == EXIT_OK
        outputs.append(out)
    capsys.readouterr()
    summary_path = tmp_path / "seeds_summary.json"
    code = analyze_100k.main(["--seeds-summary", *map(str, outputs), "--out", str(summary_path)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK and err == "" and "mlm_acc.pearson_r" in out and f"wrote {summary_path}" in out
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    rs = [json.loads(p.read_text(encoding="utf-8"))["pearson_correlation"] for p in outputs]
    figure = summary["figures"]["mlm_acc.pearson_r"]
    assert figure["values"] == {str(tmp_path / "seed1"): rs[0], str(tmp_path / "seed2"): rs[1]}
    assert figure["mean"] == pytest.approx(sum(rs) / 2) and summary["inputs"] == [str(p) for p in outputs]
    # a file that is not an analysis: one line naming it, exit 3; no --out: exit 2
    shutil.copy(FIXTURE, tmp_path / "history.json")
    code = analyze_100k.main(["--seeds-summary", str(outputs[0]), str(tmp_path / "history.json"), "--out",
                              str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1 and "history.json" in err
    assert analyze_100k.main(["--seeds-summary", *map(str, outputs)]) == EXIT_USAGE


def test_seed_band_at_the_steps_every_run_has():
    band = seed_band({"a": ([0, 125, 250], [0.0, 0.10, 0.30]), "b": ([0, 125, 250, 375], [0.02, 0.20, 0.10, 0.5])})
    assert band["steps"] == [0, 125, 250]  # b's step 375 is not a's: left out
    assert band["mean"] == pytest.approx([0.01, 0.15, 0.20])
    assert band["min"] == [0.0, 0.10, 0.10] and band["max"] == [0.02, 0.20, 0.30]
    assert band["sd"] == pytest.approx([math.sqrt(2) * 0.01, math.sqrt(2) * 0.05, math.sqrt(2) * 0.10])
    assert band["runs"] == {"a": [0.0, 0.10, 0.30], "b": [0.02, 0.20, 0.10]}
    # no shared step (a run stopped before its first evaluation): no band, and seed_bands leaves it out
    assert seed_band({"a": ([0], [0.1]), "b": ([125], [0.2])}) is None
    assert list(seed_bands({"eval_mask_acc": {"a": ([0], [0.1]), "b": ([0], [0.3])},
                            "eval_mlm_acc": {"a": ([0], [0.1]), "b": ([125], [0.2])}})) == ["eval_mask_acc"]


def test_within_step_correlation_worked_by_hand():
    """Three seeds at steps 0, 10 and 20. Step 0: every seed at accuracy 0 (before learning: left out).
    Centred at step 10: acc (-0.01, 0, 0.01), score (-0.02, 0.01, 0.01); at step 20: acc (0.02, 0, -0.02),
    score (0.03, 0, -0.03). Sxy = 0.0003 + 0.0012 = 0.0015; Sxx = 0.0002 + 0.0008 = 0.001;
    Syy = 0.0006 + 0.0018 = 0.0024; r = 0.0015 / sqrt(0.001 x 0.0024) = 0.9682; N = 6 pairs over k = 2
    steps: 3 degrees of freedom, Fisher se 1/sqrt(2)."""
    from bertstudy.analysis.seeds import within_step_correlation

    series = {"a": ([0, 10, 20], [0.0, 0.10, 0.22], [0.5, 0.60, 0.73]),
              "b": ([0, 10, 20], [0.0, 0.11, 0.20], [0.4, 0.63, 0.70]),
              "c": ([0, 10, 20, 30], [0.0, 0.12, 0.18, 0.3], [0.6, 0.63, 0.67, 0.9])}  # step 30: c only
    result = within_step_correlation(series)
    r = 0.0015 / math.sqrt(0.001 * 0.0024)
    assert result["steps"] == [10, 20] and result["n"] == 6 and result["runs"] == 3
    assert result["r"] == pytest.approx(r)
    t = r * math.sqrt(3 / (1 - r * r))
    from scipy import stats
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, 3))
    z, q = math.atanh(r), stats.norm.ppf(0.975)
    assert result["ci"] == pytest.approx([math.tanh(z - q / math.sqrt(2)), math.tanh(z + q / math.sqrt(2))])
    # seeds that never differ in accuracy: nothing to compare
    flat = within_step_correlation({"a": ([0, 1], [0.0, 0.0], [0.5, 0.6]), "b": ([0, 1], [0.0, 0.0], [0.4, 0.7])})
    assert flat["r"] is None and "no step" in flat["message"]


def test_summary_pairs_the_seeds_downstream_series_at_equal_step():
    def run(name, accs, scores):
        downstream = {"tasks": {"cws": {"best": {"step": 20, "score": max(scores)},
                                        "series": {"step": [0, 10, 20], "score": scores, "heldout_mlm_acc": accs,
                                                   "heldout_mask_acc": accs}}}}
        return _analysis(name, "eval_mask_acc", accs[-1], 0.9, downstream=downstream)

    summary = summarize_seeds([run("a", [0.0, 0.10, 0.22], [0.5, 0.60, 0.73]),
                               run("b", [0.0, 0.11, 0.20], [0.4, 0.63, 0.70]),
                               run("c", [0.0, 0.12, 0.18], [0.6, 0.63, 0.67])])
    across = summary["downstream_across_seeds"]["cws"]["heldout_mask_acc"]
    assert across["r"] == pytest.approx(0.0015 / math.sqrt(0.001 * 0.0024)) and across["n"] == 6
