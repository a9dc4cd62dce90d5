"""A SIMULATED AI labeller: realistic label errors without paying a judge.

Experiments on RLTHF need an AI labeller whose agreement with humans is known and whose
mistakes have structure, because structure decides what RLTHF can fix:

* ``uniform`` – every pair is mislabelled with the same probability (the easy case: the
  RM cannot learn the noise, so mislabelled pairs land in the curve's tail);
* ``length``  – the labeller prefers the longer response (the hard case: the RM can
  learn the bias, so mislabelled pairs look confident);
* position bias (``position_bias`` > 0 prefers the response shown first) can be added to either.

Each pair's choice is a Bernoulli draw with P(choose A) = σ(q·y + b_len·L ± b_pos), where
y = ±1 is the true winner, L the normalised length difference and the sign of b_pos says
whether A was shown first; ``q`` is solved by bisection so the *expected* agreement equals
``target_agreement``. Draws are keyed by (seed, pair id[, order]): the same pair always gets
the same label, whatever the batch order.

``both_orders`` asks twice, the responses swapped, like a debiased LLM judge: with a
position bias the two verdicts can contradict each other, and the label is then "tie"
(both verdicts are kept in ``Judgment.order_verdicts``). A *second* simulated judge whose
mistakes are partly those of the first (real judges share blind spots) takes the first's
noise draw on a ``shared_noise`` share of pairs (``noise_seed`` = the first judge's seed).

Every output of this module says "simulated".
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from rayalign.config import StrictModel
from rayalign.data.schema import Judgment, Label, OrderVerdict, PairwiseItem, order_consensus, response_key


class SimulatedLabellerConfig(StrictModel):
    target_agreement: float = Field(default=0.75, gt=0.5, lt=1.0)
    errors: Literal["uniform", "length"] = "length"
    length_bias: float = Field(default=2.0, ge=0.0, description="strength of the length preference")
    position_bias: float = Field(default=0.0, description=">0 prefers the response shown first")
    seed: int = 0
    both_orders: bool = Field(default=False, description="judge each pair in both A/B orders")
    shared_noise: float = Field(default=0.0, ge=0.0, le=1.0,
                                description="share of pairs whose noise draw is noise_seed's (correlated judges)")
    noise_seed: int | None = Field(default=None, description="the judge whose draws are shared")


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
        extra = (",both_orders" if c.both_orders else "") + (
            f",shared_noise={c.shared_noise}@{c.noise_seed}" if c.shared_noise and c.noise_seed is not None else "")
        return (f"simulated-labeller(errors={c.errors},agreement={c.target_agreement},"
                f"length_bias={c.length_bias},position_bias={c.position_bias},seed={c.seed}{extra})")

    def _bias_logits(self, items: Sequence[PairwiseItem]) -> np.ndarray:
        """Logit offsets towards A when A is shown first (length bias + position bias)."""
        c = self.cfg
        b = np.full(len(items), float(c.position_bias))
        if c.errors == "length" and c.length_bias > 0:
            la = np.array([len(it.response_a) for it in items], dtype=float)
            lb = np.array([len(it.response_b) for it in items], dtype=float)
            # log-ratio, squashed: a 2× longer answer is a strong but bounded pull.
            b += c.length_bias * np.tanh(np.log((la + 1) / (lb + 1)))
        return b

    def _solve_quality(self, y: np.ndarray, b: np.ndarray) -> float:
        """q such that mean P(verdict == truth), over the orders asked, equals the target."""
        target = self.cfg.target_agreement
        offsets = self._order_offsets(b)

        def agreement(q: float) -> float:
            p_a = np.concatenate([_sigmoid(q * y + o) for o in offsets])
            yy = np.concatenate([y] * len(offsets))
            return float(np.mean(np.where(yy > 0, p_a, 1 - p_a)))

        lo, hi = 0.0, 50.0
        if agreement(hi) < target:
            raise ValueError(
                f"simulated labeller cannot reach agreement {target} with these biases "
                f"(max {agreement(hi):.3f}); lower length_bias/position_bias")
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if agreement(mid) < target else (lo, mid)
        return (lo + hi) / 2

    def _order_offsets(self, b: np.ndarray) -> list[np.ndarray]:
        """Offsets per order asked: A shown first, then (both orders) B shown first, where the
        position bias pulls the other way. The length bias stays with the longer text."""
        if not self.cfg.both_orders:
            return [b]
        pos = float(self.cfg.position_bias)
        return [b, b - 2.0 * pos]

    def _draw(self, item_id: str, order: str) -> float:
        """The uniform behind one verdict; ``shared_noise`` of pairs take ``noise_seed``'s."""
        c = self.cfg
        key = item_id if order == "ab" else f"{item_id}:ba"  # "ab" keeps single-order draws as they were
        seed = c.seed
        if c.noise_seed is not None and c.shared_noise > 0 and _uniform01(c.seed, f"{item_id}:share") < c.shared_noise:
            seed = c.noise_seed
        return _uniform01(seed, key)

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
        p_orders = [_sigmoid(q * y + o) for o in self._order_offsets(b)]
        out = []
        for k, it in enumerate(items):
            keys = {"A": response_key(it.response_a), "B": response_key(it.response_b)}
            verdicts, labels = [], []
            for order, p in zip(("ab", "ba"), (po[k] for po in p_orders)):
                lab = "A" if self._draw(it.id, order) < p else "B"
                labels.append(lab)
                verdicts.append(OrderVerdict(shown_first=keys["A" if order == "ab" else "B"], winner=keys[lab]))
            p = p_orders[0][k]
            out.append(Judgment(
                item_id=it.id, judge=self.spec, label=order_consensus(labels),
                rationale=f"simulated labeller ({self.cfg.errors} errors): P(A)={p:.2f}",
                simulated=True, order_verdicts=verdicts,
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
