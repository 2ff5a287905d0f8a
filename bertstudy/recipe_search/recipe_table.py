"""The recipe search's results as a Markdown table (scripts/quick_recipes.py --table): one row per candidate
and seed, fastest to the target first, then the rest by final held-out [MASK] accuracy.

Pure: records in (the results file's lines, recipes.result_record), text out.
"""

from __future__ import annotations

import json

HEADER = ("| candidate | seed | changes to quick_plateau | steps | training s | held-out [MASK], final (best) "
          "| target reached at step (s) | 中国[MASK]民, top 3 |")


def percent(value) -> str:
    """0.246 -> '24.6%'; None -> '-'."""
    return "-" if value is None else f"{value:.1%}"


def _changes(record: dict) -> str:
    overrides = record.get("overrides") or {}
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "(none)"
    return text + (" (equal FLOPs)" if record.get("equal_flops") else "")


def _first_answers(record: dict) -> str:
    probes = record.get("probes") or []
    if not probes or not probes[0].get("masks"):
        return "-"
    return " ".join(c["token"] for c in probes[0]["masks"][0])


def _row(record: dict) -> str:
    if record.get("status") != "done":
        return (f"| {record['name']} | {record['seed']} | {_changes(record)} | {record['steps']} | - | "
                f"failed (exit {record.get('exit_code')}) | - | - |")
    reached = record.get("step_to_target")
    when = "never" if reached is None else f"{reached} ({record['seconds_to_target']:.0f})"
    return (f"| {record['name']} | {record['seed']} | {_changes(record)} | {record['steps_done']} | "
            f"{record['seconds']:.0f} | {percent(record['final_mask_acc'])} ({percent(record['best_mask_acc'])}) | "
            f"{when} | {_first_answers(record)} |")


def _order(record: dict):
    """Reached the target first, by seconds; then the rest by final accuracy, best first; failures last."""
    if record.get("status") != "done":
        return (2, 0.0)
    if record.get("seconds_to_target") is not None:
        return (0, record["seconds_to_target"])
    return (1, -(record.get("final_mask_acc") or 0.0))


def markdown_table(records: list[dict]) -> str:
    """The table, with a line above it naming the shortcut level and the target of the first done record."""
    done = [r for r in records if r.get("status") == "done"]
    lines = []
    if done:
        lines.append(f"Shortcut level (always the most frequent character) {percent(done[0]['shortcut_mask_level'])}; "
                     f"target (twice it) {percent(done[0]['target'])}; held-out [MASK] accuracy at the 15% test rate.")
        lines.append("")
    lines += [HEADER, "| " + " | ".join(["---"] * (HEADER.count(" | ") + 1)) + " |"]
    lines += [_row(r) for r in sorted(records, key=_order)]
    return "\n".join(lines) + "\n"
