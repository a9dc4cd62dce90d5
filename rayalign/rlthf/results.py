"""The RLTHF results table: built once here, rendered by ``rlthf run`` (rich) and the report.

Why one builder: the same figures go to the terminal, ``report.md`` and ``report.html``, and
a column added in one place must not be missing in another. Judge errors found per 100
human labels comes first after the spend (what targeting exists to raise); then RM test
accuracy (the paper's metric: the iteration's own RM, and an RM fit on the whole curated
set, which is how the baselines' RMs are trained); then curated-label accuracy and where
its gain came from.
"""

from __future__ import annotations

from typing import Sequence

from rayalign.rlthf.accounting import roi
from rayalign.rlthf.records import BaselineRow, IterationRow

METHOD_NAMES = {"ai_only": "AI labels only", "random": "Random annotation",
                "random_flips": "Random + the same flips", "full_human": "Full human"}
TARGETING_NAMES = {"error_model": "RLTHF (error model)", "paper": "RLTHF (paper policy)"}
HEADERS = ["method", "iteration", "human %", "judge errors / 100 human labels", "RM test acc",
           "RM test acc (RM on all curated labels)", "curated-label acc", "gain: flips (free)",
           "gain: humans (paid)", "ROI humans (pts / 1 %)", "flips (right)"]
_ORDER = {"ai_only": 1, "random": 2, "random_flips": 3, "full_human": 4}


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def pts(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.1f}"


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def method_name(r: IterationRow) -> str:
    name = TARGETING_NAMES.get(r.targeting, "RLTHF")
    return name if r.apply_flips else f"{name}, no flips"


def results_table(iters: Sequence[IterationRow], baselines: Sequence[BaselineRow]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): RLTHF's iterations, then the baselines by method and budget."""
    rows = []
    for r in sorted(iters, key=lambda r: (not r.apply_flips, r.iteration)):
        flips = "–" if r.flips is None else f"{r.flips} ({_num(r.flips_correct, '{}')})"
        rows.append([method_name(r), str(r.iteration), f"{r.human_pct:.1f}", _num(r.errors_per_100_labels),
                     pct(r.rm_test_acc), pct(r.rm_test_acc_curated), pct(r.curated_acc), pts(r.gain_from_flips),
                     pts(r.gain_from_humans), _num(roi(r.gain_from_humans, r.human_pct), "{:+.2f}"), flips])
    for r in sorted(baselines, key=lambda b: (_ORDER.get(b.method, 9), b.human_pct)):
        rows.append([METHOD_NAMES.get(r.method, r.method), "", f"{r.human_pct:.1f}", _num(r.errors_per_100_labels),
                     pct(r.rm_test_acc), pct(r.rm_test_acc), pct(r.curated_acc), pts(r.gain_from_flips),
                     pts(r.gain_from_humans), _num(roi(r.gain_from_humans, r.human_pct), "{:+.2f}"),
                     str(r.flips) if r.flips else ""])
    return HEADERS, rows


__all__ = ["HEADERS", "METHOD_NAMES", "method_name", "pct", "pts", "results_table"]
