"""The one loader of pairs to judge or curate: any supported file in, ``PairwiseItem`` out.

Both ``rayalign label`` (``feedback.inputs``) and ``rayalign rlthf run`` (``rlthf.corpus``)
load through ``load_pair_items``, so a pair gets the same id and the same A/B order in both:
the order is ``data.splits.assign_ab_order`` (a seeded coin per pair id), the only order
function in the package. WHY it matters: a recorded "A" from ``rayalign label`` replayed
into ``rlthf run`` would otherwise mean the other response for about half of the pairs.

Labelled sources (HH chosen/rejected, TRL preferences, PandaLM and generic votes) are shown
in that seeded order, the human winner travelling in ``PairwiseItem.label``. Already-ordered
sources (pairwise JSONL, AlpacaEval annotations) keep the order of their file. Duplicate
pairs (same id) keep their first occurrence and are counted (``duplicates_dropped``): they
would leak between a train and a test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from rayalign.data.bundled import bundled_path
from rayalign.data.errors import DataError, Records
from rayalign.data.loaders import KINDS, detect_kind, load_any
from rayalign.data.rows import RowError, iter_table_rows, load_rows
from rayalign.data.schema import PairwiseItem
from rayalign.data.splits import assign_ab_order
from rayalign.data.votes import load_pandalm, load_votes_jsonl

#: Kinds of file ``load_records`` reads (``rayalign data inspect --kind``).
ALL_KINDS = KINDS + ("pandalm", "votes", "pairwise")
#: Kinds that hold pairs (``load_pair_items``).
PAIR_KINDS = ("hh", "preferences", "pandalm", "votes", "pairwise", "alpaca-annotations")
#: ``rayalign label``'s format names -> these kinds. WHY: the two spellings grew apart
#: (``hh_rlhf`` vs ``hh``); every config field and CLI flag accepts both.
LABEL_FORMAT_TO_KIND = {"hh_rlhf": "hh", "pairwise_jsonl": "pairwise",
                        "alpaca_annotations": "alpaca-annotations"}
KIND_TO_LABEL_FORMAT = {v: k for k, v in LABEL_FORMAT_TO_KIND.items()}


def resolve_path(path: str | os.PathLike) -> Path:
    """A path, or ``bundled:<name>`` for data shipped in the package."""
    s = str(path)
    return bundled_path(s.split(":", 1)[1]) if s.startswith("bundled:") else Path(s)


def detect(path: str | os.PathLike) -> str:
    """The file's kind, from the fields of its first row."""
    for _row, _line, obj in iter_table_rows(path):
        if isinstance(obj, dict):
            keys = set(obj)
            if {"response1", "response2", "annotator1"} <= keys:
                return "pandalm"
            if {"response_a", "response_b", "votes"} <= keys:
                return "votes"
            if {"response_a", "response_b"} <= keys:
                return "pairwise"
        break
    return detect_kind(path)


def load_pairwise_jsonl(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Records[PairwiseItem]:
    """Rows already in ``PairwiseItem`` shape; errors name file, row, line and field."""

    def parse(obj: dict[str, Any], row: int) -> PairwiseItem:
        try:
            return PairwiseItem.model_validate(obj)
        except ValidationError as err:
            first = err.errors()[0]
            raise RowError(".".join(map(str, first["loc"])) or None, first["msg"]) from None

    return load_rows(path, "pairwise", parse, skip_bad_rows)


_LOADERS: dict[str, Callable[..., Records[Any]]] = {
    "pandalm": load_pandalm, "votes": load_votes_jsonl, "pairwise": load_pairwise_jsonl,
}


def load_records(path: str | os.PathLike, kind: str = "auto", *, skip_bad_rows: bool = False) -> Records[Any]:
    """Records of any kind in ``ALL_KINDS`` ("auto" detects it)."""
    p = resolve_path(path)
    if kind == "auto":
        kind = detect(p)
    if kind in _LOADERS:
        return _LOADERS[kind](p, skip_bad_rows=skip_bad_rows)
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; valid: auto, {', '.join(ALL_KINDS)}")
    return load_any(p, kind, skip_bad_rows=skip_bad_rows)


def load_pair_items(path: str | os.PathLike, kind: str = "auto", *, limit: int | None = None,
                    seed: int | str = 0, skip_bad_rows: bool = True) -> Records[PairwiseItem]:
    """Pairs as ``PairwiseItem`` in the one seeded A/B order, deduplicated; ``.report`` says
    what was read, refused (row, field, reason) and dropped.

    ``limit`` keeps the first n records of the file (before dedup and ordering).
    """
    p = resolve_path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file not found: {p}")
    if kind == "auto":
        kind = detect(p)
    if kind not in PAIR_KINDS:
        raise DataError(p, f"a {kind!r} file holds no pairs; pair kinds: {', '.join(PAIR_KINDS)}")
    recs = load_records(p, kind, skip_bad_rows=skip_bad_rows)
    report = recs.report
    rows = list(recs)[:limit] if limit else list(recs)
    seen: set[str] = set()
    unique = []
    for r in rows:
        if r.id not in seen:
            seen.add(r.id)
            unique.append(r)
    report.notes["duplicates_dropped"] = len(rows) - len(unique)
    items = unique if kind in ("pairwise", "alpaca-annotations") else assign_ab_order(unique, seed=seed)
    return Records(items, report=report)
