"""Pairs to judge, from the files people have: our JSONL, HH-RLHF, AlpacaEval, TRL preferences.

Labelled sources (HH chosen/rejected, TRL preferences) are shown to judges in a seeded
random A/B order: a judge with a position bias must not look right just because the
chosen reply always comes first. The true side travels in ``PairwiseItem.label``.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from rayalign.data.schema import PairwiseItem, PreferencePair
from rayalign.runs import read_jsonl

log = logging.getLogger(__name__)

InputFormat = Literal["auto", "pairwise_jsonl", "hh_rlhf", "alpaca_annotations", "preferences"]


def randomise_order(pairs: list[PreferencePair], seed: int) -> list[PairwiseItem]:
    rng = random.Random(seed)
    return [p.to_pairwise(a_is_chosen=rng.random() < 0.5) for p in pairs]


def _first_row_has(path: Path, key: str) -> bool:
    if path.suffix != ".jsonl":
        return False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return False
                return isinstance(row, dict) and key in row
    return False


def _detect(path: Path) -> str:
    try:
        from rayalign.data.loaders import detect_kind
    except ImportError:
        return "pairwise_jsonl"
    kind = detect_kind(path)
    return {"hh": "hh_rlhf", "alpaca-annotations": "alpaca_annotations"}.get(kind, kind)


def load_pairs(path: str | Path, fmt: InputFormat = "auto", limit: int | None = None,
               seed: int = 0) -> list[PairwiseItem]:
    """Load pairs to judge; ``limit`` keeps the first n (after loading, before shuffling A/B)."""
    if str(path).startswith("bundled:"):
        from rayalign.data.bundled import bundled_path

        path = bundled_path(str(path).split(":", 1)[1])
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file not found: {p}")
    if fmt == "auto":
        fmt = "pairwise_jsonl" if _first_row_has(p, "response_a") else _detect(p)  # type: ignore[assignment]
        if fmt not in ("pairwise_jsonl", "hh_rlhf", "alpaca_annotations", "preferences"):
            raise ValueError(f"{p}: cannot judge pairs from a {fmt!r} file; set the input format")
    if fmt == "pairwise_jsonl":
        items = []
        for i, row in enumerate(read_jsonl(p)):
            try:
                items.append(PairwiseItem.model_validate(row))
            except ValidationError as err:
                first = err.errors()[0]
                raise ValueError(f"{p}: row {i + 1}: field {'.'.join(map(str, first['loc']))}: "
                                 f"{first['msg']}") from None
            if limit and len(items) >= limit:
                break
        return items
    from rayalign.data import loaders

    # Unusable rows (e.g. HH rows with an empty reply) are skipped *and reported*, never hidden.
    if fmt == "hh_rlhf":
        recs = loaders.load_hh_rlhf(p, skip_bad_rows=True)
    elif fmt == "preferences":
        recs = loaders.load_preferences(p, skip_bad_rows=True)
    elif fmt == "alpaca_annotations":
        recs = loaders.load_alpaca_eval_annotations(p, skip_bad_rows=True)
    else:
        raise ValueError(f"unknown input format {fmt!r}")
    bad = getattr(getattr(recs, "report", None), "bad_rows", [])
    if bad:
        log.warning("%s: skipped %d unusable rows (first: %s)", p, len(bad), bad[0])
    if fmt == "alpaca_annotations":
        return list(recs)[:limit] if limit else list(recs)
    pairs = list(recs)
    return randomise_order(pairs[:limit] if limit else pairs, seed)
