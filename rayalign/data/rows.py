"""Rows of a data file, read with their coordinates: the shared layer under every loader.

Each reader yields ``(row, line, object)`` — or a ``DataError`` naming file, row and line
in place of an unreadable row — so a loader can refuse or count any bad row precisely.
``RowError(field, reason)`` is what a row parser raises; ``load_rows`` turns it into a
``DataError`` with file, row, line and field.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rayalign.data.errors import DataError, LoadReport, Records

T = TypeVar("T")

HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"


# --------------------------------------------------------------------------- raw rows

def _open_bytes(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decode(raw: bytes, path: Path, row: int | None, line: int) -> str | DataError:
    """One line's text, or a ``DataError`` naming the row, line and byte (bad UTF-8).

    WHY per line: one stray byte must cost that row, named, not the whole file.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                         row=row, line=line)


def iter_json_rows(path: str | os.PathLike) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(row, line, obj)`` for a JSON Lines file (optionally gzipped) or a JSON array.

    ``row`` is the 0-based index among data rows, ``line`` the 1-based line number (blank
    lines are not rows). A line that is not valid JSON or not valid UTF-8 yields a
    ``DataError`` *object* in place of ``obj`` so that callers can decide between raising
    and skipping.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file: {p}")
    if p.is_dir():
        raise DataError(p, "is a directory, expected a JSONL/JSON/Parquet file")
    name = p.name.removesuffix(".gz")
    try:
        with _open_bytes(p) as f:
            if name.endswith(".json"):
                raw = f.read()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(p, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})",
                                    line=raw.count(b"\n", 0, e.start) + 1) from None
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DataError(p, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
                if not isinstance(data, list):
                    raise DataError(p, f"a .json data file must hold a list of rows, got {type(data).__name__}")
                for i, obj in enumerate(data):
                    yield i, None, obj
                return
            row = 0
            for lineno, raw_line in enumerate(f, start=1):
                if not raw_line.strip():
                    continue
                line = _decode(raw_line, p, row, lineno)
                if isinstance(line, DataError):
                    yield row, lineno, line
                    row += 1
                    continue
                try:
                    obj: Any = json.loads(line)
                except json.JSONDecodeError as e:
                    obj = DataError(p, f"invalid JSON ({e.msg}, column {e.colno})", row=row, line=lineno)
                yield row, lineno, obj
                row += 1
    except (OSError, EOFError) as e:  # bad gzip, truncated file
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(p, f"cannot read file: {e}") from None


def load_rows(path: str | os.PathLike, kind: str, parse: Callable[[dict[str, Any], int], T | None],
               skip_bad_rows: bool, rows: Iterator[tuple[int, int | None, Any]] | None = None) -> Records[T]:
    """Drive a per-row parser over a file: error or record every bad row; refuse empty files.

    ``parse(obj, row)`` returns a record, or ``None`` for nothing to emit, and raises
    ``RowError(field, reason)`` for a bad row.
    """
    report = LoadReport(path=str(path), kind=kind)
    out: Records[T] = Records(report=report)
    for row, line, obj in (rows if rows is not None else iter_json_rows(path)):
        report.rows_read += 1
        err: DataError | None = None
        if isinstance(obj, DataError):
            err = obj
        elif not isinstance(obj, dict):
            err = DataError(path, f"expected a JSON object, got {type(obj).__name__}", row=row, line=line)
        else:
            try:
                rec = parse(obj, row)
            except RowError as e:
                err = DataError(path, e.reason, row=row, line=line, field=e.field)
            else:
                if rec is not None:
                    out.append(rec)
        if err is not None:
            if not skip_bad_rows:
                raise err
            report.add_bad(err)
    if report.rows_read == 0:
        raise DataError(path, "file is empty (no rows)")
    report.loaded = len(out)
    return out


class RowError(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def req_str(obj: dict[str, Any], field: str, *, allow_empty: bool = True) -> str:
    if field not in obj:
        raise RowError(field, f"missing field (row has: {', '.join(sorted(obj)) or 'nothing'})")
    v = obj[field]
    if not isinstance(v, str):
        raise RowError(field, f"expected a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise RowError(field, "is empty")
    return v


def req_number(obj: dict[str, Any], field: str, *, nullable: bool = False) -> float | None:
    if field not in obj:
        raise RowError(field, "missing field")
    v = obj[field]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RowError(field, f"expected a finite number, got {v!r}")
    return float(v)


def split_hh_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two HH-RLHF dialogues into (prompt, chosen reply, rejected reply).

    The prompt is everything up to and including the last ``"\\n\\nAssistant:"`` marker that
    lies inside the prefix the two dialogues share; the replies are what follows it, with
    leading whitespace removed. Raises ``RowError`` for a row that is not a preference.
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) == len(rejected):
        raise RowError("chosen,rejected", "chosen and rejected dialogues are identical")
    k = chosen.rfind(HH_ASSISTANT, 0, n)
    # The marker must lie entirely inside the shared prefix.
    while k >= 0 and k + len(HH_ASSISTANT) > n:
        k = chosen.rfind(HH_ASSISTANT, 0, k)
    if k < 0:
        raise RowError("chosen,rejected", f"no shared {HH_ASSISTANT.strip()!r} turn: cannot split prompt from replies")
    cut = k + len(HH_ASSISTANT)
    prompt, a, b = chosen[:cut], chosen[cut:].lstrip(), rejected[cut:].lstrip()
    if not a.strip():
        raise RowError("chosen", "final assistant reply is empty")
    if not b.strip():
        raise RowError("rejected", "final assistant reply is empty")
    if a.strip() == b.strip():
        raise RowError("chosen,rejected", "final assistant replies are identical (up to whitespace)")
    return prompt, a, b


def _is_hf_dataset_dir(p: Path) -> bool:
    return p.is_dir() and any((p / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def iter_table_rows(path: str | os.PathLike, split: str | None = None) -> Iterator[tuple[int, int | None, Any]]:
    """Rows of any supported container: JSONL(.gz) / JSON / Parquet / HF ``save_to_disk`` dir."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file or directory: {p}")
    if p.is_dir():
        if not _is_hf_dataset_dir(p):
            raise DataError(p, "directory is not a saved HF dataset (no dataset_info.json / "
                               "state.json / dataset_dict.json); pass a file or a save_to_disk() directory")
        import datasets

        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            names = list(ds.keys())
            if split is None and len(names) == 1:
                split = names[0]
            if split not in ds:
                raise DataError(p, f"dataset has splits {names}; choose one with split=")
            ds = ds[split]
        for i, row in enumerate(ds):
            yield i, None, row
        return
    if p.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(p, f"cannot read Parquet: {e}") from None
        for i, row in enumerate(table.to_pylist()):
            yield i, None, row
        return
    yield from iter_json_rows(p)
