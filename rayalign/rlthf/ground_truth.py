"""The cleaned ground-truth protocol of the RLTHF paper (§4, applied to HH and TL;DR).

HH-RLHF's own labels are noisy (about a quarter look wrong to any RM trained on them). To
measure how well RLTHF recovers *consistent* human preference, the paper cleans the
ground truth first: an RM trained on all human labels flags the pairs it disagrees with
most, and those are flipped. We cross-fit that RM (each pair judged by a model that never
saw it) so the cleaning cannot simply reproduce its own training labels. Outputs always
say which ground truth a number is measured against: "cleaned 25%" or "raw".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.data.schema import Label, PairwiseItem, other_label
from rayalign.rewards.base import RewardBackend, preference_accuracy, signed_margins
from rayalign.rewards.crossfit import cross_fitted_diff


@dataclass
class GroundTruth:
    labels: dict[str, Label]
    raw: dict[str, Label]
    mode: str
    flipped: list[str] = field(default_factory=list)
    crossfit_raw_accuracy: float | None = None

    @property
    def tag(self) -> str:
        if self.mode == "raw":
            return "raw"
        pct = 100.0 * len(self.flipped) / max(1, len(self.raw))
        return f"cleaned {pct:.0f}%"


def clean_ground_truth(
    backend: RewardBackend,
    items: Sequence[PairwiseItem],
    raw: dict[str, Label],
    fraction: float,
    folds: int,
    seed: int,
    scratch_dir: Path | None = None,
) -> GroundTruth:
    """Flip the ``fraction`` of pairs a cross-fitted RM disagrees with most (negative margins only)."""
    labels = [raw[it.id] for it in items]
    diff = cross_fitted_diff(backend, items, labels, None, folds=folds, seed=seed,
                              scratch_dir=scratch_dir)
    margins = signed_margins(diff, labels)
    n_flip = min(int(round(fraction * len(items))), int(np.sum(margins < 0)))
    worst = np.argsort(margins, kind="stable")[:n_flip]
    cleaned = dict(raw)
    flipped = []
    for i in worst:
        iid = items[int(i)].id
        cleaned[iid] = other_label(raw[iid])
        flipped.append(iid)
    return GroundTruth(labels=cleaned, raw=dict(raw), mode="cleaned", flipped=flipped,
                       crossfit_raw_accuracy=preference_accuracy(diff, labels))


def save_ground_truth(path: Path, gt: GroundTruth) -> None:
    from rayalign.runs import atomic_write_json

    atomic_write_json(path, {"labels": gt.labels, "raw": gt.raw, "mode": gt.mode, "flipped": gt.flipped,
                             "tag": gt.tag, "crossfit_raw_accuracy": gt.crossfit_raw_accuracy})


def load_ground_truth(path: Path) -> GroundTruth:
    import json

    d = json.loads(path.read_text(encoding="utf-8"))
    return GroundTruth(labels=d["labels"], raw=d["raw"], mode=d["mode"], flipped=d["flipped"],
                       crossfit_raw_accuracy=d.get("crossfit_raw_accuracy"))
