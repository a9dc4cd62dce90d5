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
import json
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


def _row_to_judgment(row: Any, where: str, judge: str) -> Judgment:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    iid = row.get("item_id", row.get("id"))
    lab = row.get("label")
    if not isinstance(iid, str) or not iid or lab not in _LABELS:
        raise ValueError(f"{where}: needs a string 'id' (or 'item_id') and a 'label' of A, B or tie")
    fields = {k: v for k, v in row.items() if k in _JUDGMENT_FIELDS and k not in ("item_id", "judge")}
    recorded_by = row.get("judge")
    try:
        j = Judgment(item_id=iid, judge=judge, **fields)
    except ValidationError as err:
        raise ValueError(f"{where}: not a valid judgment row ({err.errors()[0]['msg']})") from None
    if j.rationale == "" and isinstance(recorded_by, str) and recorded_by:
        j.rationale = f"replayed from {recorded_by}"
    if j.label is None and j.error is None:
        j.error = "recorded judgment has no label"
    elif j.error is not None:
        j.label = None  # a recorded failure stays a failure
    return j


def read_recorded(path: str | Path) -> dict[str, Judgment]:
    """Every recorded judgment of ``path`` by item id (later rows win); raises on bad rows."""
    name = _bundled_name(path)
    if name is not None:
        from rayalign.data.bundled import bundled_verdicts
        from rayalign.data.votes import pandalm_verdict_rows

        rows = pandalm_verdict_rows(*bundled_verdicts(name))
        return {j.item_id: j for j in (_row_to_judgment(r, f"bundled:{name}: pair {r.get('id')}",
                                                        f"replay:{name}") for r in rows)}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay judgments file not found: {p}")
    judge = f"replay:{p.name}"
    by_id: dict[str, Judgment] = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}:{n}: not valid JSON ({err.msg})") from None
            j = _row_to_judgment(row, f"{p}:{n}", judge)
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
