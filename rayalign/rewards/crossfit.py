"""Cross-fitted reward differences: each pair scored by an RM that never saw it.

An RM scoring its own training pairs partly memorises their labels, noise included, and
so hides exactly the mislabelled pairs RLTHF wants to find. Splitting the pairs into k
folds and scoring each fold with a model trained on the others removes that bias at the
cost of k fits (cheap for the embedding head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.data.schema import PairwiseItem
from rayalign.data.splits import seeded_hash
from rayalign.rewards.base import RewardBackend


def fold_of(item_id: str, folds: int, seed: int) -> int:
    return seeded_hash(seed, item_id, "fold") % folds


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
    """r(A) − r(B) for ``score_items`` (default: ``items``), each from a model blind to its fold.

    Training rows are ``items``/``labels``/``weights``; a scored pair's fold excludes its
    own training row (if any) from the model that scores it.
    """
    if folds < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    score_items = list(score_items if score_items is not None else items)
    weights = list(weights) if weights is not None else [1.0] * len(items)
    train_fold = np.array([fold_of(it.id, folds, seed) for it in items])
    score_fold = np.array([fold_of(it.id, folds, seed) for it in score_items])
    diff = np.zeros(len(score_items))
    for f in range(folds):
        tr = np.flatnonzero(train_fold != f)
        sc = np.flatnonzero(score_fold == f)
        if sc.size == 0:
            continue
        if tr.size == 0:
            raise ValueError(f"fold {f} leaves no training pairs; use fewer folds")
        model = backend.fit([items[i] for i in tr], [labels[i] for i in tr],
                            [weights[i] for i in tr], scratch_dir / f"fold_{f}" if scratch_dir else None)
        diff[sc] = backend.reward_diff(model, [score_items[i] for i in sc])
    return diff
