"""Cross-fitted reward differences: each pair scored by an RM that never saw it.

An RM scoring its own training pairs partly memorises their labels, noise included, and
so hides exactly the mislabelled pairs RLTHF wants to find. Splitting the pairs into k
folds and scoring each fold with a model trained on the others removes that bias at the
cost of k fits (cheap for the embedding head).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.data.schema import PairwiseItem
from rayalign.data.splits import seeded_hash
from rayalign.rewards.base import FitJob, RewardBackend, fit_all


def fold_of(item_id: str, folds: int, seed: int) -> int:
    return seeded_hash(seed, item_id, "fold") % folds


@dataclass
class CrossFitPlan:
    """The k fold fits of a cross-fitted scoring, and which scored pairs each model scores."""

    jobs: list[FitJob]
    scored_by: list[np.ndarray]  # indices into score_items, one array per job
    score_items: list[PairwiseItem]

    def diff(self, backend: RewardBackend, models: Sequence[object]) -> np.ndarray:
        """r(A) − r(B) for ``score_items``, each pair from the model of its own fold."""
        out = np.zeros(len(self.score_items))
        for model, idx in zip(models, self.scored_by):
            out[idx] = backend.reward_diff(model, [self.score_items[i] for i in idx])
        return out


def cross_fit_plan(items: Sequence[PairwiseItem], labels: Sequence[str],
                   weights: Sequence[float] | None, folds: int, seed: int = 0,
                   score_items: Sequence[PairwiseItem] | None = None,
                   scratch_dir: Path | None = None) -> CrossFitPlan:
    """Training rows are ``items``/``labels``/``weights``; a scored pair's fold excludes its
    own training row (if any) from the model that scores it. Folds with nothing to score
    are not fitted."""
    if folds < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    score_items = list(score_items if score_items is not None else items)
    weights = list(weights) if weights is not None else [1.0] * len(items)
    train_fold = np.array([fold_of(it.id, folds, seed) for it in items])
    score_fold = np.array([fold_of(it.id, folds, seed) for it in score_items])
    plan = CrossFitPlan(jobs=[], scored_by=[], score_items=score_items)
    for f in range(folds):
        tr = np.flatnonzero(train_fold != f)
        sc = np.flatnonzero(score_fold == f)
        if sc.size == 0:
            continue
        if tr.size == 0:
            raise ValueError(f"fold {f} leaves no training pairs; use fewer folds")
        plan.jobs.append(FitJob([items[i] for i in tr], [labels[i] for i in tr],
                                [weights[i] for i in tr], scratch_dir / f"fold_{f}" if scratch_dir else None))
        plan.scored_by.append(sc)
    return plan


def cross_fitted_diff(
    backend: RewardBackend,
    items: Sequence[PairwiseItem],
    labels: Sequence[str],
    weights: Sequence[float] | None,
    folds: int,
    seed: int = 0,
    score_items: Sequence[PairwiseItem] | None = None,
    scratch_dir: Path | None = None,
) -> np.ndarray:
    """r(A) − r(B) for ``score_items`` (default: ``items``), each from a model blind to its
    fold (see :func:`cross_fit_plan`); the folds are fitted together where the backend can."""
    plan = cross_fit_plan(items, labels, weights, folds, seed, score_items, scratch_dir)
    return plan.diff(backend, fit_all(backend, plan.jobs))
