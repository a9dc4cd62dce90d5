"""Data errors and load reports.

WHY: the codebase rule is "bad input -> an error naming file, row and field; nothing silently
dropped". ``DataError`` carries exactly those three facts, and ``LoadReport`` is the ledger a
loader keeps when the caller opts into ``skip_bad_rows``: every skipped row is listed with its
reason, so a skip is always visible (in ``rayalign data inspect`` and in run logs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, TypeVar

T = TypeVar("T")


class DataError(ValueError):
    """A malformed file or row. The message names the file, the row (0-based data row and
    1-based line where known) and the field."""

    def __init__(self, path: str | os.PathLike | None, reason: str, *, row: int | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(self._format())

    def __reduce__(self):  # picklable (Ray ships exceptions between processes)
        return (_rebuild_data_error, (self.path, self.reason, self.row, self.line, self.field))

    def _format(self) -> str:
        where = [f"file {self.path}" if self.path else "<in-memory rows>"]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line else ""))
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field {self.field!r}")
        return ", ".join(where) + f": {self.reason}"


def _rebuild_data_error(path, reason, row, line, field) -> DataError:
    return DataError(path, reason, row=row, line=line, field=field)


@dataclass
class BadRow:
    """One row a loader refused, and why."""

    row: int | None
    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        loc = f"row {self.row}" if self.row is not None else f"line {self.line}"
        return f"{loc}, field {self.field!r}: {self.reason}" if self.field else f"{loc}: {self.reason}"


@dataclass
class LoadReport:
    """What a loader read: rows seen, records produced, rows skipped (with reasons), notes."""

    path: str
    kind: str
    rows_read: int = 0
    loaded: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    #: ids of pairs read but not loaded (no majority, duplicates...): recorded verdicts may name them
    dropped_ids: list[str] = field(default_factory=list)

    def add_bad(self, err: DataError) -> None:
        self.bad_rows.append(BadRow(err.row, err.line, err.field, err.reason))

    def note(self, key: str, n: int = 1) -> None:
        """Count a non-fatal observation (e.g. multi-turn continuations, tie judgments)."""
        self.notes[key] = self.notes.get(key, 0) + n

    @property
    def skipped(self) -> int:
        return len(self.bad_rows)

    def summary(self) -> str:
        s = f"{self.kind} {self.path}: {self.rows_read} rows read, {self.loaded} loaded, {self.skipped} skipped"
        if self.notes:
            s += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.notes.items())) + ")"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "rows_read": self.rows_read,
            "loaded": self.loaded, "skipped": self.skipped, "notes": dict(self.notes),
            "bad_rows": [b.__dict__ for b in self.bad_rows],
            **({"dropped_pair_ids": list(self.dropped_ids)} if self.dropped_ids else {}),
        }


class Records(list, Generic[T]):
    """A plain list of records that also carries the ``LoadReport`` of the load that made it.

    WHY a list subclass: callers mostly want the records (``for p in load_hh_rlhf(...)``);
    the report rides along as ``.report`` without changing the return type to a tuple.
    Slicing returns a plain list (the report describes the whole load, not a slice).
    """

    report: LoadReport

    def __init__(self, items: Iterable[T] = (), report: LoadReport | None = None) -> None:
        super().__init__(items)
        self.report = report if report is not None else LoadReport(path="", kind="")
