"""P(the AI label is wrong) per pair, from every signal, refit on each human answer bought.

Why a model and not a rule: which signal finds the judge's mistakes depends on the judge,
the data and the reward model (order contradictions on one data set, a second judge's
disagreement on another, the bottom of the margin curve on a third), and the only way to
know is to ask: every human answer says whether the label it checked was wrong. So the
error model is a logistic regression (scikit-learn) over the signals of
``rlthf.signals`` plus the cross-fitted margin, refit each round on all answers so far.

It starts from a **prior** written down before any data: a judge that contradicts itself
across A/B orders is guessing (P ≈ 0.5); a second judge that disagrees makes an error
likely (≈ 0.4: the labeller is usually the stronger judge); a judge that abstained, or an
extra judge that did, marks a hard pair; confident verdicts and high margins are right more
often. Until people have answered, the prior alone orders the pairs (round 0); after that it
enters the fit as pseudo-observations (``prior_weight`` answers' worth, spread over the pool),
so a handful of answers cannot swing the model and many answers override it. Selection on
the signals does not bias P(wrong | signals), and a random share of every batch keeps the
fit honest where the targeting never looks.

Pure functions and a JSON-able fit; the driver persists one fit per iteration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from rayalign.rlthf.signals import PairSignals

#: The signals, as columns of the feature matrix, relative to the pair's current label.
FEATURES = ("inconsistent", "abstained", "disagree", "extra_abstain", "against_labeller", "confidence", "margin")

#: The prior's log-odds per unit of each feature, added to logit(prior_error_rate); see the
#: module docstring for why each has the size it has. Not fitted to any data set.
PRIOR_COEF = {
    "inconsistent": 1.4,       # a self-contradicting judge is guessing: P ≈ 0.5
    "abstained": 0.7,          # the labeller gave a tie or failed: the label came from elsewhere
    "disagree": 1.0,           # all extra judges disagree: P ≈ 0.4
    "extra_abstain": 0.5,      # all extra judges abstained: a hard pair
    "against_labeller": 1.4,   # the label contradicts the labeller's own verdict (a flip)
    "confidence": -4.0,        # per unit of P(label) - 0.5: 0.9 confident -> -1.6
    "margin": -0.5,            # per standard deviation of the cross-fitted margin
}


def feature_rows(ids: Sequence[str], signals: dict[str, PairSignals], labels: dict[str, str],
                 margins: dict[str, float]) -> np.ndarray:
    """The ``FEATURES`` of each pair in ``ids`` (rows), relative to its current label.

    ``margins`` are r(label) − r(other); they are standardised over ``ids`` so the prior's
    "per standard deviation" holds whatever the reward model's scale.
    """
    m = np.array([margins[i] for i in ids], dtype=float)
    sd = float(m.std()) if m.size > 1 else 0.0
    z = m / sd if sd > 1e-12 else np.zeros_like(m)
    rows = []
    for i, mz in zip(ids, z):
        s, lab = signals[i], labels[i]
        n_extra = len(s.extra)
        decided = s.primary in ("A", "B")
        p_label = None if s.p_a is None else (s.p_a if lab == "A" else 1.0 - s.p_a)
        rows.append([
            float(s.inconsistent),
            float(not decided and not s.inconsistent),
            sum(e in ("A", "B") and e != lab for e in s.extra) / n_extra if n_extra else 0.0,
            sum(e not in ("A", "B") for e in s.extra) / n_extra if n_extra else 0.0,
            float(decided and s.primary != lab),
            0.0 if p_label is None else p_label - 0.5,
            float(mz),
        ])
    return np.array(rows, dtype=float).reshape(len(ids), len(FEATURES))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@dataclass
class ErrorModel:
    """A fitted (or prior-only) logistic model of P(AI label wrong) over ``FEATURES``."""

    coef: dict[str, float]
    intercept: float
    #: human answers it was fitted on, and how many of them found the label wrong
    n_labels: int = 0
    n_errors: int = 0
    fitted: bool = False
    prior_error_rate: float = 0.2
    prior_weight: float = 0.0
    #: features left out of the fit because they never varied (their prior stays)
    constant: list[str] = field(default_factory=list)

    def logit(self, x: np.ndarray) -> np.ndarray:
        w = np.array([self.coef.get(f, 0.0) for f in FEATURES])
        return x @ w + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ErrorModel":
        return cls(**d)


def prior_model(prior_error_rate: float) -> ErrorModel:
    return ErrorModel(coef=dict(PRIOR_COEF), intercept=_logit(prior_error_rate),
                      prior_error_rate=prior_error_rate)


def fit_error_model(pool: np.ndarray, hist_x: np.ndarray, hist_y: Sequence[int], *,
                    prior_error_rate: float, prior_weight: float, c: float = 1.0) -> ErrorModel:
    """Refit on the human answers (``hist_x`` rows, ``hist_y`` = 1 where the label was wrong)
    with the prior as ``prior_weight`` pseudo-answers spread over ``pool`` (the pairs still
    to be targeted). No answers yet: the prior itself."""
    from sklearn.linear_model import LogisticRegression

    prior = prior_model(prior_error_rate)
    y = np.asarray(list(hist_y), dtype=float)
    if y.size == 0:
        return prior
    hist_x = np.asarray(hist_x, dtype=float).reshape(len(y), len(FEATURES))
    both = np.concatenate([hist_x, pool])
    varies = [j for j in range(len(FEATURES)) if np.ptp(both[:, j]) > 0]
    p0 = prior.predict(pool)
    w0 = prior_weight / max(1, len(pool))
    x = np.concatenate([hist_x, pool, pool])[:, varies]
    target = np.concatenate([y, np.ones(len(pool)), np.zeros(len(pool))])
    weight = np.concatenate([np.ones(len(y)), w0 * p0, w0 * (1.0 - p0)])
    if not varies:  # nothing to tell pairs apart: the base rate alone
        rate = (y.sum() + prior_weight * p0.mean()) / (len(y) + prior_weight)
        return ErrorModel(coef={f: 0.0 for f in FEATURES}, intercept=_logit(min(max(rate, 1e-3), 1 - 1e-3)),
                          n_labels=len(y), n_errors=int(y.sum()), fitted=True, prior_error_rate=prior_error_rate,
                          prior_weight=prior_weight, constant=list(FEATURES))
    clf = LogisticRegression(C=c, max_iter=1000).fit(x, target, sample_weight=weight)
    coef = {f: 0.0 for f in FEATURES}
    for j, w in zip(varies, clf.coef_[0]):
        coef[FEATURES[j]] = float(w)
    return ErrorModel(coef=coef, intercept=float(clf.intercept_[0]), n_labels=len(y), n_errors=int(y.sum()),
                      fitted=True, prior_error_rate=prior_error_rate, prior_weight=prior_weight,
                      constant=[f for j, f in enumerate(FEATURES) if j not in varies])


__all__ = ["FEATURES", "PRIOR_COEF", "ErrorModel", "feature_rows", "fit_error_model", "prior_model"]
