"""How far to trust a judge: agreement with reference labels (people, or a stronger judge).

Reported separately, never folded into one number: how many pairs the judge decided
(coverage: errors and ties are not decisions), accuracy on the decided ones, accuracy with
ties counted as half right (what a coin flip on ties would score), and the share of
decided labels that say "A" (position bias: ~0.5 on randomly ordered pairs is healthy).
"""

from __future__ import annotations

from typing import Any

from rayalign.data.schema import Judgment, PairwiseItem


def judge_agreement(items: list[PairwiseItem], judgments: list[Judgment]) -> dict[str, Any]:
    """Agreement of ``judgments`` with ``items[i].label``; items without a label are skipped."""
    if len(items) != len(judgments):
        raise ValueError(f"{len(items)} items but {len(judgments)} judgments")
    n = correct = ties = errors = decided = says_a = 0
    for it, j in zip(items, judgments):
        if j.item_id != it.id:
            raise ValueError(f"judgment for {j.item_id!r} is not aligned with item {it.id!r}")
        if it.label not in ("A", "B"):
            continue
        n += 1
        if j.error or j.label is None:
            errors += 1
        elif j.label == "tie":
            ties += 1
        else:
            decided += 1
            correct += j.label == it.label
            says_a += j.label == "A"
    return {
        "n": n,
        "decided": decided,
        "ties": ties,
        "errors": errors,
        "coverage": decided / n if n else 0.0,
        "accuracy_decided": correct / decided if decided else None,
        "accuracy_ties_half": (correct + 0.5 * ties) / (n - errors) if n - errors else None,
        "accuracy_all": correct / n if n else None,
        "share_a": says_a / decided if decided else None,
        "reference_share_a": sum(it.label == "A" for it in items if it.label in ("A", "B")) / n if n else None,
    }
