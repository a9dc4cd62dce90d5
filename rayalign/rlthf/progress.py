"""The one line each RLTHF event prints: shared by the driver's log and ``rlthf run``'s progress.

RM test accuracy comes first (the paper's metric), then curated-label accuracy with its
gain split into flips (free) and human answers (paid).
"""

from __future__ import annotations

from rayalign.rlthf.records import BaselineRow, IterationRow


def pct(v: float | None) -> str:
    return "  n/a " if v is None else f"{100 * v:5.1f}%"


def format_iteration(r: IterationRow) -> str:
    """The one line an iteration logs: RM test accuracy first (the paper's metric)."""
    return (f"iteration {r.iteration}: RM test acc {pct(r.rm_test_acc)}  curated-label acc {pct(r.curated_acc)} "
            f"(from flips {_signed(r.gain_from_flips)}, from humans {_signed(r.gain_from_humans)})  "
            f"human {r.human_count} ({r.human_pct:.1f}% of corpus"
            + (f", {r.errors_per_100_labels:.0f} judge errors per 100" if r.errors_per_100_labels is not None else "")
            + f")  bought {r.human_batch if r.human_batch is not None else '-'}"
            f"  flips {r.flips if r.flips is not None else '-'}  curve e/k/r={r.elbow}/{r.knee}/{r.reflection}"
            + (f" [fallback: {r.curve_fallback}]" if r.curve_fallback else ""))


def format_baseline(r: BaselineRow) -> str:
    return (f"baseline {r.method:<12} RM test acc {pct(r.rm_test_acc)}  curated-label acc {pct(r.curated_acc)}  "
            f"human {r.human_count} ({r.human_pct:.1f}% of corpus"
            + (f", {r.errors_per_100_labels:.0f} judge errors per 100" if r.errors_per_100_labels is not None else "")
            + ")")


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f} pts"
