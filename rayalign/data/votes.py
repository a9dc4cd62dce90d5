"""Pairs with several recorded human votes: PandaLM's test set and a generic votes JSONL.

Ground truth is the **human majority**: the side more than half of the votes chose. A pair
whose majority is "tie", or that has no majority, has no preference; it is not emitted and
is counted in ``.report.notes`` (``majority_tie`` / ``no_majority``), never guessed. A vote
that is not a valid value (garbage) makes the row a bad row naming its field.

Each emitted ``PreferencePair`` keeps its votes in ``meta["votes"]`` as ``"chosen"``,
``"rejected"`` or ``"tie"`` — relative to the pair, not to an A/B slot — so they stay right
whatever order the pair is shown in later (``rayalign.humans.recorded`` answers from them).

The pair id is order-free (prompt + the two responses, sorted): the same two answers shown
either way round are one pair, and duplicates (PandaLM has many: different models writing the
same text) collapse in ``rayalign.data.pairs``.

Formats:

* **PandaLM** ``testset-v1.json`` (a JSON array; ``.json.gz`` too): ``idx``, ``instruction``,
  ``input`` (may be empty), ``response1``, ``response2``, ``annotator1..3`` each ``1``
  (response1 better), ``2`` (response2 better) or ``0`` (tie). The prompt is the instruction,
  plus ``"\\n\\n"`` and the input when there is one.
* **Generic votes JSONL** (``kind: votes``), one pair per line::

      {"prompt": "...", "response_a": "...", "response_b": "...", "votes": ["A", "A", "tie"],
       "id": "optional", "meta": {"optional": "..."}}

  ``votes`` is a non-empty list of ``"A"``, ``"B"`` or ``"tie"`` (A = ``response_a``).

Recorded judge verdicts on PandaLM (``gpt-3.5-turbo-testset-v1.json``: ``gpt_result`` of
``"1"``, ``"2"``, ``"Tie"``, ``"garbage"``; ``pandalm-7b-testset-v1.json``: ``pandalm_result``
of 1, 2, 0) become replay rows (``pandalm_verdict_rows``) for ``rayalign.feedback.replay``:
a tie or garbage verdict is an *error row*, never a label.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from rayalign.data.errors import DataError, Records
from rayalign.data.rows import RowError, iter_json_rows, load_rows, req_str
from rayalign.data.schema import FILE_A_KEY, PreferencePair, response_key, stable_id

#: PandaLM vote value -> side (1 = response1, 2 = response2, 0 = tie).
_PANDALM_VOTE = {1: "1", 2: "2", 0: "tie"}
_GENERIC_VOTE = {"A": "1", "B": "2", "tie": "tie"}


def pair_id(prompt: str, r1: str, r2: str) -> str:
    """Order-free content id: the same two responses in either order are the same pair."""
    lo, hi = sorted((r1, r2))
    return stable_id("pair", prompt, lo, hi)


def majority(sides: list[str]) -> str | None:
    """The value more than half of ``sides`` hold, or None."""
    if not sides:
        return None
    top, n = Counter(sides).most_common(1)[0]
    return top if 2 * n > len(sides) else None


def _pair_from_votes(prompt: str, r1: str, r2: str, sides: list[str], meta: dict[str, Any],
                     notes: Counter, source: str, pid: str | None = None,
                     dropped: list[str] | None = None) -> PreferencePair | None:
    """The pair with the majority's winner as ``chosen``; None (counted, its id kept in
    ``dropped``: recorded verdicts may still name it) when there is none."""
    pid = pid or pair_id(prompt, r1, r2)
    why = ("empty_response" if not r1.strip() or not r2.strip()  # a bad model answer, not a bad row
           else "identical_responses" if r1.strip() == r2.strip() else None)
    win = majority(sides) if why is None else None
    if why is None and win in (None, "tie"):
        why = "no_majority" if win is None else "majority_tie"
    if why is not None:
        notes[why] += 1
        if dropped is not None:
            dropped.append(pid)
        return None
    one_wins = win == "1"
    chosen, rejected = (r1, r2) if one_wins else (r2, r1)
    rel = {"1": "chosen" if one_wins else "rejected", "2": "rejected" if one_wins else "chosen", "tie": "tie"}
    votes = [rel[s] for s in sides]
    notes["unanimous" if len(set(sides)) == 1 else "split_vote"] += 1
    return PreferencePair(id=pid, prompt=prompt, chosen=chosen,
                          rejected=rejected, source=source,
                          meta={**meta, "votes": votes, "first_is_chosen": one_wins,
                                FILE_A_KEY: response_key(r1)})


def _vote(obj: dict[str, Any], field: str, allowed: dict[Any, str]) -> str:
    if field not in obj:
        raise RowError(field, "missing field")
    v = obj[field]
    if isinstance(v, bool) or v not in allowed:
        raise RowError(field, f"expected one of {sorted(allowed, key=str)}, got {v!r}")
    return allowed[v]


def pandalm_prompt(instruction: str, inp: str) -> str:
    return instruction + ("\n\n" + inp if inp.strip() else "")


def _pandalm_fields(obj: dict[str, Any]) -> tuple[int, str, str, str]:
    idx = obj.get("idx")
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise RowError("idx", f"expected an integer, got {idx!r}")
    prompt = pandalm_prompt(req_str(obj, "instruction"), req_str(obj, "input"))
    if not prompt.strip():
        raise RowError("instruction,input", "both are empty: no prompt")
    return idx, prompt, req_str(obj, "response1"), req_str(obj, "response2")


def load_pandalm(path: str | os.PathLike, *, skip_bad_rows: bool = False,
                 source: str = "pandalm") -> Records[PreferencePair]:
    """PandaLM's human-annotated test set as pairs whose ``chosen`` is the human majority.

    A row with a non-string response (four upstream rows hold a JSON boolean in
    ``response1``, two in ``response2``) or an invalid vote is a bad row naming its field.
    """
    notes: Counter = Counter()

    def parse(obj: dict[str, Any], row: int) -> PreferencePair | None:
        idx, prompt, r1, r2 = _pandalm_fields(obj)
        sides = [_vote(obj, f"annotator{k}", _PANDALM_VOTE) for k in (1, 2, 3)]
        meta = {"row": row, "idx": idx}
        if isinstance(obj.get("cmp_key"), str):
            meta["cmp_key"] = obj["cmp_key"]
        return _pair_from_votes(prompt, r1, r2, sides, meta, notes, source, dropped=dropped)

    dropped: list[str] = []
    out = load_rows(path, "pandalm", parse, skip_bad_rows)
    out.report.notes.update(notes)
    out.report.dropped_ids = dropped
    return out


def load_votes_jsonl(path: str | os.PathLike, *, skip_bad_rows: bool = False,
                     source: str | None = None) -> Records[PreferencePair]:
    """The generic votes JSONL (see the module docstring) as majority-labelled pairs."""
    notes: Counter = Counter()
    src = source if source is not None else Path(path).name

    def parse(obj: dict[str, Any], row: int) -> PreferencePair | None:
        prompt = req_str(obj, "prompt")
        a, b = req_str(obj, "response_a"), req_str(obj, "response_b")
        votes = obj.get("votes")
        if not isinstance(votes, list) or not votes:
            raise RowError("votes", f"expected a non-empty list of 'A', 'B' or 'tie', got {votes!r}")
        sides = []
        for k, v in enumerate(votes):
            if not isinstance(v, str) or v not in _GENERIC_VOTE:
                raise RowError(f"votes[{k}]", f"expected 'A', 'B' or 'tie', got {v!r}")
            sides.append(_GENERIC_VOTE[v])
        pid = obj.get("id")
        if pid is not None and (not isinstance(pid, str) or not pid):
            raise RowError("id", f"expected a non-empty string, got {pid!r}")
        meta = obj.get("meta", {})
        if not isinstance(meta, dict):
            raise RowError("meta", f"expected an object, got {type(meta).__name__}")
        return _pair_from_votes(prompt, a, b, sides, {**meta, "row": row}, notes, src, pid, dropped)

    dropped: list[str] = []
    out = load_rows(path, "votes", parse, skip_bad_rows)
    out.report.notes.update(notes)
    out.report.dropped_ids = dropped
    return out


# --------------------------------------------------------------------------- judge verdicts

def _verdict(obj: dict[str, Any]) -> tuple[str, Any, str]:
    """(judge name, raw verdict, reason) of a PandaLM verdict row."""
    if "gpt_result" in obj:
        return "gpt-3.5-turbo", obj["gpt_result"], obj.get("gpt_reason") or ""
    if "pandalm_result" in obj:
        return "pandalm-7b", obj["pandalm_result"], obj.get("pandalm_reason") or ""
    raise RowError("gpt_result|pandalm_result", "no verdict field")


def verdict_side(raw: Any) -> tuple[str | None, str | None]:
    """A recorded verdict -> ("1" | "2", None) or (None, why it is not a label)."""
    if not isinstance(raw, bool) and raw in (1, 2, "1", "2"):
        return str(raw), None
    if raw in (0, "0") or (isinstance(raw, str) and raw.strip().lower() == "tie"):
        return None, f"recorded verdict is a tie ({raw!r}): no A/B preference"
    return None, f"recorded verdict is not a label ({raw!r})"


def pandalm_verdict_rows(testset: str | os.PathLike, verdicts: str | os.PathLike) -> list[dict[str, Any]]:
    """Replay rows (``rayalign.feedback.replay`` format) for one recorded PandaLM judge.

    ``label`` is in the judge's own order (response1 = A), and ``shown_a`` records that
    order, so a replay maps it onto whatever order the pair is shown in. A tie or garbage
    verdict is an error row. Rows of the test set that are not pairs (bad rows) get none;
    a duplicate pair keeps its first verdict, as the loader keeps its first occurrence.
    """
    tests = {obj.get("idx"): obj for _r, _l, obj in iter_json_rows(testset) if isinstance(obj, dict)}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row, line, obj in iter_json_rows(verdicts):
        if isinstance(obj, DataError):
            raise obj
        if not isinstance(obj, dict):
            raise DataError(verdicts, f"expected a JSON object, got {type(obj).__name__}", row=row, line=line)
        try:
            judge, raw, reason = _verdict(obj)
        except RowError as e:
            raise DataError(verdicts, e.reason, row=row, line=line, field=e.field) from None
        t = tests.get(obj.get("idx"))
        if t is None:
            raise DataError(verdicts, f"idx {obj.get('idx')!r} is not in {Path(testset).name}",
                            row=row, line=line, field="idx")
        try:
            _idx, prompt, r1, r2 = _pandalm_fields(t)
        except RowError:
            continue  # the loader refuses this row too: there is no pair to label
        pid = pair_id(prompt, r1, r2)
        if pid in seen:
            continue
        seen.add(pid)
        side, err = verdict_side(raw)
        out.append({"id": pid, "judge": judge, "label": {"1": "A", "2": "B"}.get(side or ""),
                    "error": err, "rationale": reason, "raw": str(raw), "shown_a": response_key(r1)})
    return out
