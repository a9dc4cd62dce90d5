"""The human annotation queue: an sqlite file in the run directory.

Why sqlite: the RLTHF driver (a Ray actor), the annotation web page (a Ray Serve replica)
and the import command are separate processes that may each be restarted at any time; a
WAL-mode sqlite file is the one store all three can share safely without a server.

Guarantees:
* ``enqueue`` is idempotent per (batch_id, item id): calling it again after a restart never
  duplicates work.
* A claim expires (``claim_timeout_s``), so an item handed to a browser that was closed is
  handed out again; nothing is lost.
* One answer per (batch, item, annotator): a second submission replaces the first, so a
  double click or a re-import never double-counts.
* An item is *final* once it has at least one answer (A/B/tie/skip). Its label is the
  majority of the A/B answers; an even A/B split counts as a tie (no label).

Long because: one class owns every transaction on the queue file (claim, release, undo,
submit, import, status); split across modules, the invariants above would be too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from rayalign.data.schema import Label, PairwiseItem

ANSWERS = ("A", "B", "tie", "skip")
QUEUE_FILE = ("humans", "queue.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id   TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    batch_id   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    position   INTEGER NOT NULL,
    prompt     TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL,
    ai_label   TEXT,
    rationale  TEXT,
    meta       TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    PRIMARY KEY (batch_id, item_id)
);
CREATE TABLE IF NOT EXISTS claims (
    batch_id   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (batch_id, item_id)
);
CREATE TABLE IF NOT EXISTS answers (
    batch_id    TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    annotator   TEXT NOT NULL,
    label       TEXT NOT NULL CHECK (label IN ('A', 'B', 'tie', 'skip')),
    comment     TEXT,
    seconds     REAL,
    source      TEXT NOT NULL DEFAULT 'web',
    answered_at REAL NOT NULL,
    PRIMARY KEY (batch_id, item_id, annotator)
);
"""


class UnknownBatchError(KeyError, ValueError):
    """A batch or item id the queue does not hold (a ValueError too, so the CLI reports it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def default_queue_path(run_dir: str | Path) -> Path:
    """Where a run keeps its annotation queue: ``<run>/humans/queue.sqlite``."""
    return Path(run_dir).joinpath(*QUEUE_FILE)


class AnnotationQueue:
    """Batches of pairwise items waiting for people; see the module docstring."""

    def __init__(self, db_path: str | Path, claim_timeout_s: float = 900.0):
        self.db_path = Path(db_path)
        self.claim_timeout_s = float(claim_timeout_s)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db_path, timeout=30.0)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: safe on every open
        finally:
            con.close()

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One short connection per operation: safe across threads, processes and restarts.

        ``BEGIN IMMEDIATE`` takes the write lock up front so two claimers never hand out
        the same item.
        """
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @staticmethod
    def _item_row(r: sqlite3.Row, with_ai: bool) -> dict[str, Any]:
        d = {
            "batch_id": r["batch_id"], "id": r["item_id"], "position": r["position"],
            "prompt": r["prompt"], "response_a": r["response_a"], "response_b": r["response_b"],
            "meta": json.loads(r["meta"] or "{}"),
        }
        if with_ai:
            d["ai_label"] = r["ai_label"]
            d["rationale"] = r["rationale"]
        return d

    def _unknown_batch(self, con: sqlite3.Connection, batch_id: str) -> UnknownBatchError:
        known = [r[0] for r in con.execute("SELECT batch_id FROM batches ORDER BY created_at, batch_id")]
        have = ", ".join(known) if known else "none yet"
        return UnknownBatchError(f"unknown annotation batch {batch_id!r} in {self.db_path} "
                                 f"(batches: {have})")

    def _check_batch(self, con: sqlite3.Connection, batch_id: str) -> None:
        if con.execute("SELECT 1 FROM batches WHERE batch_id=?", (batch_id,)).fetchone() is None:
            raise self._unknown_batch(con, batch_id)

    def resolve_batch(self, batch_id: str) -> str:
        """The queue's id for ``batch_id``, accepting the run folder's spelling too.

        The RLTHF driver names human batches ``iter00`` while the run directory holds
        ``iterations/iter_00``; people type either. Exact ids win; otherwise ids equal up
        to case, ``_`` and ``-`` match when exactly one does. An unknown id raises
        ``UnknownBatchError`` listing the batches there are.
        """
        def norm(b: str) -> str:
            return b.lower().replace("_", "").replace("-", "")

        with self._tx(write=False) as con:
            known = [r[0] for r in con.execute(
                "SELECT batch_id FROM batches ORDER BY created_at, batch_id")]
            if batch_id in known:
                return batch_id
            close = [b for b in known if norm(b) == norm(batch_id)]
            if len(close) == 1:
                return close[0]
            raise self._unknown_batch(con, batch_id)

    def batches_of(self, item_ids: list[str]) -> dict[str, list[str]]:
        """Item id -> the batches that hold it (an import row without a batch id is placed
        by this when the answer is unambiguous)."""
        out: dict[str, list[str]] = {i: [] for i in item_ids}
        with self._tx(write=False) as con:
            for r in con.execute("SELECT item_id, batch_id FROM items ORDER BY created_at, batch_id"):
                if r[0] in out:
                    out[r[0]].append(r[1])
        return out

    # -- writing -------------------------------------------------------------------------
    def enqueue(self, batch_id: str, items: list[PairwiseItem],
                ai_labels: Mapping[str, str] | None = None,
                rationales: Mapping[str, str] | None = None) -> int:
        """Add a batch; items already queued under this batch are left untouched.

        Returns how many items were newly added (0 on a repeat call).
        """
        if not batch_id:
            raise ValueError("batch_id must be a non-empty string")
        ai_labels = ai_labels or {}
        rationales = rationales or {}
        now = time.time()
        added = 0
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO batches(batch_id, created_at) VALUES (?, ?)",
                        (batch_id, now))
            start = con.execute("SELECT COUNT(*) FROM items WHERE batch_id=?",
                                (batch_id,)).fetchone()[0]
            for i, it in enumerate(items):
                if not isinstance(it, PairwiseItem):
                    raise TypeError(f"batch {batch_id!r} item {i}: expected PairwiseItem, "
                                    f"got {type(it).__name__}")
                ai = ai_labels.get(it.id)
                if ai is not None and ai not in ("A", "B", "tie"):
                    raise ValueError(f"batch {batch_id!r} item {it.id!r}: ai label {ai!r} "
                                     "is not A, B or tie")
                cur = con.execute(
                    "INSERT OR IGNORE INTO items(batch_id, item_id, position, prompt, response_a,"
                    " response_b, ai_label, rationale, meta, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (batch_id, it.id, start + added, it.prompt, it.response_a, it.response_b,
                     ai, rationales.get(it.id), json.dumps(it.meta, default=str), now))
                added += cur.rowcount
        return added

    def claim(self, annotator: str, n: int = 1, batch_id: str | None = None) -> list[dict]:
        """Hand ``annotator`` up to ``n`` unanswered items (their own live claims first).

        AI label and rationale are left out: the annotator must not be anchored by them.
        """
        if not annotator:
            raise ValueError("annotator must be a non-empty string")
        now = time.time()
        where_batch = "AND i.batch_id = ?" if batch_id else ""
        args: tuple = (batch_id,) if batch_id else ()
        with self._tx() as con:
            rows = con.execute(
                f"""SELECT i.*, c.annotator AS c_annotator, c.expires_at AS c_expires
                FROM items i
                LEFT JOIN claims c ON c.batch_id = i.batch_id AND c.item_id = i.item_id
                WHERE NOT EXISTS (SELECT 1 FROM answers a
                                  WHERE a.batch_id = i.batch_id AND a.item_id = i.item_id)
                  AND (c.annotator IS NULL OR c.annotator = ? OR c.expires_at < ?)
                  {where_batch}
                ORDER BY (c.annotator = ?) DESC, i.created_at, i.batch_id, i.position
                LIMIT ?""",
                (annotator, now, *args, annotator, int(n))).fetchall()
            for r in rows:
                con.execute(
                    "INSERT OR REPLACE INTO claims(batch_id, item_id, annotator, claimed_at,"
                    " expires_at) VALUES (?, ?, ?, ?, ?)",
                    (r["batch_id"], r["item_id"], annotator, now, now + self.claim_timeout_s))
        return [self._item_row(r, with_ai=False) for r in rows]

    def release(self, annotator: str, item_id: str | None = None,
                batch_id: str | None = None) -> int:
        """Drop ``annotator``'s live claims: all of them, or just one item's.

        The page calls this when its tab closes and when the person at it changes name,
        so the item goes straight back to the pool instead of waiting ``claim_timeout_s``.
        Only the claimer's own claim is dropped (a stale page cannot free someone else's).
        """
        sql, args = "DELETE FROM claims WHERE annotator=?", [annotator]
        if item_id is not None:
            sql += " AND item_id=?"
            args.append(item_id)
        if batch_id is not None:
            sql += " AND batch_id=?"
            args.append(batch_id)
        with self._tx() as con:
            return con.execute(sql, args).rowcount

    def undo(self, item_id: str, batch_id: str, annotator: str) -> dict[str, Any]:
        """Withdraw ``annotator``'s answer to an item and hand the item back to them.

        For a slip of the finger: the answer is deleted (the item is pending again unless
        someone else answered it too) and the item is claimed for the same person, so
        the page can show it again. Returns the item without its AI label.
        """
        now = time.time()
        with self._tx() as con:
            row = con.execute("SELECT * FROM items WHERE batch_id=? AND item_id=?",
                              (batch_id, item_id)).fetchone()
            if row is None:
                raise UnknownBatchError(f"item {item_id!r} is not in annotation batch {batch_id!r}")
            gone = con.execute("DELETE FROM answers WHERE batch_id=? AND item_id=? AND annotator=?",
                               (batch_id, item_id, annotator)).rowcount
            if not gone:
                raise UnknownBatchError(f"{annotator!r} has no answer to item {item_id!r} in "
                                        f"batch {batch_id!r} to undo")
            con.execute(
                "INSERT OR REPLACE INTO claims(batch_id, item_id, annotator, claimed_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (batch_id, item_id, annotator, now, now + self.claim_timeout_s))
        return self._item_row(row, with_ai=False)

    def submit(self, item_id: str, batch_id: str, label: str, annotator: str,
               comment: str | None = None, seconds: float | None = None,
               source: str = "web") -> dict[str, Any]:
        """Record (or replace) ``annotator``'s answer; returns the item with its AI label.

        The AI label and rationale come back only now, after the person has answered.
        """
        if label not in ANSWERS:
            raise ValueError(f"label {label!r} for item {item_id!r} must be one of {ANSWERS}")
        if not annotator:
            raise ValueError("annotator must be a non-empty string")
        if seconds is not None and (seconds != seconds or seconds < 0):
            raise ValueError(f"seconds for item {item_id!r} must be >= 0, got {seconds!r}")
        with self._tx() as con:
            row = con.execute("SELECT * FROM items WHERE batch_id=? AND item_id=?",
                              (batch_id, item_id)).fetchone()
            if row is None:
                raise UnknownBatchError(f"item {item_id!r} is not in annotation batch {batch_id!r}")
            con.execute(
                "INSERT INTO answers(batch_id, item_id, annotator, label, comment, seconds,"
                " source, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(batch_id, item_id, annotator) DO UPDATE SET label=excluded.label,"
                " comment=excluded.comment, seconds=excluded.seconds, source=excluded.source,"
                " answered_at=excluded.answered_at",
                (batch_id, item_id, annotator, label, comment, seconds, source, time.time()))
            con.execute("DELETE FROM claims WHERE batch_id=? AND item_id=?", (batch_id, item_id))
        out = self._item_row(row, with_ai=True)
        out["label"] = label
        return out

    def import_labels(self, batch_id: str, rows: list[Mapping[str, Any]],
                      default_annotator: str = "import", source: str = "import") -> int:
        """Load answers made elsewhere (Label Studio, Argilla, a CSV); all-or-nothing.

        Each row needs ``id`` and ``label`` (A/B/tie/skip); ``annotator``, ``comment`` and
        ``seconds`` are optional. A bad row fails the whole import, naming the row.
        """
        with self._tx(write=False) as con:
            self._check_batch(con, batch_id)
            known = {r[0] for r in con.execute(
                "SELECT item_id FROM items WHERE batch_id=?", (batch_id,))}
        clean = []
        for i, r in enumerate(rows):
            rid, lab = r.get("id"), r.get("label")
            if rid not in known:
                raise ValueError(f"import row {i}: id {rid!r} is not in batch {batch_id!r}")
            if r.get("batch_id") and r["batch_id"] != batch_id:
                raise ValueError(f"import row {i} (id {rid!r}) belongs to batch "
                                 f"{r['batch_id']!r}, not {batch_id!r}")
            if lab not in ANSWERS:
                raise ValueError(f"import row {i} (id {rid!r}): label {lab!r} must be one of "
                                 f"{ANSWERS}")
            secs = r.get("seconds")
            clean.append((rid, lab, str(r.get("annotator") or default_annotator),
                          r.get("comment"), None if secs is None else float(secs)))
        now = time.time()
        with self._tx() as con:
            for rid, lab, ann, comment, secs in clean:
                con.execute(
                    "INSERT INTO answers(batch_id, item_id, annotator, label, comment, seconds,"
                    " source, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(batch_id, item_id, annotator) DO UPDATE SET"
                    " label=excluded.label, comment=excluded.comment, seconds=excluded.seconds,"
                    " source=excluded.source, answered_at=excluded.answered_at",
                    (batch_id, rid, ann, lab, comment, secs, source, now))
                con.execute("DELETE FROM claims WHERE batch_id=? AND item_id=?", (batch_id, rid))
        return len(clean)

    # -- reading -------------------------------------------------------------------------
    def batches(self) -> list[str]:
        with self._tx(write=False) as con:
            return [r[0] for r in con.execute(
                "SELECT batch_id FROM batches ORDER BY created_at, batch_id")]

    def items(self, batch_id: str, with_ai: bool = True) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            self._check_batch(con, batch_id)
            rows = con.execute("SELECT * FROM items WHERE batch_id=? ORDER BY position",
                               (batch_id,)).fetchall()
        return [self._item_row(r, with_ai=with_ai) for r in rows]

    def answers(self, batch_id: str) -> list[dict[str, Any]]:
        """Every answer row (one per item and annotator), oldest first."""
        with self._tx(write=False) as con:
            self._check_batch(con, batch_id)
            return [dict(r) for r in con.execute(
                "SELECT * FROM answers WHERE batch_id=? ORDER BY answered_at, item_id, annotator",
                (batch_id,))]

    def final_answers(self, batch_id: str) -> dict[str, str]:
        """Item id -> final answer (A/B by majority of A/B votes, else tie/skip)."""
        votes: dict[str, list[str]] = {}
        for a in self.answers(batch_id):
            votes.setdefault(a["item_id"], []).append(a["label"])
        out = {}
        for item_id, labs in votes.items():
            na, nb = labs.count("A"), labs.count("B")
            if na > nb:
                out[item_id] = "A"
            elif nb > na:
                out[item_id] = "B"
            elif na:  # an even A/B split: people disagree, so no label
                out[item_id] = "tie"
            else:
                out[item_id] = "tie" if "tie" in labs else "skip"
        return out

    def labels(self, batch_id: str) -> dict[str, Label]:
        """The A/B labels of the batch; ties and skips are left out."""
        return {k: v for k, v in self.final_answers(batch_id).items() if v in ("A", "B")}  # type: ignore[misc]

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        """Progress of a batch, and how often people agreed with the AI label."""
        items = self.items(batch_id, with_ai=True)
        final = self.final_answers(batch_id)
        now = time.time()
        with self._tx(write=False) as con:
            claimed = con.execute(
                "SELECT COUNT(*) FROM claims WHERE batch_id=? AND expires_at>=?",
                (batch_id, now)).fetchone()[0]
            annotators = [r[0] for r in con.execute(
                "SELECT DISTINCT annotator FROM answers WHERE batch_id=? ORDER BY annotator",
                (batch_id,))]
        counts = {k: 0 for k in ANSWERS}
        for v in final.values():
            counts[v] += 1
        ai = {it["id"]: it["ai_label"] for it in items}
        compared = [(final[i], ai[i]) for i in final if final[i] in ("A", "B") and ai.get(i) in ("A", "B")]
        agree = sum(1 for h, a in compared if h == a)
        total = len(items)
        return {
            "batch_id": batch_id, "total": total, "answered": len(final),
            "pending": total - len(final), "claimed": claimed, "counts": counts,
            "complete": total > 0 and len(final) == total,
            "agreement_with_ai": (agree / len(compared)) if compared else None,
            "compared_with_ai": len(compared), "annotators": annotators,
        }

    def status(self) -> list[dict[str, Any]]:
        return [self.batch_status(b) for b in self.batches()]


class QueueAnnotator:
    """Real people behind the queue, as the RLTHF driver's ``HumanAnnotator``.

    ``request_labels`` enqueues the batch (idempotent) and returns None until every item
    has a final answer; the driver persists its state and asks again later.
    """

    simulated = False

    def __init__(self, queue: AnnotationQueue, name: str = "human-queue"):
        self.queue = queue
        self.name = name

    def request_labels(self, batch_id: str, items: list[PairwiseItem],
                       ai_labels: dict[str, Label],
                       rationales: dict[str, str] | None = None) -> dict[str, Label] | None:
        if not items:
            return {}
        self.queue.enqueue(batch_id, items, ai_labels, rationales)
        if not self.queue.batch_status(batch_id)["complete"]:
            return None
        return self.queue.labels(batch_id)
