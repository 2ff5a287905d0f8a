"""The packed data path: the same instances as the plain padded layout (only laid out differently),
the model's math unchanged by packing, <= 5% padding on the real embedded corpus, and a loader whose
batches do not depend on workers or on where the run starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rare_char_fetch
import train_large_100k
from bertstudy.base.atomic_io import read_json
from bertstudy.corpus.corpus_io import load_documents
from bertstudy.pretraining.loader import LoaderClock, batch_to_device, make_step_loader, step_micro_batches
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.packing import IGNORE_INDEX, PACKED_KEYS, collate_packed, collate_padded, pack_micro_batches, pack_rows, padding_fraction
from bertstudy.pretraining.heldout_split import split_documents
from bertstudy.pretraining.instances import InstanceSampler, training_instances
from bertstudy.pretraining.masking import NO_KIND
from bertstudy.pretraining.token_cache import tokenize_documents
from bertstudy.training.run_log import TIMING_LISTS
from bertstudy.pretraining.vocab import build_vocab
from tests.train_helpers import tiny_args, tiny_documents, write_tiny_corpus

torch.set_num_threads(1)


def _sampler(documents, max_seq_len=32, max_predictions=5):
    vocab = build_vocab(s for d in documents for s in d.sentences)
    corpus = tokenize_documents(documents, vocab)
    return InstanceSampler(corpus, np.arange(corpus.num_documents), len(vocab), max_seq_len, 0.15, max_predictions,
                           0.1, False)


def _unpack(batch: dict) -> list[tuple]:
    """Each instance of a packed micro-batch back as (ids, types, labels, nsp, kinds), in NSP-slot order."""
    rows, row_len = batch["input_ids"].shape
    flat_labels = np.full(rows * row_len, IGNORE_INDEX)
    flat_kinds = np.full(rows * row_len, NO_KIND)
    valid = batch["mlm_labels"] != IGNORE_INDEX
    assert (batch["mlm_kinds"][~valid] == NO_KIND).all()  # padding slots have no kind
    flat_labels[batch["mlm_positions"][valid]] = batch["mlm_labels"][valid]
    flat_kinds[batch["mlm_positions"][valid]] = batch["mlm_kinds"][valid]
    out = []
    for slot, label in enumerate(batch["nsp_labels"]):
        if label == IGNORE_INDEX:
            continue
        r, start = divmod(int(batch["cls_positions"][slot]), row_len)
        inst = batch["instance_ids"][r, start]
        n = int((batch["instance_ids"][r] == inst).sum())
        assert (batch["position_ids"][r, start:start + n] == np.arange(n)).all()
        out.append((batch["input_ids"][r, start:start + n], batch["token_type_ids"][r, start:start + n],
                    flat_labels[r * row_len + start:(r + 1) * row_len][:n], int(label),
                    flat_kinds[r * row_len + start:(r + 1) * row_len][:n]))
    return out


def _same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3] and np.array_equal(a[4], b[4])


def test_packing_keeps_exactly_the_instances_of_the_step():
    sampler = _sampler(tiny_documents(30))
    instances = training_instances(sampler, 7, 3, 0, 24)
    micro = step_micro_batches(sampler, 7, 3, 0, batch_size=6, grad_accum=4)
    assert len(micro) <= 4 and all(len(b["input_ids"]) <= 6 for b in micro)  # never more rows than planned
    unpacked = [(int(i), inst) for b in micro for i, inst in zip(b["instance_index"][b["instance_index"] >= 0],
                                                                 _unpack(b))]
    assert sorted(i for i, _ in unpacked) == list(range(24))  # every instance once
    assert all(_same(inst, instances[i]) for i, inst in unpacked)
    # rank 1 of 2 with half the batch trains on the second half of the same global batch
    rank1 = step_micro_batches(sampler, 7, 3, 1, batch_size=3, grad_accum=4)
    got = [inst for b in rank1 for inst in _unpack(b)]
    assert sorted(len(g[0]) for g in got) == sorted(len(inst[0]) for inst in instances[12:])


def test_pack_rows_first_fit_decreasing():
    rows = pack_rows(np.array([5, 30, 12, 20, 12, 9]), 32)
    assert rows == [[1], [3, 2], [4, 5, 0]]
    with pytest.raises(ValueError):
        pack_rows(np.array([33]), 32)


def test_packed_forward_equals_one_instance_per_padded_row():
    sampler = _sampler(tiny_documents(30), max_seq_len=40)
    instances = training_instances(sampler, 1, 0, 0, 12)
    packed = pack_micro_batches(instances, 40, 1)[0]
    assert len(packed["input_ids"]) < 12  # really packed: several instances share rows
    order = packed["instance_index"][packed["instance_index"] >= 0]
    padded = collate_padded([instances[i] for i in order], 40)
    torch.manual_seed(0)
    model = BertForPretraining(BertConfig(vocab_size=sampler.vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                                          intermediate_size=64, max_position=40)).eval()
    with torch.no_grad():
        a = model(**batch_to_device(packed, torch.device("cpu")))
        b = model(**{k: torch.from_numpy(v) for k, v in padded.items()})
    for name in ("loss", "mlm_loss", "nsp_loss"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6)
    for name in ("mlm_correct", "mlm_count", "nsp_correct", "nsp_count"):
        assert int(getattr(a, name)) == int(getattr(b, name)), name
    # the packed model's per-instance NSP logits equal the padded rows' ones
    hidden_packed = model.encode(torch.from_numpy(packed["input_ids"]), torch.from_numpy(packed["token_type_ids"]),
                                 None, torch.from_numpy(packed["position_ids"]), torch.from_numpy(packed["instance_ids"]))
    hidden_padded = model.encode(torch.from_numpy(padded["input_ids"]), torch.from_numpy(padded["token_type_ids"]),
                                 torch.from_numpy(padded["attention_mask"]))
    slots = torch.from_numpy(packed["cls_positions"][:len(order)])
    torch.testing.assert_close(model.nsp_logits(hidden_packed, slots), model.nsp_logits(hidden_padded), rtol=1e-5, atol=1e-6)


def test_collate_pads_prediction_slots_to_fixed_multiples():
    sampler = _sampler(tiny_documents(10))
    instances = training_instances(sampler, 0, 0, 0, 5)
    batch = collate_packed(instances, [[0, 1], [2], [3, 4]], 64, mlm_multiple=16, nsp_multiple=8)
    assert len(batch["mlm_positions"]) % 16 == 0 and len(batch["nsp_labels"]) == 8
    assert (batch["nsp_labels"][5:] == IGNORE_INDEX).all() and (batch["instance_index"][:5] == [0, 1, 2, 3, 4]).all()


@pytest.fixture(scope="module")
def embedded_sampler(tmp_path_factory):
    """The study's real corpus (the embedded People's Daily and reviews) at large_100k's length 128."""
    corpus = tmp_path_factory.mktemp("embedded") / "corpus.jsonl"
    assert rare_char_fetch.main(["--source", "embedded", "--out", str(corpus)]) == 0
    documents = load_documents(corpus)
    vocab = build_vocab(s for d in documents for s in d.sentences)
    tokens = tokenize_documents(documents, vocab)
    train, _ = split_documents(tokens, 0.02, 42)
    return InstanceSampler(tokens, train, len(vocab), 128, 0.15, 20, 0.1, False)


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_padding_is_at_most_5_percent_on_the_embedded_corpus(embedded_sampler):
    steps = [step_micro_batches(embedded_sampler, 42, step, 0, 32, 4) for step in range(10)]
    packed = padding_fraction([b for micro in steps for b in micro])
    plain = [collate_padded([embedded_sampler.draw_unpadded(np.random.default_rng([9, i])) for i in range(128)], 128)]
    plain_padding = 1 - sum(b["attention_mask"].sum() for b in plain) / sum(b["attention_mask"].size for b in plain)
    assert packed <= 0.05 and plain_padding > 0.15  # one instance per row would waste ~22%
    assert all(len(micro) == 4 and max(len(b["input_ids"]) for b in micro) <= 32 for micro in steps)


@pytest.mark.slow  # the embedded corpus read, then 300 steps packed
def test_the_compiled_layout_over_300_steps_of_large_100k_pads_at_most_5_percent(embedded_sampler):
    """--compile (not a CUDA-graph mode) trains on this packed layout, rows dynamic: at large_100k's 128 x 1
    every step is one micro-batch (never an extra one), and padding stays at what packing leaves."""
    steps = [step_micro_batches(embedded_sampler, 42, step, 0, 128, 1) for step in range(300)]
    assert all(len(micro) == 1 for micro in steps)
    padding = padding_fraction([micro[0] for micro in steps])
    rows = sorted({len(micro[0]["input_ids"]) for micro in steps})
    print(f"compiled layout at 128 x 1: padding {padding:.2%} over 300 steps, {len(rows)} row counts "
          f"({rows[0]}-{rows[-1]}), one graph")
    assert padding <= 0.05 and len(rows) > 4  # more shapes than CUDA graphs could take: why rows are dynamic


def test_loader_batches_do_not_depend_on_workers_or_start():
    sampler = _sampler(tiny_documents(20))
    cpu = torch.device("cpu")
    direct = [step_micro_batches(sampler, 5, s, 0, 4, 2) for s in range(2, 6)]
    for workers in (0, 2):
        clock = LoaderClock(make_step_loader(sampler, 5, 0, 4, 2, 2, 6, cpu, workers))
        for s in range(2, 6):
            step, batches = clock.next_step()
            assert step == s and len(batches) == len(direct[s - 2])
            for got, want in zip(batches, direct[s - 2]):
                assert all(np.array_equal(np.asarray(got[k]), want[k]) for k in want)
        assert clock.take_wait() >= 0 and clock.waited == 0


@pytest.mark.slow  # two tiny training runs
def test_a_run_with_two_loader_workers_equals_one_without(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    histories = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert train_large_100k.main(tiny_args(corpus, out, tmp_path / "cache", data_workers=workers,
                                               dropout=0.1)) == 0
        history = read_json(out / "training_history_100k.json")
        assert len(history["data_wait_s"]) == len(history["steps"]) and min(history["data_wait_s"]) >= 0
        for name in TIMING_LISTS:
            history.pop(name)
        history["meta"] = {k: v for k, v in history["meta"].items() if k not in ("started_at", "finished_at", "config")}
        histories.append(history)
    assert histories[0] == histories[1]


@pytest.mark.slow  # the embedded corpus read and cleaned
def test_fixed_shapes_one_shape_for_every_micro_batch_of_a_run(embedded_sampler):
    """Variable packing gives a new shape every few steps (CUDA graphs record one graph per shape); with one
    fixed shape planned from the first steps (what the GPU check uses to find an overflow step) every micro-batch of 200 steps
    has the same rows and MLM/NSP slots, holds exactly the step's instances, and a step needs an extra
    micro-batch of that shape only rarely."""
    from bertstudy.pretraining.instances import training_instances
    from bertstudy.pretraining.loader import plan_step_shape

    steps = range(200)
    variable = {tuple(b[k].shape for k in ("input_ids", "mlm_positions", "cls_positions"))
                for s in steps for b in step_micro_batches(embedded_sampler, 42, s, 0, 32, 4)}
    assert len(variable) > 5  # before
    shape = plan_step_shape(embedded_sampler, 42, 0, 32, 4)
    assert shape == plan_step_shape(embedded_sampler, 42, 0, 32, 4)  # a pure function: a resume gets it again
    assert shape.rows < 32  # packing still saves rows
    shapes, counts, batches = set(), [], []
    for s in steps:
        micro = step_micro_batches(embedded_sampler, 42, s, 0, 32, 4, shape)
        counts.append(len(micro))
        shapes |= {tuple(b[k].shape for k in PACKED_KEYS) for b in micro}
        if s < 20:
            instances = training_instances(embedded_sampler, 42, s, 0, 128)
            unpacked = [(int(i), inst) for b in micro
                        for i, inst in zip(b["instance_index"][b["instance_index"] >= 0], _unpack(b))]
            assert sorted(i for i, _ in unpacked) == list(range(128))
            assert all(_same(inst, instances[i]) for i, inst in unpacked)
            batches += micro
    assert shapes == {((shape.rows, 128),) * 4 + ((shape.mlm_slots,),) * 3 + ((shape.nsp_slots,),) * 2}  # + mlm_kinds
    assert min(counts) == 4 and sum(c > 4 for c in counts) <= len(counts) // 20
    assert padding_fraction(batches) < 0.15  # the fixed rows cost some padding back, far from ~22%


def test_workers_hand_over_one_buffer_per_step_copied_to_the_device_once(monkeypatch):
    """A step's micro-batches travel as one contiguous buffer (one tensor through the
    worker queue and the pinning thread, not 9 per micro-batch) and reach the device in one copy."""
    from bertstudy.training.config import preset_config
    from bertstudy.training.trainer import Trainer, model_config_for

    sampler = _sampler(tiny_documents(20))
    cpu = torch.device("cpu")
    seen = []
    for step, batches in make_step_loader(sampler, 5, 0, 4, 2, 0, 3, cpu, 2):
        direct = step_micro_batches(sampler, 5, step, 0, 4, 2)
        assert len(batches) == len(direct)
        base = batches.buffer
        assert base.dim() == 1 and base.is_contiguous()
        for got, want in zip(batches, direct):
            assert set(got) == set(want) and all(np.array_equal(got[k].numpy(), want[k]) for k in want)
            assert all(got[k].untyped_storage().data_ptr() == base.untyped_storage().data_ptr() for k in got)
        seen.append(batches)
    config = preset_config("quick", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_seq_len=32,
                           batch_size=4, grad_accum=2, device="cpu", amp=False)
    trainer = Trainer(config, BertForPretraining(model_config_for(config, sampler.vocab_size)), sampler)
    copies = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        import traceback

        caller = traceback.extract_stack()[-2].filename  # ours; torch's clip_grad moves norms to their own device
        if "bertstudy" in caller and ("device" in kwargs or any(isinstance(a, torch.device) for a in args)):
            copies.append(tuple(self.shape))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    trainer.train_step(0, seen[0])
    monkeypatch.undo()
    assert copies == [tuple(seen[0].buffer.shape)]  # the step's one buffer, nothing per key
