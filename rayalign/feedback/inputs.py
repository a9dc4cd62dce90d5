"""Pairs to judge, from the files people have: our JSONL, HH-RLHF, AlpacaEval, TRL preferences,
PandaLM and generic votes JSONL.

A thin front over ``rayalign.data.pairs.load_pair_items`` — the loader ``rayalign rlthf run``
uses too — so ``rayalign label`` shows every pair in the same seeded A/B order as the RLTHF
loop and a replayed label keeps its meaning. Labelled sources are shown in that seeded
order: a judge with a position bias must not look right just because the chosen reply
always comes first. The true side travels in ``PairwiseItem.label``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from rayalign.data.pairs import LABEL_FORMAT_TO_KIND, detect, load_pair_items, resolve_path
from rayalign.data.schema import PairwiseItem

log = logging.getLogger(__name__)

InputFormat = Literal["auto", "pairwise_jsonl", "hh_rlhf", "alpaca_annotations", "preferences",
                      "pandalm", "votes"]


def load_pairs(path: str | Path, fmt: InputFormat = "auto", limit: int | None = None,
               seed: int = 0) -> list[PairwiseItem]:
    """Load pairs to judge; ``limit`` keeps the first n (after loading, before the A/B order).

    A pairwise JSONL is the user's own list of pairs: a bad row is an error (file, row,
    field). Other sources skip unusable rows (e.g. HH rows with an empty reply) and report
    them, never hide them.
    """
    kind = LABEL_FORMAT_TO_KIND.get(fmt, fmt)  # the kinds' own names pass as they are
    if kind == "auto":
        kind = detect(resolve_path(path))
    items = load_pair_items(path, kind, limit=limit, seed=seed, skip_bad_rows=kind != "pairwise")
    bad = items.report.bad_rows
    if bad:
        log.warning("%s: skipped %d unusable rows (first: %s)", path, len(bad), bad[0])
    return list(items)
