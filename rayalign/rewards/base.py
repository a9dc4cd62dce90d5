"""The reward-model interface the RLTHF loop trains and queries each iteration.

A backend turns (pairs, labels, weights) into a model and a model into per-pair reward
differences r(A) − r(B). ``embedding_head`` (frozen encoder + Bradley-Terry head) is fast
on CPU; ``lora`` (TRL RewardTrainer + PEFT under Ray Train) is what a GPU cluster runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rayalign.data.schema import PairwiseItem


class RewardBackend(Protocol):
    name: str

    def prepare(self, items: Sequence[PairwiseItem]) -> None:
        """One-off work over every pair the loop will ever score (e.g. embeddings)."""
        ...

    def fit(self, items: Sequence[PairwiseItem], labels: Sequence[str],
            weights: Sequence[float], out_dir: Path) -> object:
        """Train on ``items`` with winners ``labels`` ("A"/"B") and sample ``weights``."""
        ...

    def reward_diff(self, model: object, items: Sequence[PairwiseItem]) -> np.ndarray:
        """r(A) − r(B) for every item, in order."""
        ...

    def load(self, out_dir: Path) -> object:
        """A model previously saved by ``fit`` into ``out_dir`` (for resume)."""
        ...


@dataclass(frozen=True)
class FitJob:
    """One ``fit`` call's arguments, so several fits can be handed over at once."""

    items: Sequence[PairwiseItem]
    labels: Sequence[str]
    weights: Sequence[float]
    out_dir: Path | None


def fit_all(backend: RewardBackend, jobs: Sequence[FitJob]) -> list[object]:
    """Models for every job, in order: through the backend's ``fit_many`` when it has one
    (the ``lora`` backend trains them all in one Ray Train run), else ``fit`` after ``fit``."""
    many = getattr(backend, "fit_many", None)
    if many is not None and len(jobs) > 1:
        return list(many(jobs))
    return [backend.fit(j.items, j.labels, j.weights, j.out_dir) for j in jobs]


def signed_margins(diff: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Margin w.r.t. the current label: r(labelled winner) − r(other)."""
    sign = np.array([1.0 if lab == "A" else -1.0 for lab in labels])
    return diff * sign


def preference_accuracy(diff: np.ndarray, truth: Sequence[str]) -> float:
    """Share of pairs where the RM prefers the true winner (ties count as wrong)."""
    if len(truth) == 0:
        return float("nan")
    return float(np.mean(signed_margins(diff, truth) > 0))
