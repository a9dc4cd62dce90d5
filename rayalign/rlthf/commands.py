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
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if not line.strip() or line in rows_seen:
            continue
        rows_seen.add(line)
        r = json.loads(line)
        if r.get("kind") == "iteration":
            console.print(
                f"[bold]iteration {r['iteration']}[/]: human labels {r['human_count']} "
                f"({r['human_pct']:.1f}% of corpus) | curated-label acc {_pct(r.get('curated_acc'))} | "
                f"RM test acc {_pct(r.get('rm_test_acc'))} | flips {r.get('flips', '-')}")
        elif r.get("kind") == "baseline":
            console.print(f"baseline {r['method']:<10} human {r['human_pct']:.1f}% | curated-label acc "
                          f"{_pct(r.get('curated_acc'))} | RM test acc {_pct(r.get('rm_test_acc'))}")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _summary_table(console, summary: dict) -> None:
    from rich.table import Table

    gt = summary.get("ground_truth") or "unknown"
    sim = []
    if summary.get("simulated_labeller"):
        sim.append("AI labels: SIMULATED labeller")
    if summary.get("simulated_human"):
        sim.append("human labels: SIMULATED human (replays ground truth)")
    if summary.get("recorded_human"):
        sim.append(f"human labels: RECORDED human votes ({summary['recorded_human']})")
    t = Table(title=f"RLTHF results (ground truth: {gt}; {'; '.join(sim) or 'real labellers'})")
    for col in ("method", "iteration", "human %", "curated-label acc", "RM test acc", "flips (right)"):
        t.add_column(col, justify="right")
    for r in summary["iterations"]:
        flips = "-" if "flips" not in r else f"{r['flips']} ({r.get('flips_correct', '?')})"
        t.add_row("rlthf", str(r["iteration"]), f"{r['human_pct']:.1f}", _pct(r.get("curated_acc")),
                  _pct(r.get("rm_test_acc")), flips)
    for r in summary["baselines"]:
        t.add_row(r["method"], "", f"{r['human_pct']:.1f}", _pct(r.get("curated_acc")),
                  _pct(r.get("rm_test_acc")), "")
    console.print(t)
    fin = summary.get("final") or {}
    if fin.get("relabel_acc") is not None:
        console.print(f"final RM relabelled {fin['pairs']} train pairs: accuracy {_pct(fin['relabel_acc'])} "
                      f"-> {summary['run_dir']}/final/relabelled_trl.jsonl (TRL format, for DPO)")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rayalign.ray_utils import init_ray
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import HumanLabelsPending, RLTHFLoop, remote_driver

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
