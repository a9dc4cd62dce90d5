"""Loaders: real preference data files in, validated rayalign records out.

Each loader reads every row, validates it, and either raises a ``DataError`` naming the file,
row and field, or (with ``skip_bad_rows=True``) records the row in the returned
``Records.report`` — never a silent drop. Formats covered:

* HH-RLHF JSONL(.gz): full dialogues ``{"chosen", "rejected"}`` split into prompt + replies.
* OASST-style ranked answers ``{"question", "answer", "rank"}`` and within-question pairs.
* AlpacaEval model outputs and pairwise annotations (always read from a user path: the data
  is CC BY-NC and is never bundled).
* Generic preferences: JSONL / JSON / Parquet / a local HF ``datasets`` directory, in TRL's
  standard or conversational preference format (auto-detected per row).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rayalign.data.errors import DataError, LoadReport, Records
from rayalign.data.rows import (
    HH_ASSISTANT, HH_HUMAN, RowError, iter_table_rows, load_rows, req_number,
    req_str, split_hh_dialogue,
)
from rayalign.data.schema import (
    PairwiseItem, PreferencePair, PromptRecord, RankedAnswer, ResponseRecord, stable_id,
)

# --------------------------------------------------------------------------- HH-RLHF

def load_hh_rlhf(path: str | os.PathLike, *, skip_bad_rows: bool = False,
                 source: str = "hh-rlhf") -> Records[PreferencePair]:
    """Load HH-RLHF ``{"chosen", "rejected"}`` dialogues as ``PreferencePair`` records.

    Degenerate rows (an empty final reply, identical replies, no shared Assistant turn) are
    errors unless ``skip_bad_rows`` is set, in which case they are listed in ``.report``.
    A reply that continues past further turns (the two dialogues diverge before the last
    turn, as in a few upstream rows) is kept whole and flagged ``meta["multi_turn_reply"]``.
    """

    def parse(obj: dict[str, Any], row: int) -> PreferencePair:
        c = req_str(obj, "chosen", allow_empty=False)
        r = req_str(obj, "rejected", allow_empty=False)
        prompt, a, b = split_hh_dialogue(c, r)
        meta: dict[str, Any] = {"row": row}
        if any(m in x for x in (a, b) for m in (HH_HUMAN, HH_ASSISTANT)):
            meta["multi_turn_reply"] = True
            notes["multi_turn_reply"] = notes.get("multi_turn_reply", 0) + 1
        return PreferencePair(prompt=prompt, chosen=a, rejected=b, source=source, meta=meta)

    notes: dict[str, int] = {}
    out = load_rows(path, "hh", parse, skip_bad_rows)
    out.report.notes.update(notes)
    return out


# --------------------------------------------------------------------------- OASST

def load_oasst_ranked(path: str | os.PathLike, *, skip_bad_rows: bool = False,
                      source: str = "oasst2") -> Records[RankedAnswer]:
    """Load OASST-style ``{"question", "answer", "rank"}`` rows (rank 0 = best)."""

    def parse(obj: dict[str, Any], row: int) -> RankedAnswer:
        q = req_str(obj, "question", allow_empty=False)
        a = req_str(obj, "answer", allow_empty=False)
        rank = req_number(obj, "rank")
        if rank < 0:
            raise RowError("rank", f"must be >= 0, got {rank}")
        return RankedAnswer(id=stable_id(q, a, str(row)), prompt=q, response=a, rank=rank,
                            source=source, meta={"row": row})

    return load_rows(path, "oasst", parse, skip_bad_rows)


def oasst_preference_pairs(rows: list[RankedAnswer]) -> Records[PreferencePair]:
    """Every within-prompt pair of answers with different ranks; the lower rank is preferred.

    Pairs of equal rank (no preference) or identical text (a duplicated answer) are not
    preferences; they are counted in ``.report.notes`` rather than emitted. Output order is
    deterministic: prompts in first-appearance order, then by (rank, answer row).
    """
    report = LoadReport(path=getattr(getattr(rows, "report", None), "path", ""), kind="oasst-pairs")
    by_prompt: dict[str, list[RankedAnswer]] = {}
    for r in rows:
        by_prompt.setdefault(r.prompt, []).append(r)
    out: Records[PreferencePair] = Records(report=report)
    for prompt, answers in by_prompt.items():
        answers = sorted(answers, key=lambda x: (x.rank, x.meta.get("row", 0)))
        for a, b in itertools.combinations(answers, 2):
            report.rows_read += 1
            if a.rank == b.rank:
                report.note("equal_rank_pairs_not_preferences")
                continue
            if a.response.strip() == b.response.strip():
                report.note("identical_answer_pairs")
                continue
            out.append(PreferencePair(
                prompt=prompt, chosen=a.response, rejected=b.response, source=a.source or "oasst2",
                meta={"rank_chosen": a.rank, "rank_rejected": b.rank,
                      "row_chosen": a.meta.get("row"), "row_rejected": b.meta.get("row")},
            ))
    report.loaded = len(out)
    return out


# --------------------------------------------------------------------------- AlpacaEval

def load_alpaca_eval_outputs(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Records[ResponseRecord]:
    """Load AlpacaEval model outputs ``{"instruction", "output", "generator", "dataset"}``.

    ``id`` is the instruction's stable id (so a model's outputs join the reference's);
    ``meta`` keeps ``dataset`` (the AlpacaEval subset) and ``row``. An empty output is a real
    (bad) model answer, not a malformed row: it is kept and counted in ``.report.notes``.
    """

    def parse(obj: dict[str, Any], row: int) -> ResponseRecord:
        instr = req_str(obj, "instruction", allow_empty=False)
        output = req_str(obj, "output")
        gen = req_str(obj, "generator") if "generator" in obj else ""
        meta: dict[str, Any] = {"row": row}
        if "dataset" in obj:
            meta["dataset"] = req_str(obj, "dataset")
        if not output.strip():
            report_notes["empty_outputs"] = report_notes.get("empty_outputs", 0) + 1
        return ResponseRecord(id=stable_id(instr), prompt=instr, response=output, generator=gen,
                              source="alpaca_eval", meta=meta)

    report_notes: dict[str, int] = {}
    out = load_rows(path, "alpaca-outputs", parse, skip_bad_rows)
    out.report.notes.update(report_notes)
    return out


def alpaca_eval_prompts(reference_outputs: list[ResponseRecord]) -> list[PromptRecord]:
    """Prompts to generate from, each with the reference model's output attached."""
    return [PromptRecord(id=r.id, prompt=r.prompt, reference=r.response, source=r.source,
                         meta={**r.meta, "reference_generator": r.generator}) for r in reference_outputs]


def preference_to_label(pref: float | None) -> tuple[str | None, bool]:
    """AlpacaEval ``preference`` -> (label, is_tie).

    1 means output_1 (A) wins, 2 means output_2 (B) wins, 0 is an explicit tie, null is a
    failed judgment. Weighted annotators give an expected preference in [1, 2]: the label is
    the side it leans to (< 1.5 -> A, > 1.5 -> B, exactly 1.5 -> tie); the raw value stays
    in ``meta["preference"]`` for anyone who needs it.
    """
    if pref is None:
        return None, False
    if pref == 0.0 or pref == 1.5:
        return None, True
    if not 1.0 <= pref <= 2.0:
        raise RowError("preference", f"expected 0 (tie), null or a value in [1, 2], got {pref}")
    return ("A" if pref < 1.5 else "B"), False


def load_alpaca_eval_annotations(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Records[PairwiseItem]:
    """Load AlpacaEval pairwise judgments as ``PairwiseItem`` (A = output_1, B = output_2).

    ``label`` is the judge's winner; ties and null judgments have ``label=None`` with
    ``meta["tie"]`` / ``meta["preference"]`` saying which (counted in ``.report.notes``).
    """
    notes: dict[str, int] = {}

    def parse(obj: dict[str, Any], row: int) -> PairwiseItem:
        instr = req_str(obj, "instruction", allow_empty=False)
        o1 = req_str(obj, "output_1")
        o2 = req_str(obj, "output_2")
        pref = req_number(obj, "preference", nullable=True)
        label, tie = preference_to_label(pref)
        key = "label_" + (label or ("tie" if tie else "null"))
        notes[key] = notes.get(key, 0) + 1
        meta: dict[str, Any] = {"row": row, "preference": pref, "tie": tie}
        for f, k in (("generator_1", "generator_a"), ("generator_2", "generator_b"), ("dataset", "dataset")):
            if f in obj:
                meta[k] = req_str(obj, f)
        return PairwiseItem(id=stable_id(instr, o1, o2), prompt=instr, response_a=o1, response_b=o2,
                            label=label, source="alpaca_eval", meta=meta)

    out = load_rows(path, "alpaca-annotations", parse, skip_bad_rows)
    out.report.notes.update(notes)
    return out


# --------------------------------------------------------------------------- generic

def load_preferences(path: str | os.PathLike, *, skip_bad_rows: bool = False, split: str | None = None,
                     source: str | None = None) -> Records[PreferencePair]:
    """Load generic preference rows from JSONL / JSON / Parquet / a local HF dataset directory.

    Each row is either TRL *standard* (``prompt``, ``chosen``, ``rejected`` strings) or TRL
    *conversational* (lists of ``{"role", "content"}`` messages, with an explicit ``prompt``
    or an implicit one shared by ``chosen`` and ``rejected``); detected per row. Optional
    ``id``, ``source`` and ``meta`` columns are kept.
    """
    from rayalign.data.trl_format import from_trl_row

    src = source if source is not None else Path(path).name

    def parse(obj: dict[str, Any], row: int) -> PreferencePair:
        try:
            pair = from_trl_row(obj, source=src)
        except DataError as e:
            raise RowError(e.field, e.reason) from None
        except ValidationError as e:
            first = e.errors()[0]
            raise RowError(".".join(str(x) for x in first["loc"]) or None, first["msg"]) from None
        pair.meta.setdefault("row", row)
        return pair

    return load_rows(path, "preferences", parse, skip_bad_rows, rows=iter_table_rows(path, split))


# --------------------------------------------------------------------------- detection

KINDS = ("hh", "oasst", "alpaca-outputs", "alpaca-annotations", "preferences")


def detect_kind(path: str | os.PathLike) -> str:
    """Guess a file's kind from the fields of its first row."""
    for _row, _line, obj in iter_table_rows(path):
        if not isinstance(obj, dict):
            return "preferences"
        keys = set(obj)
        if {"output_1", "output_2", "preference"} <= keys:
            return "alpaca-annotations"
        if {"instruction", "output"} <= keys:
            return "alpaca-outputs"
        if {"question", "answer", "rank"} <= keys:
            return "oasst"
        if ("prompt" not in keys and {"chosen", "rejected"} <= keys and isinstance(obj["chosen"], str)
                and HH_ASSISTANT in obj["chosen"]):
            return "hh"
        return "preferences"
    raise DataError(path, "file is empty (no rows)")


def load_any(path: str | os.PathLike, kind: str = "auto", *, skip_bad_rows: bool = False) -> Records[Any]:
    """Load ``path`` with the loader for ``kind`` ("auto" detects it)."""
    if kind == "auto":
        kind = detect_kind(path)
    loaders: dict[str, Callable[..., Records[Any]]] = {
        "hh": load_hh_rlhf, "oasst": load_oasst_ranked, "alpaca-outputs": load_alpaca_eval_outputs,
        "alpaca-annotations": load_alpaca_eval_annotations, "preferences": load_preferences,
    }
    if kind not in loaders:
        raise ValueError(f"unknown data kind {kind!r}; valid: auto, {', '.join(KINDS)}")
    return loaders[kind](path, skip_bad_rows=skip_bad_rows)
