"""From a curve to the next iteration: flips, the human batch, and the training set.

All functions are pure: they take the curve order (ids sorted by descending margin), the
landmarks and the label state, and return id lists. The driver applies and persists them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Sequence

from rayalign.rlthf.curve import CurveAnalysis

PAPER_BACKOFF_SCHEDULE = (0.6, 0.6, 0.6, 0.4, 0.2)
PAPER_BACKOFF_AFTER = 0.1


def backoff_for_iteration(iteration: int, schedule: Sequence[float] = PAPER_BACKOFF_SCHEDULE,
                          after: float = PAPER_BACKOFF_AFTER) -> float:
    """β for building the training set of iteration ``iteration`` (1-based, as in the paper)."""
    if iteration < 1:
        raise ValueError("back-off applies from iteration 1 on")
    return schedule[iteration - 1] if iteration <= len(schedule) else after


@dataclass
class Selection:
    flips: list[str] = field(default_factory=list)
    human_batch: list[str] = field(default_factory=list)
    trusted: list[str] = field(default_factory=list)
    human_start: int | None = None
    trusted_cut: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def select_flips(order: Sequence[str], curve: CurveAnalysis, protected: set[str]) -> list[str]:
    """Pairs right of the reflection point; human-answered pairs are never flipped."""
    if curve.reflection is None:
        return []
    return [i for i in order[curve.reflection + 1:] if i not in protected]


def select_human_batch(order: Sequence[str], curve: CurveAnalysis, budget: int,
                       already_human: set[str]) -> tuple[list[str], int]:
    """``budget`` pairs from the reflection point leftwards (from the bottom if there is none).

    Returns the ids and the position where the walk started. Pairs a human already answered
    are skipped, so a budget is always spent on new information.
    """
    if budget <= 0:
        return [], -1
    start = curve.reflection if curve.reflection is not None else len(order) - 1
    start = min(start, len(order) - 1)
    batch: list[str] = []
    for pos in range(start, -1, -1):
        i = order[pos]
        if i in already_human:
            continue
        batch.append(i)
        if len(batch) == budget:
            break
    return batch, start


def trusted_region(order: Sequence[str], curve: CurveAnalysis, backoff: float) -> tuple[list[str], int]:
    """Pairs left of the knee after backing off ``backoff`` (β) of that region from the knee side."""
    if not 0.0 <= backoff < 1.0:
        raise ValueError(f"back-off ratio must be in [0, 1), got {backoff}")
    knee = curve.knee if curve.knee is not None else len(order)
    cut = int(round(knee * (1.0 - backoff)))
    return list(order[:cut]), cut


def select(order: Sequence[str], curve: CurveAnalysis, *, budget: int, backoff: float,
           already_human: set[str]) -> Selection:
    flips = select_flips(order, curve, protected=already_human)
    batch, start = select_human_batch(order, curve, budget, already_human)
    trusted, cut = trusted_region(order, curve, backoff)
    return Selection(flips=flips, human_batch=batch, trusted=trusted, human_start=start,
                     trusted_cut=cut)


def build_training_set(
    *,
    labels: dict[str, str],
    human_ids: set[str],
    trusted: Sequence[str],
    flips: Sequence[str],
    amplification: int,
    train_on_flips: bool = True,
) -> list[tuple[str, str, float]]:
    """(id, label, weight) rows: human answers × α, the trusted region, optionally the flips.

    Amplification is a sample weight (equivalent to repeating a pair α times in a
    Bradley-Terry loss, without inflating the data the trainer has to stream).
    """
    if amplification < 1:
        raise ValueError("amplification must be ≥ 1")
    rows: dict[str, tuple[str, str, float]] = {}
    for i in trusted:
        rows[i] = (i, labels[i], 1.0)
    if train_on_flips:
        for i in flips:
            rows[i] = (i, labels[i], 1.0)
    for i in human_ids:
        rows[i] = (i, labels[i], float(amplification))
    return list(rows.values())


def audit_sample(flips: Sequence[str], n: int, seed: str) -> list[str]:
    """A seeded random sample of flip candidates for people to check (same on every rerun)."""
    if n <= 0 or not flips:
        return []
    return random.Random(seed).sample(list(flips), min(n, len(flips)))


def audit_precision(audited: Sequence[str], labels: dict[str, str], answers: dict[str, str]) -> float | None:
    """Share of audited flips where the human agrees with the flipped label (None: no answers)."""
    judged = [i for i in audited if i in answers]
    if not judged:
        return None
    flipped = {"A": "B", "B": "A"}
    return sum(answers[i] == flipped[labels[i]] for i in judged) / len(judged)
