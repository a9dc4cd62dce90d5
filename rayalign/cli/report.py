"""``rayalign report --run <dir>``: rebuild a run's report from its directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    from rayalign.reports.rlthf_report import write_report

    run = Path(args.run)
    if not (run / "manifest.json").is_file() and not (run / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run} is not a rayalign run directory (no manifest.json "
                                "or metrics.jsonl)")
    out = write_report(run)
    print(f"report: {out}")
    print(f"markdown: {out.with_name('report.md')}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a run's report (self-contained HTML + Markdown)")
    p.add_argument("--run", required=True, help="run directory (runs/<name>)")
    p.set_defaults(func=cmd_report)
