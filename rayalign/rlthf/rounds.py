"""One RLTHF round as two pure functions: ``plan_round`` (what to flip, whom to ask) and
``apply_round`` (flips + human answers → the next labels and training set).

Why split at the human step: the plan is fixed and persisted before anyone is asked (a
rerun after a crash reuses it, so no label bought is wasted), and the people's answers
are the only input ``apply_round`` needs on top of it. Neither function touches disk,
a model or a clock, so tests call them directly on hand-made states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rayalign.data.schema import Label, other_label
from rayalign.rlthf.curve import CurveAnalysis
from rayalign.rlthf.select import (
    Selection,
    audit_precision,
    audit_sample,
    backoff_for_iteration,
    build_training_set,
    select,
)

#: Origins of pairs people have seen: answered A/B, or tie/skip (spent, never asked again).
HUMAN_ORIGINS = ("human", "human_nolabel")


@dataclass
class LoopState:
    """Labels of the shard going into an iteration, where each came from, and the rows to train on."""

    labels: dict[str, Label]
    origins: dict[str, str]          # ai | rm | flip | human | human_nolabel (tie/skip)
    train: list[tuple[str, str, float]]

    def human_ids(self) -> set[str]:
        return {i for i, o in self.origins.items() if o in HUMAN_ORIGINS}

    def to_json(self) -> dict:
        return {"labels": self.labels, "origins": self.origins, "train": self.train}

    @classmethod
    def from_json(cls, d: dict) -> "LoopState":
        return cls(labels=d["labels"], origins=d["origins"], train=[tuple(r) for r in d["train"]])


@dataclass
class RoundPlan:
    """Everything decided from one curve before people are asked."""

    selection: Selection
    audit: list[str] = field(default_factory=list)       # flip candidates people check
    spot_check: list[str] = field(default_factory=list)  # eyes-off check of the top-left
    budget: int = 0
    backoff: float = 0.0

    @property
    def asked(self) -> list[str]:
        """Every pair shown to people this round, each once (all paid from ``budget``)."""
        return list(dict.fromkeys(self.selection.human_batch + self.audit + self.spot_check))

    def to_json(self) -> dict:
        return {"selection": self.selection.to_dict(), "audit": self.audit,
                "spot_check": self.spot_check, "budget": self.budget, "backoff": self.backoff}

    @classmethod
    def from_json(cls, d: dict) -> "RoundPlan":
        return cls(selection=Selection(**d["selection"]), audit=list(d.get("audit", [])),
                   spot_check=list(d.get("spot_check", [])), budget=int(d.get("budget", 0)),
                   backoff=float(d.get("backoff", 0.0)))


def round_budget(human_budget_pct: float, shard_size: int) -> int:
    return max(1, int(round(human_budget_pct / 100.0 * shard_size)))


def plan_round(order: Sequence[str], curve: CurveAnalysis, state: LoopState, *, iteration: int,
               budget: int, backoff_schedule: Sequence[float], backoff_after: float,
               flip_audit: int, spot_check: int, apply_flips: bool, seed: int) -> RoundPlan:
    """Flips, the human batch, the trusted region, the flip audit and the top-left spot check.

    The audit and the spot check are paid from the same budget, so ``len(plan.asked)``
    never exceeds ``budget``. ``apply_flips=False`` (the "RLTHF without flips" ablation)
    keeps the candidates for the record but audits none.
    """
    beta = backoff_for_iteration(iteration + 1, backoff_schedule, backoff_after)
    already = state.human_ids()
    sel = select(order, curve, budget=budget, backoff=beta, already_human=already)
    audit = audit_sample(sel.flips, min(flip_audit, budget), seed=f"audit:{seed}:{iteration}") \
        if apply_flips else []
    taken = set(sel.human_batch) | set(audit)
    room = max(0, budget - len(audit))
    spot = [i for i in order if i not in already and i not in taken][:min(spot_check, room)]
    sel.human_batch = sel.human_batch[: max(0, budget - len(audit) - len(spot))]
    return RoundPlan(selection=sel, audit=audit, spot_check=spot, budget=budget, backoff=beta)


@dataclass
class RoundResult:
    state: LoopState
    flips: list[str]                  # applied (empty when vetoed or switched off)
    answers: dict[str, Label]         # A/B answers bought this round
    no_label: list[str]               # ties/skips bought this round
    audit_precision: float | None
    vetoed: bool
    spot_check_disagree: int | None


def apply_round(state: LoopState, plan: RoundPlan, asked: dict[str, Label | None], *,
                amplification: int, train_on_flips: bool, apply_flips: bool,
                audit_min_precision: float) -> RoundResult:
    """Apply flips, then people's answers (which win over a flip), and build the next training set.

    ``asked`` maps every pair shown to people to their A/B answer or None (tie/skip).
    """
    answers: dict[str, Label] = {i: a for i, a in asked.items() if a in ("A", "B")}
    precision = audit_precision(plan.audit, state.labels, answers)
    vetoed = precision is not None and precision < audit_min_precision
    flips = list(plan.selection.flips) if apply_flips and not vetoed else []
    labels, origins = dict(state.labels), dict(state.origins)
    for i in flips:
        labels[i] = other_label(labels[i])
        origins[i] = "flip"
    for i in asked:
        if i in answers:
            labels[i] = answers[i]
        origins[i] = "human" if i in answers else "human_nolabel"
    spot = [i for i in plan.spot_check if i in answers]
    disagree = sum(answers[i] != state.labels[i] for i in spot) if plan.spot_check else None
    human_ids = {i for i, o in origins.items() if o == "human"}
    train = build_training_set(labels=labels, human_ids=human_ids, trusted=plan.selection.trusted,
                               flips=flips, amplification=amplification, train_on_flips=train_on_flips)
    return RoundResult(state=LoopState(labels=labels, origins=origins, train=train), flips=flips,
                       answers=answers, no_label=[i for i in asked if i not in answers],
                       audit_precision=precision, vetoed=vetoed, spot_check_disagree=disagree)


__all__ = ["HUMAN_ORIGINS", "LoopState", "RoundPlan", "RoundResult", "apply_round",
           "plan_round", "round_budget"]
