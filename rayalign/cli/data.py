"""``rayalign data inspect <path>``: what a data file holds before a job spends time on it.

Shows the detected kind, row and record counts, the raw fields with their types, a few
records (text truncated) and every bad row with its reason.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from typing import Any



def _truncate(s: Any, n: int) -> str:
    s = s if isinstance(s, str) else json.dumps(s, ensure_ascii=False)
    s = s.replace("\n", "⏎ ")
    return s if len(s) <= n else s[: n - 1] + "…"


def raw_field_types(path: str, limit: int | None = None) -> dict[str, Counter]:
    """Field name -> Counter of JSON type names over the file's rows (bad JSON rows ignored)."""
    from rayalign.data.rows import iter_table_rows

    types: dict[str, Counter] = defaultdict(Counter)
    for i, (_row, _line, obj) in enumerate(iter_table_rows(path)):
        if limit is not None and i >= limit:
            break
        if isinstance(obj, dict):
            for k, v in obj.items():
                types[k][type(v).__name__ if v is not None else "null"] += 1
    return dict(types)


def inspect_data(path: str, kind: str = "auto", skip_bad_rows: bool = False) -> dict[str, Any]:
    """Load ``path`` and return a JSON-able summary (used by the CLI and by tests)."""
    from rayalign.data.pairs import detect, load_records, resolve_path

    path = str(resolve_path(path))
    kind = detect(path) if kind == "auto" else kind
    records = load_records(path, kind, skip_bad_rows=skip_bad_rows)
    rep = records.report
    return {
        "path": str(path), "kind": kind, "rows_read": rep.rows_read, "records": len(records),
        "skipped": rep.skipped, "notes": rep.notes,
        "bad_rows": [str(b) for b in rep.bad_rows],
        "fields": {k: dict(v) for k, v in raw_field_types(path).items()},
        "record_type": type(records[0]).__name__ if records else None,
        "records_list": records,
    }


def _print(summary: dict[str, Any], sample: int, width: int) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    head = Table(title=f"{summary['path']}", show_header=False)
    head.add_row("kind", summary["kind"])
    head.add_row("rows read", str(summary["rows_read"]))
    head.add_row(f"records ({summary['record_type']})", str(summary["records"]))
    head.add_row("bad rows skipped", str(summary["skipped"]))
    for k, v in sorted(summary["notes"].items()):
        head.add_row(f"note: {k}", str(v))
    con.print(head)

    fields = Table(title="raw fields")
    fields.add_column("field")
    fields.add_column("types (rows)")
    for k, v in summary["fields"].items():
        fields.add_row(k, ", ".join(f"{t}: {n}" for t, n in v.items()))
    con.print(fields)

    recs = summary["records_list"][:sample]
    if recs:
        cols = [c for c in recs[0].model_dump() if c not in ("meta",)]
        t = Table(title=f"sample ({len(recs)} of {summary['records']})")
        for c in cols:
            t.add_column(c, overflow="fold", max_width=width)
        for r in recs:
            d = r.model_dump()
            t.add_row(*[_truncate(d[c], width) if d[c] is not None else "" for c in cols])
        con.print(t)

    if summary["bad_rows"]:
        bad = Table(title="bad rows")
        bad.add_column("where / why")
        for b in summary["bad_rows"]:
            bad.add_row(b)
        con.print(bad)


def cmd_inspect(args: argparse.Namespace) -> int:
    # Inspection is a diagnosis: by default every bad row is listed (jobs still stop at the
    # first one unless told otherwise); --strict shows what a job would say.
    from rayalign.data.pairs import LABEL_FORMAT_TO_KIND

    kind = LABEL_FORMAT_TO_KIND.get(args.kind, args.kind)  # rayalign label's names work too
    summary = inspect_data(args.path, kind, skip_bad_rows=not args.strict)
    if args.json:
        out = {k: v for k, v in summary.items() if k != "records_list"}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print(summary, args.sample, args.width)
    return 0


def add_inspect(p: argparse.ArgumentParser) -> None:
    from rayalign.data.pairs import ALL_KINDS, LABEL_FORMAT_TO_KIND

    p.add_argument("path", help="JSONL(.gz) / JSON / Parquet file or a saved HF dataset directory")
    p.add_argument("--kind", default="auto", choices=("auto",) + ALL_KINDS + tuple(LABEL_FORMAT_TO_KIND),
                   help="data format (default: detected from the first row)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first malformed row, as a job without skip_bad_rows does "
                        "(default: count and list every bad row)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="kept for compatibility: listing bad rows is the default")
    p.add_argument("--sample", type=int, default=3, help="records to show (default 3)")
    p.add_argument("--width", type=int, default=60, help="characters per text cell (default 60)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)
