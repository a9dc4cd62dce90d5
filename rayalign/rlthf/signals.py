"""Every signal about an AI label, kept per pair: the evidence RLTHF targets people with.

RLTHF is only as good as its guess of where the AI is wrong. The reward model's margin is
one guess, and on a small CPU reward model a weak one; the judges themselves say more, for
free: a judge that contradicts itself when the responses are swapped is guessing, and a
second judge that disagrees marks a pair where at least one of them is wrong. This module
turns the judgments of the labeller and of any extra judges into plain per-pair facts
(``PairSignals``), and resolves each pair's starting label from them. Pure functions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

from rayalign.data.schema import Judgment, Label, PairwiseItem


@dataclass(frozen=True)
class PairSignals:
    """What the judges said about one pair, in the pair's A/B order."""

    #: the labeller's consensus: "A"/"B", "tie" (a tie, or its orders contradict), None (failed)
    primary: str | None
    #: the labeller's decisive verdicts contradict each other across A/B orders
    inconsistent: bool
    #: orders in which the labeller gave a verdict
    orders: int
    #: the labeller's probability for "A" where its engine gave one (mean over orders)
    p_a: float | None
    #: each extra judge's consensus label, in ``labeller.extra_judges`` order
    extra: tuple[str | None, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "PairSignals":
        return cls(**{**d, "extra": tuple(d.get("extra", ()))})


def _p_a(j: Judgment, item: PairwiseItem) -> float | None:
    """P(A) from the verdicts' confidences (the probability of what each order chose)."""
    ps = []
    for v in j.order_verdicts:
        lab = v.label_in(item)
        if v.confidence is None or lab not in ("A", "B"):
            continue
        ps.append(v.confidence if lab == "A" else 1.0 - v.confidence)
    return sum(ps) / len(ps) if ps else None


def pair_signals(item: PairwiseItem, primary: Judgment | None,
                 extras: Sequence[Judgment | None] = ()) -> PairSignals:
    """The signals of one pair from its labeller judgment and extra judges' judgments."""
    labels = [v.label_in(item) for v in (primary.order_verdicts if primary else []) if v.winner is not None]
    decisive = {lab for lab in labels if lab in ("A", "B")}
    return PairSignals(
        primary=None if primary is None or primary.error else primary.label,
        inconsistent=len(decisive) > 1, orders=len(labels),
        p_a=_p_a(primary, item) if primary else None,
        extra=tuple(None if j is None or j.error else j.label for j in extras))


def all_signals(items: Sequence[PairwiseItem], primary: dict[str, Judgment],
                extras: Sequence[dict[str, Judgment]] = ()) -> dict[str, PairSignals]:
    return {it.id: pair_signals(it, primary.get(it.id), [e.get(it.id) for e in extras]) for it in items}


def extra_consensus(sig: PairSignals) -> Label | None:
    """The label most extra judges chose decisively (None: none did, or they split evenly)."""
    votes = Counter(lab for lab in sig.extra if lab in ("A", "B"))
    if not votes:
        return None
    (top, n), *rest = votes.most_common()
    return None if rest and rest[0][1] == n else top  # type: ignore[return-value]


def starting_label(sig: PairSignals) -> tuple[Label | None, str]:
    """A pair's AI label and its origin: the labeller's decisive verdict ("ai"), else the
    extra judges' ("extra_judge"), else None (the reward model will label it: "rm")."""
    if sig.primary in ("A", "B"):
        return sig.primary, "ai"  # type: ignore[return-value]
    lab = extra_consensus(sig)
    return (lab, "extra_judge") if lab else (None, "rm")


def signal_summary(signals: dict[str, PairSignals]) -> dict[str, int]:
    """Counts for the run's manifest and report: how much evidence there is to target with."""
    n_extra = max((len(s.extra) for s in signals.values()), default=0)
    out = {"pairs": len(signals), "extra_judges": n_extra,
           "both_orders": sum(s.orders >= 2 for s in signals.values()),
           "order_inconsistent": sum(s.inconsistent for s in signals.values()),
           "labeller_abstained": sum(s.primary not in ("A", "B") for s in signals.values()),
           "with_confidence": sum(s.p_a is not None for s in signals.values())}
    if n_extra:
        out["extra_judge_disagrees"] = sum(
            s.primary in ("A", "B") and any(e in ("A", "B") and e != s.primary for e in s.extra)
            for s in signals.values())
    return out
