"""Baselines next to RLTHF at equal human budget: which labels each one trains on.

Why these rows: a comparison is only fair when like is compared with like. RLTHF gets a
free flip step (pairs right of the reflection point) on top of its paid human answers, so
besides the paper's AI-only / Random / full-human rows there is ``random_flips``: Random
annotation after *the same flip step as RLTHF's iteration 0*. The other ablation,
"RLTHF without flips", is a config switch of the loop itself (``apply_flips: false``).

``baseline_label_sets`` is pure apart from asking the (simulated) human; the driver fits
one RM per set and measures it exactly like an RLTHF iteration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from rayalign.data.schema import PairwiseItem, other_label
from rayalign.humans.base import HumanAnnotator
from rayalign.rlthf.records import BaselineRow, IterationRow

BASELINE_METHODS = ("ai_only", "random", "random_flips", "full_human")


@dataclass
class BaselineLabels:
    method: str
    labels: dict[str, str]
    origins: dict[str, str]
    human_count: int
    flips: int = 0


def random_order(shard_ids: Sequence[str], seed: int) -> list[str]:
    """The order Random annotation picks pairs in (seeded, the same for every budget)."""
    perm = list(shard_ids)
    random.Random(f"random-baseline:{seed}").shuffle(perm)
    return perm


def baseline_label_sets(methods: Sequence[str], *, shard_ids: Sequence[str], base_labels: dict[str, str],
                        human: HumanAnnotator, items_by_id: dict[str, PairwiseItem],
                        human_levels: Sequence[int], flips0: Sequence[str], seed: int) -> list[BaselineLabels]:
    """The label sets of the requested baselines, at RLTHF's human levels.

    ``base_labels`` are the AI labels RLTHF starts from; ``flips0`` the flip candidates of
    RLTHF's iteration 0 (used by ``random_flips``); a human answer wins over a flip.
    """
    out: list[BaselineLabels] = []
    base_origins = {i: "ai" for i in shard_ids}
    if "ai_only" in methods:
        out.append(BaselineLabels("ai_only", dict(base_labels), base_origins, 0))
    levels = sorted({n for n in human_levels if n > 0})
    perm = random_order(shard_ids, seed)
    flipped = {**base_labels, **{i: other_label(base_labels[i]) for i in flips0}}
    for n in levels:
        picked = perm[:n]
        answers = human.request_labels(f"random-{n}", [items_by_id[i] for i in picked], {}) or {}
        # a pick without an A/B answer (a recorded tie) was still shown to people: spend
        human_origins = {i: "human" if i in answers else "human_nolabel" for i in picked}
        if "random" in methods:
            out.append(BaselineLabels("random", {**base_labels, **answers},
                                      {**base_origins, **human_origins}, n))
        if "random_flips" in methods:
            origins = {**base_origins, **{i: "flip" for i in flips0}, **human_origins}
            out.append(BaselineLabels("random_flips", {**flipped, **answers}, origins, n, flips=len(flips0)))
    if "full_human" in methods:
        answers = human.request_labels("full", [items_by_id[i] for i in shard_ids], {}) or {}
        out.append(BaselineLabels("full_human", {**base_labels, **answers},
                                  {**base_origins, **{i: "human" if i in answers else "human_nolabel"
                                                      for i in shard_ids}}, len(shard_ids)))
    return out


def ai_only_row(it0: IterationRow) -> BaselineRow:
    """The AI-only baseline: iteration 0's row. Iteration 0 trains on exactly the AI labels,
    once each, as this baseline would, so a second fit could only give a second AI-only number."""
    return BaselineRow(method="ai_only", flips=0, **it0.model_dump(
        include=set(BaselineRow.model_fields) - {"kind", "method", "flips", "time"}))
