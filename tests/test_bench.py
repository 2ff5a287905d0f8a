"""The throughput benchmark end to end on the tiny preset and a tiny corpus: it drives the trainer's
own step for each runner, writes every figure the JSON promises, and refuses bad options."""

import json

import pytest
import torch

pytest.importorskip("transformers")
from bench import throughput  # noqa: E402
from tests.train_helpers import write_tiny_corpus  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    corpus = write_tiny_corpus(root)
    out = root / "bench.json"
    argv = ["--preset", "tiny", "--corpus", str(corpus), "--cache-dir", str(root / "cache"), "--steps", "1",
            "--warmup", "1", "--repeats", "2", "--device", "cpu", "--threads", "1", "--compile-preset", "none",
            "--out", str(out)]
    assert throughput.main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.slow  # times the benchmark's runners
def test_every_runner_is_timed_with_positive_figures(tiny_result):
    result = tiny_result
    assert result["device"] == "cpu" and result["precision"] == "fp32" and result["preset"] == "tiny"
    assert result["matmul_peak_gflops"] > 0 and result["mfu_peak_gflops"] == pytest.approx(result["matmul_peak_gflops"])
    assert len(result["load_average_before"]) == 3 and result["compile"] is None
    for name in throughput.RUNNERS:
        figures = result["models"][name]
        for key in ("tokens_per_s", "step_time_s", "peak_memory_mb", "mfu"):
            assert figures[key] > 0, (name, key)
        assert 0 <= figures["data_wait_s_per_step"] < figures["step_time_s"] and 0 <= figures["padding"] < 1
        assert len(figures["tokens_per_s_repeats"]) == 2
        expected_mfu = figures["tokens_per_s"] * figures["flops_per_token"] / (result["mfu_peak_gflops"] * 1e9)
        assert figures["mfu"] == pytest.approx(expected_mfu)
        # from the timed steps' real tokens: the per-token figure at the full length's order (shorter attention
        # blocks; the MLM decoder at the masked positions only)
        assert 0 < figures["flops_per_token"] < result["flops_per_token_at_full_length"] * 1.2
    packed, plain = result["models"]["ours-packed"], result["models"]["ours-plain"]
    assert packed["flops_per_token"] == pytest.approx(plain["flops_per_token"])  # the same instances, other layouts
    assert result["matmul_peak_method"] == "2048^3 products, host clock"
    models = result["models"]
    assert models["ours-packed"]["padding"] <= models["ours-plain"]["padding"] == pytest.approx(
        models["transformers-plain"]["padding"])  # the plain runners train on the same padded rows
    assert result["ratio_ours_packed_vs_transformers"] == pytest.approx(
        models["ours-packed"]["tokens_per_s"] / models["transformers-plain"]["tokens_per_s"])


@pytest.mark.slow  # the benchmark run once for the module
def test_data_figures_compare_packed_and_plain(tiny_result):
    data = tiny_result["data"]
    for layout in ("packed", "plain"):
        assert data[layout]["build_ms"] > 0 and 0 <= data[layout]["padding"] < 1
    assert data["packed"]["padding"] <= data["plain"]["padding"]
    assert data["packed"]["rows_per_step"] <= data["plain"]["rows_per_step"] == data["batch_size"] * data["grad_accum"]


def test_transformers_runner_has_our_losses_on_the_same_batch():
    cpu = torch.device("cpu")
    config = throughput.bench_config("tiny", cpu, None, None)
    ours = throughput.build_model("ours-plain", config, 120, cpu).eval()
    theirs = throughput.build_model("transformers-plain", config, 120, cpu).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (3, 32), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    positions = torch.tensor([1, 5, 40, 70, 90])
    batch = dict(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=mask, mlm_positions=positions,
                 mlm_labels=ids.reshape(-1)[positions], nsp_labels=torch.tensor([0, 1, 0]))
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-4, atol=1e-5)
    assert int(a.mlm_count) == int(b.mlm_count) == 5


def test_bad_options_exit_2(tmp_path, capsys):
    assert throughput.main(["--preset", "tiny", "--corpus", str(tmp_path / "missing.jsonl"), "--device", "cpu",
                            "--out", str(tmp_path / "x.json")]) == 2
    assert "rare_char_fetch.py" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        throughput.main(["--steps", "0"])
    assert exc.value.code == 2
    if not torch.cuda.is_available():
        assert throughput.main(["--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "y.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_the_compile_pair_takes_one_micro_batch_a_step_in_a_cuda_graph_mode():
    """A CUDA-graph mode is timed at the whole per-process batch as one micro-batch (a run in that mode must
    take it so); the default mode keeps the preset's split."""
    cuda = torch.device("cuda")  # only its type is read: the split a GPU run would have
    default = throughput.compile_pair_config("large_100k", "default", cuda)
    graphs = throughput.compile_pair_config("large_100k", "reduce-overhead", cuda)
    assert (default.batch_size, default.grad_accum) == (32, 4)
    assert (graphs.batch_size, graphs.grad_accum, graphs.compile_mode) == (128, 1, "reduce-overhead")


def test_a_compiled_runner_in_a_cuda_graph_mode_steps_in_row_buckets(tmp_path, monkeypatch):
    """As a run does: one micro-batch a step, in the row buckets planned from the first steps (torch.compile
    itself stood in for: the CPU cannot capture CUDA graphs)."""
    from bench.data_pipeline import corpus_sampler
    from bertstudy.pretraining.packing import RowBuckets

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    cpu = torch.device("cpu")
    config = throughput.compile_pair_config("tiny", "reduce-overhead", cpu)
    sampler, vocab = corpus_sampler(config, str(write_tiny_corpus(tmp_path)), str(tmp_path / "cache"))
    runner = throughput.Runner("ours-packed", config, sampler, vocab, cpu, compiled=True)
    assert isinstance(runner.trainer.shape, RowBuckets) and runner.trainer.shape.rows[-1] == config.batch_size
    step, batches = runner.loader.next_step()
    assert step == 0 and len(batches) == 1 and len(batches[0]["input_ids"]) in runner.trainer.shape.rows
    assert runner.run(2)["tokens"] > 0
