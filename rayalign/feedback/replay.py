"""A REPLAY judge: answers from recorded judgments instead of asking anyone.

The recorded file is JSONL, one judgment per line, keyed by item id:

* full ``Judgment`` rows (``item_id``, ``judge``, ``label``, ``score_a``, ``error``,
  ``simulated``, ...) as ``rayalign label`` writes to ``judgments.jsonl`` and an RLTHF run
  writes to ``data/ai_judgments.jsonl``;
* or minimal rows ``{"id": ..., "label": "A" | "B" | "tie"[, "rationale": ...][, "shown_a": ...]}``;
* or ``bundled:<name>`` for recorded verdicts shipped in the package
  (``rayalign.data.bundled.BUNDLED_VERDICTS``: ``pandalm_gpt35``, ``pandalm_7b``: real
  gpt-3.5-turbo and PandaLM-7B verdicts on PandaLM's pairs, ties and garbage as error rows).

A/B order: a recorded "A" is the response the judge saw first. Rows that record it
(``shown_a``, the ``response_key`` of that text; ``rayalign label`` writes it) are mapped
onto the order the pair is shown in now: the label (and scores) swap when the pair is shown
the other way round, and a row whose ``shown_a`` matches neither response is an error row.
Rows without ``shown_a`` are taken in the current order as they are.

A later row for the same id replaces an earlier one (the file reads like an append log).
A recorded failure (``error`` set) or a row without a label is replayed as an error row;
nothing is ever filled in with a default. Recorded ``simulated`` flags are kept, so a
replay of a simulated labeller still says "simulated".

Two users share this parser:

* ``ReplayJudge`` (``judge.kind: replay``, ``judge.settings.path: FILE``) behind the
  labelling pipeline's ``Judge`` interface: an item with no recorded judgment becomes an
  error row (``Judgment.error``), like any other judge's failure; error rows are not
  cached, so a rerun with a completed file fills them in.
* ``load_replay`` for the RLTHF loop (``labeller.kind: replay``), which is strict: a pair
  without a recorded label is an error for the whole step.

The file is read where the judge is built (a Ray Data actor): on a multi-node cluster it
must be on storage every node sees. The pipeline's cache is keyed by pair *content*; the
cache identity of a replay judge includes a digest of the file (``file_digest``), so an
edited file never serves stale answers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from rayalign.config import StrictModel
from rayalign.data.schema import Judgment, PairwiseItem, response_key

_LABELS = ("A", "B", "tie", None)
_JUDGMENT_FIELDS = set(Judgment.model_fields)


class ReplaySettings(StrictModel):
    """``judge.settings`` of ``kind: replay``."""

    #: JSONL of recorded judgments keyed by item id (``id`` or ``item_id``), or
    #: ``bundled:<name>`` for recorded verdicts shipped in the package.
    path: str


def _bundled_name(path: str | Path) -> str | None:
    s = str(path)
    return s.split(":", 1)[1] if s.startswith("bundled:") else None


def file_digest(path: str | Path) -> str:
    """sha256 of the recorded file (part of the replay judge's cache identity)."""
    name = _bundled_name(path)
    if name is not None:
        from rayalign.data.bundled import bundled_verdicts

        path = bundled_verdicts(name)[1]
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay judgments file not found: {p}")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


class _BadRow(ValueError):
    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def _row_to_judgment(row: Any, judge: str) -> Judgment:
    """One recorded row as a Judgment; raises ``_BadRow(field, reason)``."""
    if not isinstance(row, dict):
        raise _BadRow(None, f"expected a JSON object, got {type(row).__name__}")
    iid = row.get("item_id", row.get("id"))
    if not isinstance(iid, str) or not iid:
        raise _BadRow("id", "needs a string 'id' (or 'item_id')")
    if row.get("label") not in _LABELS:
        raise _BadRow("label", f"must be A, B, tie or null, got {row.get('label')!r}")
    fields = {k: v for k, v in row.items() if k in _JUDGMENT_FIELDS and k not in ("item_id", "judge")}
    recorded_by = row.get("judge")
    try:
        j = Judgment(item_id=iid, judge=judge, **fields)
    except ValidationError as err:
        first = err.errors()[0]
        raise _BadRow(".".join(map(str, first["loc"])) or None,
                      f"not a valid judgment row ({first['msg']})") from None
    if j.rationale == "" and isinstance(recorded_by, str) and recorded_by:
        j.rationale = f"replayed from {recorded_by}"
    if j.label is None and j.error is None:
        j.error = "recorded judgment has no label"
    elif j.error is not None:
        j.label = None  # a recorded failure stays a failure
    return j


def read_recorded(path: str | Path) -> dict[str, Judgment]:
    """Every recorded judgment of ``path`` by item id (later rows win); a bad row raises a
    ``DataError`` naming file, row (line) and field."""
    from rayalign.data.errors import DataError
    from rayalign.data.rows import iter_json_rows

    name = _bundled_name(path)
    if name is not None:
        from rayalign.data.bundled import bundled_verdicts
        from rayalign.data.votes import pandalm_verdict_rows

        return {r["id"]: _row_to_judgment(r, f"replay:bundled:{name}")
                for r in pandalm_verdict_rows(*bundled_verdicts(name))}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay judgments file not found: {p}")
    judge = f"replay:{p.name}"
    by_id: dict[str, Judgment] = {}
    for row, line, obj in iter_json_rows(p):
        if isinstance(obj, DataError):
            raise obj
        try:
            j = _row_to_judgment(obj, judge)
        except _BadRow as e:
            raise DataError(p, e.reason, row=row, line=line, field=e.field) from None
        by_id[j.item_id] = j
    return by_id


def missing_error(item_id: str, path: str | Path) -> str:
    return f"no recorded judgment for item id {item_id!r} in {_display(path)}"


def _display(path: str | Path) -> str:
    return str(path) if _bundled_name(path) is not None else Path(path).name


_SWAP = {"A": "B", "B": "A", "tie": "tie", None: None}


def orient(j: Judgment, item: PairwiseItem) -> Judgment:
    """``j`` in ``item``'s A/B order, stamped with it (see the module docstring)."""
    a, b = response_key(item.response_a), response_key(item.response_b)
    if j.shown_a is None or j.shown_a == a:
        return j.model_copy(update={"shown_a": a})
    if j.shown_a == b:
        return j.model_copy(update={"shown_a": a, "label": _SWAP[j.label],
                                    "score_a": j.score_b, "score_b": j.score_a})
    return j.model_copy(update={"shown_a": a, "label": None, "score_a": None, "score_b": None,
                                "error": j.error or "recorded judgment is for other responses "
                                                    "(its shown_a matches neither response of this pair)"})


def load_replay(path: str | Path, items: Sequence[PairwiseItem]) -> list[Judgment]:
    """Recorded judgments for ``items`` in order and in their A/B order (RLTHF loop); raises
    if any pair has none."""
    by_id = read_recorded(path)
    missing = [it.id for it in items if it.id not in by_id]
    if missing:
        raise ValueError(f"{path} has no label for {len(missing)} pairs (first: {missing[:3]})")
    return [orient(by_id[it.id], it) for it in items]


class ReplayJudge:
    """Answers each pair with its recorded judgment; a pair with none is an error row."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = path if _bundled_name(path) is not None else Path(path)
        self.recorded = read_recorded(self.path)
        self.name = name or f"replay:{_display(self.path)}"
        self.spec = f"replay:{_display(self.path)}:{file_digest(self.path)}"
        #: True when the replayed judgments came from a simulation.
        self.simulated = any(j.simulated for j in self.recorded.values())

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]:
        out = []
        for it in items:
            rec = self.recorded.get(it.id)
            if rec is None:
                out.append(Judgment(item_id=it.id, judge=self.name,
                                    error=missing_error(it.id, self.path)))
            else:
                out.append(orient(rec, it).model_copy(update={"item_id": it.id, "judge": self.name}))
        return out


def build_judge(cfg) -> ReplayJudge:
    """Builder for ``rayalign.feedback.config.build_judge`` (kind ``replay``)."""
    from rayalign.config import validate_config

    s = validate_config(ReplaySettings, dict(cfg.settings), source="judge.settings")
    return ReplayJudge(s.path, name=cfg.name)
