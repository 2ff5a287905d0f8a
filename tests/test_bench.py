"""The throughput benchmark end to end on the tiny preset: it runs both models and writes the
JSON with positive figures; the batch it times is masked as documented."""

import json

import pytest
import torch

pytest.importorskip("transformers")
from bench import throughput  # noqa: E402

torch.set_num_threads(1)


def test_tiny_benchmark_writes_positive_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--preset", "tiny", "--vocab-size", "300", "--steps", "2", "--warmup", "1", "--repeats", "2",
            "--device", "cpu", "--threads", "1", "--peak-tflops", "0.5", "--out", str(out)]
    assert throughput.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["precision"] == "fp32" and result["preset"] == "tiny"
    for name in ("ours", "transformers"):
        figures = result[name]
        for key in ("tokens_per_s", "step_time_s", "peak_memory_mb", "mfu", "first_loss"):
            assert figures[key] > 0, (name, key)
        assert len(figures["tokens_per_s_repeats"]) == 2
        tokens_per_step = result["shape"]["batch"] * result["shape"]["seq_len"]
        assert figures["tokens_per_s"] * figures["step_time_s"] == pytest.approx(tokens_per_step, rel=0.5)
        expected_mfu = figures["tokens_per_s"] * result["flops_per_token"] / 0.5e12
        assert figures["mfu"] == pytest.approx(expected_mfu)
    assert result["ratio_tokens_per_s"] == pytest.approx(result["ours"]["tokens_per_s"] / result["transformers"]["tokens_per_s"])
    assert result["parameters"] > result["non_embedding_parameters"] > 0
    assert "ours/transformers" in capsys.readouterr().out


def test_cpu_without_peak_reports_no_mfu(tmp_path):
    out = tmp_path / "bench.json"
    assert throughput.main(["--preset", "tiny", "--vocab-size", "100", "--steps", "1", "--warmup", "0",
                            "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ours"]["mfu"] is None and result["peak_tflops"] is None


def test_batch_is_masked_at_fifteen_percent():
    batch = throughput.make_batch(vocab_size=50, batch=3, seq_len=40, mask_rate=0.15, seed=1)
    labels, ids = batch["mlm_labels"], batch["input_ids"]
    masked = labels != -100
    assert masked.sum(dim=1).tolist() == [6, 6, 6]
    assert torch.all(ids[masked] == throughput.MASK_ID)
    assert torch.all(labels[masked] >= throughput.FIRST_CHAR_ID)
    assert not masked[:, 0].any() and not masked[:, -1].any()  # [CLS] and the last [SEP] are never masked


def test_bad_options_exit_2(tmp_path, capsys):
    assert throughput.main(["--preset", "tiny", "--vocab-size", "5", "--device", "cpu", "--out", str(tmp_path / "x.json")]) == 2
    assert "vocab-size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        throughput.main(["--steps", "0"])
    assert exc.value.code == 2
    if not torch.cuda.is_available():
        assert throughput.main(["--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "y.json")]) == 2
    assert not (tmp_path / "x.json").exists()
