"""``rayalign rlthf run``: the RLTHF loop as a Ray actor, with live progress."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rayalign.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rlthf", help="RLTHF: targeted human feedback for reward models")
    ps = p.add_subparsers(dest="rlthf_command", metavar="<subcommand>")
    run = ps.add_parser("run", help="run (or resume) the RLTHF loop from a YAML config")
    run.add_argument("--config", required=True, help="YAML config (see jobs/configs/quickstart.yaml)")
    run.add_argument("--run-dir", help="run directory (default: runs/<name>); an existing one is resumed")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field, e.g. --set iterations=4 (repeatable)")
    run.add_argument("--in-process", action="store_true",
                     help="run the driver in this process instead of a Ray actor (debugging)")
    run.set_defaults(func=_run)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def _print_progress(console, rows_seen: set, run_dir: Path) -> None:
    from rayalign.rlthf.driver import format_baseline, format_iteration
    from rayalign.rlthf.records import BaselineRow, IterationRow, parse_metric

    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if not line.strip() or line in rows_seen:
            continue
        rows_seen.add(line)
        r = parse_metric(json.loads(line))
        if isinstance(r, IterationRow):
            console.print(format_iteration(r), markup=False, highlight=False)
        elif isinstance(r, BaselineRow):
            console.print(format_baseline(r), markup=False, highlight=False)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _pts(v) -> str:
    return "" if v is None else f"{100 * v:+.1f}"


def _summary_table(console, summary: dict) -> None:
    from rich.table import Table

    from rayalign.rlthf.accounting import roi
    from rayalign.rlthf.records import BaselineRow, IterationRow

    gt = summary.get("ground_truth") or "unknown"
    sim = []
    if summary.get("simulated_labeller"):
        sim.append("AI labels: SIMULATED labeller")
    if summary.get("simulated_human"):
        sim.append("human labels: SIMULATED human (replays ground truth)")
    if summary.get("recorded_human"):
        sim.append(f"human labels: RECORDED human votes ({summary['recorded_human']})")
    t = Table(title=f"RLTHF results (ground truth: {gt}; {'; '.join(sim) or 'real labellers'})")
    for col in ("method", "iteration", "human %", "RM test acc", "curated-label acc", "gain: flips (free)",
                "gain: humans (paid)", "ROI humans (pts/1%)", "flips (right)"):
        t.add_column(col, justify="right")
    for r in map(IterationRow.model_validate, summary["iterations"]):
        flips = "-" if r.flips is None else f"{r.flips} ({r.flips_correct if r.flips_correct is not None else '?'})"
        t.add_row("RLTHF" if r.apply_flips else "RLTHF without flips", str(r.iteration), f"{r.human_pct:.1f}",
                  _pct(r.rm_test_acc), _pct(r.curated_acc), _pts(r.gain_from_flips), _pts(r.gain_from_humans),
                  _num(roi(r.gain_from_humans, r.human_pct)), flips)
    for r in map(BaselineRow.model_validate, summary["baselines"]):
        t.add_row(r.method, "", f"{r.human_pct:.1f}", _pct(r.rm_test_acc), _pct(r.curated_acc),
                  _pts(r.gain_from_flips), _pts(r.gain_from_humans), _num(roi(r.gain_from_humans, r.human_pct)),
                  "" if not r.flips else str(r.flips))
    console.print(t)
    fin = summary.get("final") or {}
    if fin.get("written_acc") is not None:
        console.print(f"DPO corpus: {fin['pairs']} train pairs ({fin['labels']}), accuracy "
                      f"{_pct(fin['written_acc'])}; on the loop's shard {_pct(fin.get('written_acc_shard'))} vs "
                      f"curated labels {_pct(fin.get('curated_acc'))} (final RM alone: {_pct(fin.get('rm_only_acc'))}) "
                      f"-> {summary['run_dir']}/final/relabelled_trl.jsonl (TRL format, for DPO)")


def _num(v) -> str:
    return "" if v is None else f"{v:+.2f}"


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rayalign.ray_utils import init_ray
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.humans.ledger import HumanLabelsPending
    from rayalign.rlthf.driver import RLTHFLoop, remote_driver

    console = Console()
    cfg = load_config(RLTHFConfig, args.config, args.overrides)
    run_dir = Path(args.run_dir or cfg.run_dir or Path("runs") / cfg.name)
    console.print(f"[bold]rayalign rlthf[/] {cfg.name}: run directory {run_dir}")
    t0 = time.time()
    init_ray(cfg.ray)
    try:
        if args.in_process:
            summary = RLTHFLoop(cfg, run_dir).run_loop()
        else:
            import ray

            driver = remote_driver().remote(cfg, str(run_dir))
            ref = driver.run_loop.remote()
            seen: set = set()
            while True:
                done, _ = ray.wait([ref], timeout=2.0)
                _print_progress(console, seen, run_dir)
                if done:
                    break
            summary = ray.get(ref)
    except HumanLabelsPending as err:
        console.print(f"[yellow]{err}[/]")
        return 3
    except Exception as err:  # surface the actor's own error, not Ray's wrapper
        cause = getattr(err, "cause", None)
        if isinstance(cause, HumanLabelsPending):
            console.print(f"[yellow]{cause}[/]")
            return 3
        if isinstance(cause, (ValueError, FileNotFoundError)):
            raise cause from None
        raise
    _summary_table(console, summary)
    console.print(f"done in {time.time() - t0:.0f}s; report: {run_dir}/report.html")
    return 0
