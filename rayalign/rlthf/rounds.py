"""One RLTHF round as pure functions: a plan (what to flip, whom to ask) and ``apply_round``
(flips + human answers → the next labels, training set and error-model history).

Two planners make the same ``RoundPlan``: ``plan_round`` (the paper's curve policy,
``targeting: paper``) and ``plan_error_round`` (the error model's, ``targeting:
error_model``; ``rlthf.targeting``).

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
from rayalign.rlthf.targeting import FlipGate, flip_gate, plan_targeted
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
    """Labels of the shard going into an iteration, where each came from, the rows to train on,
    and what people's answers taught so far (the error model's training rows and the pooled
    flip-audit evidence)."""

    labels: dict[str, Label]
    origins: dict[str, str]          # ai | extra_judge | rm | flip | human | human_nolabel (tie/skip)
    train: list[tuple[str, str, float]]
    #: one row per A/B answer: {id, part (why asked), x (features when asked), wrong}
    history: list[dict] = field(default_factory=list)
    #: audited flip candidates answered so far: [id, people agreed with the flip] (the record)
    audits: list[tuple[str, bool]] = field(default_factory=list)

    def human_ids(self) -> set[str]:
        return {i for i, o in self.origins.items() if o in HUMAN_ORIGINS}

    def to_json(self) -> dict:
        return {"labels": self.labels, "origins": self.origins, "train": self.train,
                "history": self.history, "audits": self.audits}

    @classmethod
    def from_json(cls, d: dict) -> "LoopState":
        return cls(labels=d["labels"], origins=d["origins"], train=[tuple(r) for r in d["train"]],
                   history=list(d.get("history", [])), audits=[(i, bool(ok)) for i, ok in d.get("audits", [])])


@dataclass
class RoundPlan:
    """Everything decided from one curve before people are asked."""

    selection: Selection
    audit: list[str] = field(default_factory=list)       # flip candidates people check
    spot_check: list[str] = field(default_factory=list)  # eyes-off check of the top-left
    budget: int = 0
    backoff: float = 0.0
    targeting: str = "paper"
    #: drawn at random from the unseen pairs (error-model targeting): the unbiased share
    random_share: list[str] = field(default_factory=list)
    #: the error model's features of each asked pair when it was asked (its next training rows)
    features: dict[str, list[float]] = field(default_factory=dict)
    #: the flip gate's facts known before anyone is asked
    rm_ok: bool = True
    rm_note: str = ""

    @property
    def asked(self) -> list[str]:
        """Every pair shown to people this round, each once (all paid from ``budget``)."""
        return list(dict.fromkeys(self.random_share + self.selection.human_batch + self.audit + self.spot_check))

    def part_of(self, i: str) -> str:
        """Why ``i`` was asked: random | audit | spot_check | targeted."""
        return ("random" if i in self.random_share else "audit" if i in self.audit
                else "spot_check" if i in self.spot_check else "targeted")

    def to_json(self) -> dict:
        return {"selection": self.selection.to_dict(), "audit": self.audit,
                "spot_check": self.spot_check, "budget": self.budget, "backoff": self.backoff,
                "targeting": self.targeting, "random_share": self.random_share, "features": self.features,
                "rm_ok": self.rm_ok, "rm_note": self.rm_note}

    @classmethod
    def from_json(cls, d: dict) -> "RoundPlan":
        return cls(selection=Selection(**d["selection"]), audit=list(d.get("audit", [])),
                   spot_check=list(d.get("spot_check", [])), budget=int(d.get("budget", 0)),
                   backoff=float(d.get("backoff", 0.0)), targeting=d.get("targeting", "paper"),
                   random_share=list(d.get("random_share", [])), features=dict(d.get("features", {})),
                   rm_ok=bool(d.get("rm_ok", True)), rm_note=d.get("rm_note", ""))


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


def plan_error_round(order: Sequence[str], state: LoopState, p_wrong: dict[str, float],
                     features: dict[str, list[float]], *, iteration: int, budget: int, random_share: float,
                     flip_audit: int, spot_check: int, apply_flips: bool, seed: int,
                     flip_window: int | None = None) -> RoundPlan:
    """The error model's round: a random share, audited flip candidates and the unseen pairs
    with the highest P(wrong) (``rlthf.targeting``), the eyes-off spot check from the top of
    the curve, all from one budget.

    The next reward model trains on the whole curated set (human answers × α, every other
    label once), not on the paper's backed-off region left of the knee: that region exists
    to keep the curve's guesses out of training, and here the curve guesses nothing. Measured
    on PandaLM (seed 0), the backed-off region cost the iteration RM 12 points of test
    accuracy (52.6 % against 67.1 % for the whole curated set).
    """
    beta = 0.0  # nothing is backed off (see above); the paper's schedule applies to targeting: paper
    already = state.human_ids()
    spot = [i for i in order if i not in already][:min(spot_check, budget)]
    pool = [i for i in order if i not in already and i not in set(spot)]
    tb = plan_targeted(pool, p_wrong, budget=budget - len(spot), random_share=random_share,
                       flip_audit=flip_audit if apply_flips else 0, seed=f"target:{seed}:{iteration}",
                       flip_window=flip_window)
    sel = Selection(flips=tb.flip_candidates, human_batch=tb.targeted, trusted=list(order), trusted_cut=len(order))
    asked = tb.random_share + tb.targeted + tb.audit + spot
    return RoundPlan(selection=sel, audit=tb.audit, spot_check=spot, budget=budget, backoff=beta,
                     targeting="error_model", random_share=tb.random_share,
                     features={i: features[i] for i in asked if i in features})


@dataclass
class RoundResult:
    state: LoopState
    flips: list[str]                  # applied (empty when vetoed or switched off)
    answers: dict[str, Label]         # A/B answers bought this round
    no_label: list[str]               # ties/skips bought this round
    audit_precision: float | None     # this round's audited flips people agreed with
    vetoed: bool                      # candidates there were, the gate refused them
    spot_check_disagree: int | None
    gate: FlipGate | None = None


def apply_round(state: LoopState, plan: RoundPlan, asked: dict[str, Label | None], *,
                amplification: int, train_on_flips: bool, apply_flips: bool,
                flip_confidence: float = 0.95) -> RoundResult:
    """Apply flips (only through the gate), then people's answers (which win over a flip),
    and build the next training set and the error model's next training rows.

    ``asked`` maps every pair shown to people to their A/B answer or None (tie/skip). The
    gate reads this round's audit answers, a random sample of exactly the flips it decides
    on (``rlthf.targeting.flip_gate``); error-model targeting needs that evidence, the
    paper's policy flips unaudited when ``flip_audit`` is 0.
    """
    answers: dict[str, Label] = {i: a for i, a in asked.items() if a in ("A", "B")}
    precision = audit_precision(plan.audit, state.labels, answers)
    now = [(i, answers[i] == other_label(state.labels[i])) for i in plan.audit if i in answers]
    audits = state.audits + now
    gate = flip_gate(len(plan.selection.flips), sum(ok for _, ok in now), len(now),
                     confidence=flip_confidence, require_audit=plan.targeting == "error_model",
                     rm_ok=plan.rm_ok, rm_note=plan.rm_note) if apply_flips else None
    vetoed = bool(gate and plan.selection.flips and not gate.apply)
    flips = list(plan.selection.flips) if gate and gate.apply else []
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
    history = state.history + [{"id": i, "part": plan.part_of(i), "x": plan.features[i],
                                "wrong": answers[i] != state.labels[i]}
                               for i in plan.asked if i in answers and i in plan.features]
    nxt = LoopState(labels=labels, origins=origins, train=train, history=history, audits=audits)
    return RoundResult(state=nxt, flips=flips, answers=answers, no_label=[i for i in asked if i not in answers],
                       audit_precision=precision, vetoed=vetoed, spot_check_disagree=disagree, gate=gate)


__all__ = ["HUMAN_ORIGINS", "LoopState", "RoundPlan", "RoundResult", "apply_round",
           "plan_error_round", "plan_round", "round_budget"]
