"""The RLTHF corpus: the configured pairs, in the one A/B order, with a load report.

A thin step over ``rayalign.data.pairs.load_pair_items`` (the loader ``rayalign label``
uses too), so a ``rayalign label`` output replays into ``rlthf run`` without inverting a
label: same ids, same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rayalign.data.pairs import load_pair_items
from rayalign.data.schema import PairwiseItem
from rayalign.rlthf.config import RLTHFConfig


def load_items(cfg: RLTHFConfig) -> tuple[list[PairwiseItem], dict[str, Any]]:
    """Pairs in seeded A/B order (label = the dataset's human winner) and the load report.

    Duplicate pairs (same id) keep their first occurrence; ``duplicates_dropped`` counts the
    rest (they would leak between train and test). Refused rows are listed with row, field
    and reason in ``bad_rows``; pairs without a human preference (PandaLM ties) in ``notes``.
    """
    items = load_pair_items(cfg.data.path, cfg.data.kind, limit=cfg.data.limit, seed=cfg.seed,
                            skip_bad_rows=cfg.data.skip_bad_rows)
    report = items.report.to_dict()
    report["duplicates_dropped"] = report["notes"].pop("duplicates_dropped", 0)
    return list(items), report


def known_pair_ids(items: list[PairwiseItem], load_report: Path, limit: int | None) -> set[str] | None:
    """Every pair id a recorded verdict may name: the loaded pairs and those the loader dropped
    (ties, empty answers: ``load_report.json``). None with ``data.limit``: the pairs past the
    limit are real pairs too, so an id outside the set proves nothing (no unknown-id check)."""
    if limit:
        return None
    report = json.loads(load_report.read_text()) if load_report.is_file() else {}
    return {it.id for it in items} | set(report.get("dropped_pair_ids", []))
