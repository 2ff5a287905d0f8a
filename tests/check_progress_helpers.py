"""What the check_progress tests share: the CLI run with its output, and log records and a watch
configuration whose times the tests choose."""

import json

import check_progress
from bertstudy import monitor as progress
from bertstudy.training.run_log import add_eval_point, add_train_point, new_history

T0 = 1_700_000_000.0  # a fixed wall-clock origin for records whose times the tests choose


def run(argv, capsys):
    code = check_progress.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def line(record: dict) -> str:
    return json.dumps(record) + "\n"


def start(total=1000, resumed_from=None, t=T0):
    return {"kind": "start", "time": t, "total_steps": total, "preset": "quick", "resumed_from": resumed_from,
            "config": {}}


def train(step, t, mlm_acc=0.1, tokens_per_s=5000.0):
    return {"kind": "train", "step": step, "mlm_acc": mlm_acc, "nsp_acc": 0.5, "loss": 6.0, "mlm_loss": 5.5,
            "nsp_loss": 0.5, "lr": 1e-4, "tokens_per_s": tokens_per_s, "elapsed_s": t - T0, "time": t}


def watch(tmp_path, **kw):
    return progress.MonitorConfig(crawl_progress=tmp_path / "crawl_progress.json", run_dir=tmp_path, **kw)

def ours_history(points, total=1000, finished=False):
    history = new_history({"preset": "quick", "total_steps": total, "started_at": T0, "finished_at": None})
    for step, elapsed in points:
        add_train_point(history, {**train(step, T0 + elapsed), "elapsed_s": elapsed, "tokens_per_s": 800.0})
    add_eval_point(history, {"step": points[-1][0], "mlm_acc": 0.3, "nsp_acc": 0.6, "mlm_loss": 4.5})
    if finished:
        history["meta"]["finished_at"] = T0 + 999
    return history
