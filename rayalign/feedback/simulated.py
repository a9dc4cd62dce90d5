"""A SIMULATED AI labeller: realistic label errors without paying a judge.

Experiments on RLTHF need an AI labeller whose agreement with humans is known and whose
mistakes have structure, because structure decides what RLTHF can fix:

* ``uniform`` – every pair is mislabelled with the same probability (the easy case: the
  RM cannot learn the noise, so mislabelled pairs land in the curve's tail);
* ``length``  – the labeller prefers the longer response (the hard case: the RM can
  learn the bias, so mislabelled pairs look confident);
* position bias (``position_bias`` > 0 prefers Response A) can be added to either.

Each pair's choice is a Bernoulli draw with P(choose A) = σ(q·y + b_len·L + b_pos), where
y = ±1 is the true winner, L the normalised length difference; ``q`` is solved by
bisection so the *expected* agreement equals ``target_agreement``. Draws are keyed by
(seed, pair id): the same pair always gets the same label, whatever the batch order.

Every output of this module says "simulated".
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from rayalign.config import StrictModel
from rayalign.data.schema import Judgment, Label, PairwiseItem


class SimulatedLabellerConfig(StrictModel):
    target_agreement: float = Field(default=0.75, gt=0.5, lt=1.0)
    errors: Literal["uniform", "length"] = "length"
    length_bias: float = Field(default=2.0, ge=0.0, description="strength of the length preference")
    position_bias: float = Field(default=0.0, description=">0 prefers Response A")
    seed: int = 0


def _uniform01(seed: int, key: str) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class SimulatedLabeller:
    """Labels pairs like an imperfect LLM judge would, for experiments (named as simulated)."""

    simulated = True

    def __init__(self, cfg: SimulatedLabellerConfig):
        self.cfg = cfg

    @property
    def spec(self) -> str:
        c = self.cfg
        return (f"simulated-labeller(errors={c.errors},agreement={c.target_agreement},"
                f"length_bias={c.length_bias},position_bias={c.position_bias},seed={c.seed})")

    def _bias_logits(self, items: Sequence[PairwiseItem]) -> np.ndarray:
        c = self.cfg
        b = np.full(len(items), float(c.position_bias))
        if c.errors == "length" and c.length_bias > 0:
            la = np.array([len(it.response_a) for it in items], dtype=float)
            lb = np.array([len(it.response_b) for it in items], dtype=float)
            # log-ratio, squashed: a 2× longer answer is a strong but bounded pull.
            b += c.length_bias * np.tanh(np.log((la + 1) / (lb + 1)))
        return b

    def _solve_quality(self, y: np.ndarray, b: np.ndarray) -> float:
        """q such that mean P(label == truth) equals the target agreement."""
        target = self.cfg.target_agreement

        def agreement(q: float) -> float:
            p_a = _sigmoid(q * y + b)
            return float(np.mean(np.where(y > 0, p_a, 1 - p_a)))

        lo, hi = 0.0, 50.0
        if agreement(hi) < target:
            raise ValueError(
                f"simulated labeller cannot reach agreement {target} with these biases "
                f"(max {agreement(hi):.3f}); lower length_bias/position_bias")
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if agreement(mid) < target else (lo, mid)
        return (lo + hi) / 2

    def label(self, items: Sequence[PairwiseItem], truth: dict[str, Label]) -> list[Judgment]:
        """Judgments for ``items``; ``truth`` is what the simulation corrupts (never shown to real judges)."""
        if not items:
            return []
        missing = [it.id for it in items if truth.get(it.id) not in ("A", "B")]
        if missing:
            raise ValueError(f"simulated labeller needs a true label for every pair; missing for {missing[:5]}")
        y = np.array([1.0 if truth[it.id] == "A" else -1.0 for it in items])
        b = self._bias_logits(items)
        q = self._solve_quality(y, b)
        p_a = _sigmoid(q * y + b)
        out = []
        for it, p in zip(items, p_a):
            choose_a = _uniform01(self.cfg.seed, it.id) < p
            out.append(Judgment(
                item_id=it.id, judge=self.spec, label="A" if choose_a else "B",
                rationale=f"simulated labeller ({self.cfg.errors} errors): P(A)={p:.2f}",
                simulated=True,
            ))
        return out


class SimulatedJudge:
    """The simulated labeller behind the labelling pipeline's ``Judge`` interface.

    ``rayalign label`` with ``judge.kind: simulated`` corrupts each pair's own ``label``
    (the human winner) as configured in ``judge.settings``; pairs without a label are an
    error, since there is nothing to simulate from.
    """

    simulated = True

    def __init__(self, cfg: SimulatedLabellerConfig):
        self.labeller = SimulatedLabeller(cfg)
        self.name = self.spec = self.labeller.spec

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]:
        return self.labeller.label(items, {it.id: it.label for it in items if it.label})


def build_judge(cfg) -> SimulatedJudge:
    """Builder for ``rayalign.feedback.config.build_judge`` (kind ``simulated``)."""
    from rayalign.config import validate_config

    return SimulatedJudge(validate_config(SimulatedLabellerConfig, dict(cfg.settings),
                                          source="judge.settings"))
