"""A REPLAY judge: answers from recorded judgments instead of asking anyone.

The recorded file is JSONL, one verdict per line, keyed by item id:

* full ``Judgment`` rows (``item_id``, ``judge``, ``label``, ``score_a``, ``error``,
  ``simulated``, ``order_verdicts``, ...) as ``rayalign label`` writes to ``judgments.jsonl``
  and an RLTHF run writes to ``data/ai_judgments.jsonl``;
* or minimal rows ``{"id": ..., "label": "A" | "B" | "tie"[, "shown_first": "A" | "B"]
  [, "confidence": 0.9][, "rationale": ...]}``;
* or ``bundled:<name>`` for recorded verdicts shipped in the package
  (``rayalign.data.bundled.BUNDLED_VERDICTS``: ``pandalm_gpt35``, ``pandalm_7b``: real
  gpt-3.5-turbo and PandaLM-7B verdicts on PandaLM's pairs, ties and garbage as error rows).

**Orders.** A judge asked twice, with the responses swapped, gives two verdicts; both are
kept (``Judgment.order_verdicts``), because a judge contradicting itself is the cheapest
sign its label is a guess. A row says which response was shown first in one of two ways:

* ``shown_first: "A" | "B"`` names the data file's ``response_a`` / ``response_b`` (PandaLM:
  ``response1`` / ``response2``), and ``label`` names them the same way: A is always the
  file's ``response_a``, whatever order the judge saw. Two rows with the same id and
  different ``shown_first`` are the two orders of one pair.
* ``shown_a`` (the ``response_key`` of the response shown first; ``rayalign label`` writes
  it): here ``label`` is positional, "A" being the response shown first.

A row with neither is one verdict in the pair's current order. A later row for the same id
and order replaces an earlier one (the file reads like an append log). ``confidence`` is the
judge's probability for its label where the engine gave log-probabilities.

A recorded failure (``error`` set) or a row without a label is replayed as an error row;
nothing is ever filled in with a default. Recorded ``simulated`` flags are kept, so a
replay of a simulated labeller still says "simulated".

Two users share this parser:

* ``ReplayJudge`` (``judge.kind: replay``, ``judge.settings.path: FILE``) behind the
  labelling pipeline's ``Judge`` interface: an item with no recorded judgment becomes an
  error row (``Judgment.error``), like any other judge's failure; error rows are not
  cached, so a rerun with a completed file fills them in.
* ``load_replay`` for the RLTHF loop (``labeller.kind: replay`` and each replayed
  ``labeller.extra_judges`` entry), which is strict: a row naming a pair the data set does
  not have, or an order that matches neither response, is a ``DataError`` naming file and
  row; a pair without any recorded verdict is an error for the primary labeller (an extra
  judge may cover only some pairs: the rest are its abstentions).

The file is read where the judge is built (a Ray Data actor): on a multi-node cluster it
must be on storage every node sees. The pipeline's cache is keyed by pair *content*; the
cache identity of a replay judge includes a digest of the file (``file_digest``), so an
edited file never serves stale answers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from rayalign.config import StrictModel
from rayalign.data.schema import FILE_A_KEY, TIE, Judgment, OrderVerdict, PairwiseItem, order_consensus, response_key

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


@dataclass
class RecordedRow:
    """One row of a recorded-verdict file: the verdict, how its order is given, where it is."""

    judgment: Judgment
    #: "A"/"B" (the data file's response shown first), ``None`` (positional: ``shown_a`` or
    #: the current order).
    shown_first: str | None
    confidence: float | None
    row: int | None = None
    line: int | None = None

    @property
    def order_key(self) -> str | None:
        return self.shown_first or self.judgment.shown_a


def _row_to_recorded(row: Any, judge: str) -> RecordedRow:
    """One recorded row; raises ``_BadRow(field, reason)``."""
    if not isinstance(row, dict):
        raise _BadRow(None, f"expected a JSON object, got {type(row).__name__}")
    iid = row.get("item_id", row.get("id"))
    if not isinstance(iid, str) or not iid:
        raise _BadRow("id", "needs a string 'id' (or 'item_id')")
    if row.get("label") not in _LABELS:
        raise _BadRow("label", f"must be A, B, tie or null, got {row.get('label')!r}")
    first = row.get("shown_first")
    if first is not None and first not in ("A", "B"):
        raise _BadRow("shown_first", f"must be 'A' or 'B' (the data file's response_a / response_b), got {first!r}")
    if first is not None and row.get("shown_a") is not None:
        raise _BadRow("shown_first", "give shown_first or shown_a, not both")
    conf = row.get("confidence")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float))
                             or not 0.0 <= float(conf) <= 1.0):
        raise _BadRow("confidence", f"must be a probability in [0, 1], got {conf!r}")
    fields = {k: v for k, v in row.items() if k in _JUDGMENT_FIELDS and k not in ("item_id", "judge")}
    recorded_by = row.get("judge")
    try:
        j = Judgment(item_id=iid, judge=judge, **fields)
    except ValidationError as err:
        bad = err.errors()[0]
        raise _BadRow(".".join(map(str, bad["loc"])) or None,
                      f"not a valid judgment row ({bad['msg']})") from None
    if j.rationale == "" and isinstance(recorded_by, str) and recorded_by:
        j.rationale = f"replayed from {recorded_by}"
    if j.label is None and j.error is None:
        j.error = "recorded judgment has no label"
    elif j.error is not None:
        j.label = None  # a recorded failure stays a failure
    return RecordedRow(j, first, None if conf is None else float(conf))


def read_rows(path: str | os.PathLike) -> list[RecordedRow]:
    """Every row of ``path`` in file order; a bad row raises a ``DataError`` naming file,
    row (line) and field."""
    from rayalign.data.errors import DataError
    from rayalign.data.rows import iter_json_rows

    name = _bundled_name(path)
    if name is not None:
        from rayalign.data.bundled import bundled_verdicts
        from rayalign.data.votes import pandalm_verdict_rows

        return [_row_to_recorded(r, f"replay:bundled:{name}")
                for r in pandalm_verdict_rows(*bundled_verdicts(name))]
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay judgments file not found: {p}")
    judge = f"replay:{p.name}"
    out: list[RecordedRow] = []
    for row, line, obj in iter_json_rows(p):
        if isinstance(obj, DataError):
            raise obj
        try:
            rec = _row_to_recorded(obj, judge)
        except _BadRow as e:
            raise DataError(p, e.reason, row=row, line=line, field=e.field) from None
        rec.row, rec.line = row, line
        out.append(rec)
    return out


def read_recorded(path: str | os.PathLike) -> dict[str, list[RecordedRow]]:
    """The rows of ``path`` by item id, one per order (a later row for the same order wins)."""
    by_id: dict[str, dict[str | None, RecordedRow]] = {}
    for rec in read_rows(path):
        orders = by_id.setdefault(rec.judgment.item_id, {})
        if rec.order_key is None:
            orders.clear()  # an unordered row is the whole verdict: it replaces every order
        orders[rec.order_key] = rec
    return {i: list(o.values()) for i, o in by_id.items()}


def missing_error(item_id: str, path: str | os.PathLike) -> str:
    return f"no recorded judgment for item id {item_id!r} in {_display(path)}"


def _display(path: str | os.PathLike) -> str:
    return str(path) if _bundled_name(path) is not None else Path(path).name


def _file_keys(item: PairwiseItem) -> dict[str, str]:
    """``response_key`` of the data file's A and B responses of ``item``."""
    a, b = response_key(item.response_a), response_key(item.response_b)
    if item.meta.get(FILE_A_KEY) == b:
        a, b = b, a
    return {"A": a, "B": b}


class OrderError(ValueError):
    """A recorded order that matches neither response of its pair."""


def _frame(rec: RecordedRow, item: PairwiseItem) -> tuple[str, dict[str, str]]:
    """(key of the response shown first, {row label: response key}) of one row on ``item``;
    raises ``OrderError`` (see the module docstring for the three ways a row gives its order)."""
    a, b = response_key(item.response_a), response_key(item.response_b)
    if rec.shown_first is not None:
        keys = _file_keys(item)
        return keys[rec.shown_first], keys
    shown = rec.judgment.shown_a
    if shown is None or shown == a:
        return a, {"A": a, "B": b}
    if shown == b:
        return b, {"A": b, "B": a}
    raise OrderError("its shown_a matches neither response of this pair")


def order_verdict(rec: RecordedRow, item: PairwiseItem) -> OrderVerdict:
    """One row as a frame-free verdict on ``item``; raises ``OrderError``."""
    first, by_label = _frame(rec, item)
    label = rec.judgment.label
    winner = TIE if label == "tie" else by_label.get(label or "")
    return OrderVerdict(shown_first=first, winner=winner, confidence=rec.confidence)


def judgment_for(item: PairwiseItem, rows: Sequence[RecordedRow]) -> Judgment:
    """``item``'s judgment from its recorded rows (one per order), in ``item``'s A/B order.

    Scores follow the label's frame (one row), or are the orders' vote shares (several).
    Raises ``OrderError`` for a row whose order matches neither response.
    """
    j = rows[-1].judgment
    if len(rows) == 1 and j.order_verdicts and rows[0].shown_first is None:
        verdicts = j.order_verdicts  # a full Judgment row: its verdicts are frame-free already
        if any(v.first_in(item) is None for v in verdicts):
            raise OrderError("its order_verdicts are for other responses than this pair's")
    else:
        verdicts = [order_verdict(r, item) for r in rows]
    labels = [v.label_in(item) for v in verdicts if v.winner is not None]
    label = order_consensus(labels)
    if len(rows) == 1:
        swapped = _frame(rows[0], item)[1]["A"] != response_key(item.response_a)
        scores = {"score_a": j.score_b, "score_b": j.score_a} if swapped else {}
    else:
        scores = {"score_a": labels.count("A") / max(1, len(labels)),
                  "score_b": labels.count("B") / max(1, len(labels))}
    errors = [r.judgment.error for r in rows if r.judgment.error]
    return j.model_copy(update={
        "shown_a": response_key(item.response_a), "label": label, **scores,
        "error": None if label is not None else (errors[0] if errors else "recorded judgment has no label"),
        "rationale": SEPARATOR.join(dict.fromkeys(r.judgment.rationale for r in rows if r.judgment.rationale)),
        "simulated": any(r.judgment.simulated for r in rows), "order_verdicts": verdicts})


SEPARATOR = "\n----- other order -----\n"


def load_replay(path: str | os.PathLike, items: Sequence[PairwiseItem], *, known_ids: set[str] | None = None,
                require_all: bool = True) -> list[Judgment]:
    """Recorded judgments for ``items``, in order and in their A/B order (the RLTHF loop).

    Strict: a row whose order matches neither response raises a ``DataError`` naming the
    file and row; so does, when ``known_ids`` is given (every pair id of the data set: the
    test split and the pairs the loader dropped too), a row whose id is in neither. With
    ``require_all`` a pair without any recorded row raises too; without, it gets an error
    row (an extra judge's abstention).
    """
    from rayalign.data.errors import DataError

    by_id = read_recorded(path)
    known = {it.id for it in items} | (known_ids or set())
    for iid, rows in by_id.items():
        if known_ids is not None and iid not in known:
            r = rows[0]
            raise DataError(str(path), f"id {iid!r} names no pair of the data set (a typo, or "
                            "verdicts for another data file?)", row=r.row, line=r.line, field="id")
    missing = [it.id for it in items if it.id not in by_id]
    if missing and require_all:
        raise ValueError(f"{path} has no label for {len(missing)} pairs (first: {missing[:3]})")
    out = []
    for it in items:
        if it.id not in by_id:
            out.append(Judgment(item_id=it.id, judge=f"replay:{_display(path)}", error=missing_error(it.id, path),
                                shown_a=response_key(it.response_a)))
            continue
        try:
            out.append(judgment_for(it, by_id[it.id]))
        except OrderError as e:
            bad = next(r for r in by_id[it.id] if not _order_ok(r, it))
            raise DataError(str(path), f"pair {it.id!r}: {e}", row=bad.row, line=bad.line,
                            field="shown_a") from None
    return out


def _order_ok(rec: RecordedRow, item: PairwiseItem) -> bool:
    try:
        _frame(rec, item)
    except OrderError:
        return False
    return True


class ReplayJudge:
    """Answers each pair with its recorded judgment; a pair with none is an error row."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = path if _bundled_name(path) is not None else Path(path)
        self.recorded = read_recorded(self.path)
        self.name = name or f"replay:{_display(self.path)}"
        self.spec = f"replay:{_display(self.path)}:{file_digest(self.path)}"
        #: True when the replayed judgments came from a simulation.
        self.simulated = any(r.judgment.simulated for rows in self.recorded.values() for r in rows)

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]:
        out = []
        for it in items:
            rows = self.recorded.get(it.id)
            if rows is None:
                out.append(Judgment(item_id=it.id, judge=self.name,
                                    error=missing_error(it.id, self.path)))
                continue
            try:
                j = judgment_for(it, rows)
            except OrderError as e:  # the pipeline never raises for one bad record: an error row
                j = Judgment(item_id=it.id, judge=self.name, shown_a=response_key(it.response_a),
                             error=f"recorded judgment is for other responses ({e})")
            out.append(j.model_copy(update={"item_id": it.id, "judge": self.name}))
        return out


def build_judge(cfg) -> ReplayJudge:
    """Builder for ``rayalign.feedback.config.build_judge`` (kind ``replay``)."""
    from rayalign.config import validate_config

    s = validate_config(ReplaySettings, dict(cfg.settings), source="judge.settings")
    return ReplayJudge(s.path, name=cfg.name)
