"""The human ledger (every label people gave, append-only) and the wait for a human batch.

Why append-only: a human label is the one thing a run pays for in people's time. The
ledger line is written the moment an answer reaches the loop, before anything else uses
it, so a crash afterwards never costs that label again; a rerun asks only for pairs that
have no line yet. Ties and skips get a line too (``label: null``): the look was paid for
and the pair must never be asked again.

Waiting is bounded by default: people may take hours, and a loop that blocks forever
without saying how far they got looks hung. The wait prints ``answered/total`` when it
changes (and at least every ``progress_every_s``), and on timeout stops with
``HumanLabelsPending`` and how to continue; the loop's state is on disk, so rerunning
the same command resumes exactly there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from rayalign.data.schema import Label, PairwiseItem
from rayalign.humans.base import HumanAnnotator
from rayalign.runs import append_jsonl, read_jsonl

log = logging.getLogger("rayalign.humans")


class HumanLabelsPending(RuntimeError):
    """A human batch is not finished; the run stops cleanly and a rerun continues it."""


class HumanLabelRow(BaseModel):
    """One line of ``humans/labels.jsonl`` (and of each iteration's ``human_labels.jsonl``)."""

    model_config = ConfigDict(extra="ignore")
    id: str
    label: Label | None = None   # None: the person saw the pair and answered tie/skip
    batch: str
    annotator: str
    simulated: bool = False


class HumanLedger:
    """``humans/labels.jsonl``: read it whole, append to it, never rewrite it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, HumanLabelRow]:
        if not self.path.is_file():
            return {}
        return {r["id"]: HumanLabelRow.model_validate(r) for r in read_jsonl(self.path)}

    def answers(self) -> dict[str, Label]:
        """The A/B answers only (ties and skips carry no label)."""
        return {i: r.label for i, r in self.load().items() if r.label in ("A", "B")}

    def append(self, rows: Sequence[HumanLabelRow]) -> None:
        append_jsonl(self.path, rows)


def batch_progress(human: HumanAnnotator, batch_id: str, total: int) -> tuple[int | None, int]:
    """(answered, total) of a batch, where the annotator can tell (a queue can; others: None)."""
    progress = getattr(human, "progress", None)
    if callable(progress):
        return progress(batch_id)
    queue = getattr(human, "queue", None)
    if queue is not None and hasattr(queue, "batch_status"):
        st = queue.batch_status(batch_id)
        return int(st["answered"]), int(st["total"]) or total
    return None, total


def wait_for_batch(human: HumanAnnotator, batch_id: str, items: list[PairwiseItem],
                   ai_labels: dict[str, Label], rationales: dict[str, str] | None, *,
                   poll_seconds: float, timeout_s: float | None, progress_every_s: float,
                   how_to_answer: str, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, Label]:
    """The batch's answers, polling ``human`` until it has them or ``timeout_s`` passes."""
    got = human.request_labels(batch_id, items, ai_labels, rationales)
    start = last_line = clock()
    last_count: int | None = -1
    while got is None:
        answered, total = batch_progress(human, batch_id, len(items))
        done = "?" if answered is None else str(answered)
        waited = clock() - start
        if timeout_s is not None and waited >= timeout_s:
            raise HumanLabelsPending(
                f"human batch {batch_id}: {done}/{total} answered after waiting {waited:.0f}s "
                f"(human.wait_timeout_s={timeout_s:g}). Nothing is lost: {how_to_answer}, then rerun "
                "the same command to continue (set human.wait_timeout_s higher, or null to wait "
                "without limit)")
        if answered != last_count or clock() - last_line >= progress_every_s:
            log.info("waiting for humans: batch %s %s/%s answered (%.0fs so far; %s)",
                     batch_id, done, total, waited, how_to_answer)
            last_count, last_line = answered, clock()
        sleep(poll_seconds)
        got = human.request_labels(batch_id, items, ai_labels, rationales)
    return got


def ask_humans(ledger: HumanLedger, human: HumanAnnotator, batch_id: str, ids: Sequence[str],
               items_by_id: dict[str, PairwiseItem], ai_labels: dict[str, Label],
               rationales: dict[str, str], **wait: object) -> dict[str, HumanLabelRow]:
    """Ledger rows for ``ids``; only pairs without a line are asked, and answers are
    appended before they are returned."""
    have = ledger.load()
    missing = [i for i in ids if i not in have]
    if missing:
        got = wait_for_batch(human, batch_id, [items_by_id[i] for i in missing],
                             {i: ai_labels[i] for i in missing},
                             {i: rationales[i] for i in missing if i in rationales}, **wait)  # type: ignore[arg-type]
        rows = [HumanLabelRow(id=i, label=got.get(i), batch=batch_id, annotator=human.name,
                              simulated=bool(getattr(human, "simulated", False))) for i in missing]
        ledger.append(rows)
        have.update({r.id: r for r in rows})
    return {i: have[i] for i in ids if i in have}
