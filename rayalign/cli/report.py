"""``rayalign report --run-dir <dir>``: rebuild a run's report from its directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from rayalign.cli.common import add_run_dir_argument


def cmd_report(args: argparse.Namespace) -> int:
    from rayalign.reports.rlthf_report import write_report

    run = Path(args.run_dir)
    if not (run / "manifest.json").is_file() and not (run / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run} is not a rayalign run directory (no manifest.json "
                                "or metrics.jsonl)")
    out = write_report(run)
    print(f"report: {out}")
    print(f"markdown: {out.with_name('report.md')}")
    return 0


def add_report(p: argparse.ArgumentParser) -> None:
    add_run_dir_argument(p)
    p.set_defaults(func=cmd_report)
