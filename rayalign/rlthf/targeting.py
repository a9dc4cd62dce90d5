"""Whom to ask and what to flip, from P(AI label wrong): the error-model targeting policy.

A human label is worth the most where the AI label is most likely wrong, so the batch is
the unseen pairs with the highest P(wrong) (``rlthf.error_model``), plus:

* a **random share** of every batch, drawn uniformly from the unseen pairs, so that the
  error model also learns where the targeting never looks and the run can report the base
  rate it is beating (errors per label on random pairs);
* a **flip audit**: a random sample of the round's flip window — the ``flip_window`` pairs
  with the highest P(wrong) > 0.5 after the targeted batch, the very pairs a flip would
  change — so the people's answers estimate exactly the precision of the flips about to be
  applied, without bias.

Flips are applied only with evidence (``flip_gate``): every pair in the window has
P(wrong) > 0.5, and this round's audit answers give a one-sided Wilson lower confidence
bound above 0.5; with no audit answers, or a reward model no better than chance, nothing is
flipped. Why a window and not every candidate: P(wrong) ranks better than it calibrates, and
the candidates just above 0.5 are a coin toss; the top of the ranking is where a flip is
likely right (measured on the simulated HH benchmark: all 247 candidates of one seed held
59 % errors, too few for the gate, while the paper's 50-odd most extreme pairs held 96 %).
Pure functions; seeds make every draw the same on a rerun.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence


@dataclass
class TargetedBatch:
    random_share: list[str]
    audit: list[str]
    targeted: list[str]
    #: unseen pairs with P(wrong) > 0.5 that nobody is asked about this round (flips, if allowed)
    flip_candidates: list[str]


def plan_targeted(pool: Sequence[str], p_wrong: dict[str, float], *, budget: int, random_share: float,
                  flip_audit: int, seed: str, flip_window: int | None = None) -> TargetedBatch:
    """The round's human batch (``budget`` pairs in all) and its flip candidates (the flip
    window less the audited pairs; ``flip_window`` None = every candidate).

    ``pool``: unseen pairs. Ties in P(wrong) keep ``pool``'s order (pass it in a stable order).
    """
    rng = random.Random(seed)
    pool = list(pool)
    n_rand = min(len(pool), max(1, round(random_share * budget))) if random_share > 0 and budget > 1 else 0
    rand = rng.sample(pool, n_rand)
    taken = set(rand)
    rest = [i for i in sorted(pool, key=lambda i: -p_wrong[i]) if i not in taken]
    candidates = [i for i in rest if p_wrong[i] > 0.5]
    room = budget - n_rand
    # Fewer candidates than the targeted batch: all of them are asked, nothing is left to flip.
    n_audit = min(flip_audit, room) if len(candidates) >= room else 0
    targeted = rest[: max(0, budget - n_rand - n_audit)]
    window = candidates[len(targeted):][:flip_window]  # candidates are the head of ``rest``
    if n_audit and len(window) <= n_audit:  # nothing would be left to flip: no audit, all targeting
        n_audit, window = 0, []
        targeted = rest[:room]
    audit = rng.sample(window, n_audit) if n_audit else []
    asked = set(audit)
    return TargetedBatch(random_share=rand, audit=audit, targeted=targeted,
                         flip_candidates=[i for i in window if i not in asked])


def wilson_lower(successes: int, n: int, confidence: float) -> float | None:
    """One-sided lower confidence bound of a binomial proportion (Wilson score; None for n = 0)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(successes, n).proportion_ci(confidence_level=2 * confidence - 1, method="wilson").low)


@dataclass
class FlipGate:
    apply: bool
    reason: str
    audit_right: int = 0
    audit_n: int = 0
    lower_bound: float | None = None


def flip_gate(candidates: int, audit_right: int, audit_n: int, *, confidence: float, require_audit: bool,
              rm_ok: bool, rm_note: str = "") -> FlipGate:
    """Whether a round's flips are applied, and the one line that says why (report, log)."""
    lcb = wilson_lower(audit_right, audit_n, confidence)
    counts = dict(audit_right=audit_right, audit_n=audit_n, lower_bound=lcb)
    if not candidates:
        return FlipGate(False, "no flip candidates", **counts)
    if not rm_ok:
        return FlipGate(False, f"reward model no better than chance on held-out folds{rm_note}: no flips", **counts)
    if audit_n == 0:
        if require_audit:
            return FlipGate(False, "no audited flip candidates yet: no flips", **counts)
        return FlipGate(True, "applied without audit (flip_audit: 0, the paper's policy)", **counts)
    bound = f"people agreed with {audit_right}/{audit_n} audited flips, {100 * confidence:.0f}% lower bound {lcb:.2f}"
    if lcb is not None and lcb > 0.5:
        return FlipGate(True, f"applied: {bound} > 0.5", **counts)
    return FlipGate(False, f"refused: {bound} ≤ 0.5", **counts)


def rm_better_than_chance(margins: Sequence[float], confidence: float) -> tuple[bool, float | None]:
    """Does the reward model agree with the labels on held-out folds more often than chance?

    ``margins``: cross-fitted r(label) − r(other). Returns (passes, agreement rate).
    """
    n = len(margins)
    if n == 0:
        return False, None
    k = sum(m > 0 for m in margins)
    lcb = wilson_lower(k, n, confidence)
    return bool(lcb is not None and lcb > 0.5), k / n


__all__ = ["FlipGate", "TargetedBatch", "flip_gate", "plan_targeted", "rm_better_than_chance", "wilson_lower"]
