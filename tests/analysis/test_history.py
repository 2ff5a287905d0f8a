"""history.py: the three formats read into one History, and every kind of bad input refused with a
one-line BadInputError naming the file (and key or line)."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertstudy.base.errors import EXIT_BAD_INPUT, BadInputError
from bertstudy.analysis.history import load_history
from bertstudy.base.run_files import HISTORY_FORMAT

FIXTURE = Path(__file__).parent.parent / "data" / "original_training_history_100k.json"
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def small_history(n=6) -> dict:
    steps = [100 * (i + 1) for i in range(n)]
    return {"steps": steps, "mlm_acc": [0.1 + 0.05 * i for i in range(n)], "nsp_acc": [0.5] * n,
            "loss": [8.0 - 0.5 * i for i in range(n)], "lr": [1e-4] * n}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def expect_bad(path: Path, *fragments: str) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        load_history(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == EXIT_BAD_INPUT
    return info.value


def test_the_original_studys_history_is_read_as_published():
    h = load_history(FIXTURE)
    assert h.source_format == "original" and h.meta == {}
    assert len(h.steps) == len(h.mlm_acc) == len(h.nsp_acc) == len(h.loss) == len(h.lr) == 1000
    assert h.steps.dtype == np.int64 and h.steps[0] == 100 and h.steps[-1] == 100_000
    assert h.loss[0] == pytest.approx(8.95722484588623) and h.lr[-1] == 0.0
    assert h.series == {} and len(h.eval_steps) == 0
    steps, values = h.metric("mlm_acc")
    assert values is h.mlm_acc and steps is h.steps
    with pytest.raises(BadInputError, match="no 'eval_mlm_acc' values .*available: mlm_acc, nsp_acc, loss, lr"):
        h.metric("eval_mlm_acc")


def test_our_format_with_series_eval_lists_and_meta(tmp_path):
    obj = small_history(4)
    obj.update(mlm_loss=[7.0, 6.0, 5.0, 4.0], nsp_loss=[0.7] * 4, tokens_per_s=[1e3] * 4, elapsed_s=[1, 2, 3, 4],
               eval_steps=[200, 400], eval_mlm_acc=[0.2, 0.3], eval_nsp_acc=[0.5, 0.5], eval_mlm_loss=[6.0, 5.0],
               meta={"format": HISTORY_FORMAT, "preset": "tiny", "total_steps": 400})
    h = load_history(write_json(tmp_path / "ours.json", obj))
    assert h.source_format == "ours" and h.meta["preset"] == "tiny"
    assert set(h.series) == {"mlm_loss", "nsp_loss", "tokens_per_s", "elapsed_s"}
    steps, values = h.metric("eval_mlm_acc")
    assert list(steps) == [200, 400] and list(values) == [0.2, 0.3]
    assert list(h.metric("mlm_loss")[1]) == [7.0, 6.0, 5.0, 4.0]


def test_optional_lists_may_be_absent(tmp_path):
    h = load_history(write_json(tmp_path / "h.json", {"steps": [1, 2, 3], "mlm_acc": [0.1, 0.2, 0.3]}))
    assert len(h.lr) == 0 and len(h.loss) == 0 and len(h.nsp_acc) == 0
    with pytest.raises(BadInputError, match="no 'lr' values"):
        h.metric("lr")


def log_lines(n=5, start_step=100, resumed_from=None):
    lines = [{"kind": "start", "time": 0, "total_steps": 1000, "preset": "tiny", "resumed_from": resumed_from}]
    for i in range(n):
        step = start_step + 100 * i
        lines.append({"kind": "train", "step": step, "mlm_acc": 0.1 + 0.01 * i, "nsp_acc": 0.5, "loss": 7.0 - 0.1 * i,
                      "mlm_loss": 6.5, "nsp_loss": 0.69, "lr": 1e-4, "tokens_per_s": 900.0, "elapsed_s": 1.0 * i,
                      "time": 1.0})
        if i % 2 == 1:
            lines.append({"kind": "eval", "step": step, "mlm_acc": 0.1, "nsp_acc": 0.5, "mlm_loss": 6.0, "time": 1.0})
    return [json.dumps(x) for x in lines]


def test_jsonl_log_with_a_half_written_last_line(tmp_path):
    path = tmp_path / "training_log_100k.jsonl"
    path.write_text("\n".join(log_lines(5)) + '\n{"kind": "train", "step": 600, "mlm_a', encoding="utf-8")
    h = load_history(path)
    assert h.source_format == "jsonl-log" and h.meta["preset"] == "tiny"
    assert list(h.steps) == [100, 200, 300, 400, 500]
    assert list(h.eval_steps) == [200, 400] and len(h.eval_mlm_loss) == 2
    assert h.series["tokens_per_s"].tolist() == [900.0] * 5
    with pytest.raises(BadInputError, match=r"training_log_100k.jsonl:\d+: invalid JSON line"):
        load_history(path, allow_partial_last=False)


def test_jsonl_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    first = log_lines(5)  # steps 100..500, then a crash; resume from the checkpoint at 300
    second = log_lines(4, start_step=400, resumed_from=300)  # steps 400..700
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(first + second) + "\n", encoding="utf-8")
    h = load_history(path)
    assert list(h.steps) == [100, 200, 300, 400, 500, 600, 700]


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = log_lines(3)
    lines[2] = lines[2].replace('"mlm_acc": 0.11', '"mlm_acc": "high"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expect_bad(path, ":3:", "'mlm_acc' must be a finite number")
    path.write_text(lines[0] + "\n" + "[1, 2]\n", encoding="utf-8")
    expect_bad(path, ":2:", "'kind'")
    path.write_text(lines[0] + "\n", encoding="utf-8")
    expect_bad(path, "no 'train' records")
    repeated = log_lines(3)
    path.write_text("\n".join(repeated + [repeated[1]]) + "\n", encoding="utf-8")
    expect_bad(path, "repeated or out of order")
    path.write_text(lines[0] + "\n" + '{"kind": "train", "step": 5, "mlm_acc": NaN}\n', encoding="utf-8")
    expect_bad(path, ":2:")


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b'{"steps": [1, 2], "mlm_acc": [0.1,', "invalid JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'{"mlm_acc": [0.1]}', "steps"),
    (b'{"steps": [1]}', "mlm_acc"),
    (b'{"steps": [], "mlm_acc": []}', "empty"),
    (b'{"steps": [1, 2], "mlm_acc": [0.1, NaN]}', "non-finite"),
    (b'{"steps": [1, 2], "mlm_acc": [0.1, Infinity]}', "non-finite"),
    (b'{"steps": [1, 2], "mlm_acc": [0.1, 45.5]}', "fractions in [0, 1]"),
    (b'{"steps": [1, 2.5], "mlm_acc": [0.1, 0.2]}', "integer step"),
    (b'{"steps": [1, 2], "mlm_acc": [0.1, 0.2], "meta": []}', "'meta' must be an object"),
    ('{"steps": [1], "mlm_acc": [0.1], "note": "é"}'.encode("latin-1"), "not UTF-8"),
    ('{"steps": [1], "mlm_acc": [0.1]}'.encode("utf-16"), "not UTF-8"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path, content, fragment):
    path = tmp_path / "history.json"
    path.write_bytes(content)
    expect_bad(path, fragment)


def test_missing_file_and_folder(tmp_path):
    expect_bad(tmp_path / "nope.json", "no such file")
    expect_bad(tmp_path, "folder")


MUTATIONS = ["string", "unequal", "nan", "unsorted", "repeated", "bool", "not_a_list"]


@HYPOTHESIS
@given(n=st.integers(2, 12), key=st.sampled_from(["mlm_acc", "nsp_acc", "loss", "lr"]),
       mutation=st.sampled_from(MUTATIONS), where=st.integers(0, 100))
def test_any_corrupted_list_is_refused(tmp_path, n, key, mutation, where):
    obj = small_history(n)
    i = where % n
    if mutation == "string":
        obj[key][i] = str(obj[key][i])
        fragment = f"'{key}'[{i}] must be a finite number"
    elif mutation == "unequal":
        obj[key] = obj[key][:-1]
        fragment = f"'{key}' has {n - 1} values but 'steps' has {n}"
    elif mutation == "nan":
        obj[key][i] = float("nan")
        fragment = "non-finite"
    elif mutation == "unsorted":
        k = where % (n - 1)
        obj["steps"][k], obj["steps"][k + 1] = obj["steps"][k + 1], obj["steps"][k]
        fragment = f"step {obj['steps'][k + 1]} at index {k + 1} is out of order"
    elif mutation == "repeated":
        k = where % (n - 1)
        obj["steps"][k + 1] = obj["steps"][k]
        fragment = f"step {obj['steps'][k]} at index {k + 1} is repeated"
    elif mutation == "bool":
        obj[key][i] = True
        fragment = f"'{key}'[{i}] must be a finite number"
    else:
        obj[key] = {"values": obj[key]}
        fragment = f"'{key}' must be a list"
    path = tmp_path / "h.json"
    path.write_text(json.dumps(obj, allow_nan=True), encoding="utf-8")
    expect_bad(path, fragment)


@HYPOTHESIS
@given(cut=st.floats(0.0, 0.999))
def test_any_truncation_of_a_valid_history_is_refused(tmp_path, cut):
    text = json.dumps(small_history(8))
    path = tmp_path / "h.json"
    path.write_text(text[: int(len(text) * cut)], encoding="utf-8")
    expect_bad(path)


@HYPOTHESIS
@given(values=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30))
def test_any_valid_history_round_trips(tmp_path, values):
    obj = {"steps": [10 * (i + 1) for i in range(len(values))], "mlm_acc": values}
    h = load_history(write_json(tmp_path / "h.json", obj))
    assert h.mlm_acc.tolist() == values and h.steps.tolist() == obj["steps"]
