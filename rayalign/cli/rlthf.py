"""``rayalign rlthf run``: the RLTHF loop as a Ray actor, with live progress."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rayalign.cli.common import check_run_mode
from rayalign.config import load_config


def add_run(run: argparse.ArgumentParser) -> None:
    run.add_argument("--in-process", action="store_true",
                     help="run the driver in this process instead of a Ray actor (debugging)")
    run.add_argument("--no-cache", action="store_true",
                     help="do not read or write the cross-run cache of embeddings and judgments "
                          "(~/.cache/rayalign or $RAYALIGN_CACHE_DIR); the run dir's own cache stays")
    run.set_defaults(func=_run)


def _print_progress(console, rows_seen: set, run_dir: Path) -> None:
    from rayalign.rlthf.progress import format_baseline, format_iteration
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


def _summary_table(console, summary: dict) -> None:
    from rich.table import Table

    from rayalign.rlthf.records import BaselineRow, IterationRow
    from rayalign.rlthf.results import pct, results_table

    gt = summary.get("ground_truth") or "unknown"
    sim = []
    if summary.get("simulated_labeller"):
        sim.append("AI labels: SIMULATED labeller")
    if summary.get("simulated_human"):
        sim.append("human labels: SIMULATED human (replays ground truth)")
    if summary.get("recorded_human"):
        sim.append(f"human labels: RECORDED human votes ({summary['recorded_human']})")
    headers, rows = results_table([IterationRow.model_validate(r) for r in summary["iterations"]],
                                  [BaselineRow.model_validate(r) for r in summary["baselines"]])
    t = Table(title=f"RLTHF results (ground truth: {gt}; {'; '.join(sim) or 'real labellers'})")
    for col in headers:
        t.add_column(col, justify="right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    for line in summary.get("flip_gates", []):
        console.print(line, markup=False, highlight=False)
    fin = summary.get("final") or {}
    if fin.get("written_acc") is not None:
        console.print(f"DPO corpus: {fin['pairs']} train pairs ({fin['labels']}), accuracy "
                      f"{pct(fin['written_acc'])}; on the loop's shard {pct(fin.get('written_acc_shard'))} vs "
                      f"curated labels {pct(fin.get('curated_acc'))} (final RM alone: {pct(fin.get('rm_only_acc'))}) "
                      f"-> {summary['run_dir']}/final/relabelled_trl.jsonl (TRL format, for DPO)")


def _run(args: argparse.Namespace) -> int:
    from rayalign.output import console as make_console
    from rayalign.output import is_terminal
    from rayalign.ray_utils import init_ray
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.humans.ledger import HumanLabelsPending
    from rayalign.rlthf.driver import RLTHFLoop

    console = make_console()
    cfg = load_config(RLTHFConfig, args.config, args.overrides)
    from rayalign.cache import from_env

    # The environment is read here, on the user's machine, not in the driver actor.
    cfg.cache = from_env(cfg.cache.model_copy(update={"enabled": False}) if args.no_cache else cfg.cache)
    run_dir = Path(args.run_dir or cfg.run_dir or Path("runs") / cfg.name)
    check_run_mode(args.run_mode, run_dir)
    console.print(f"[bold]rayalign rlthf[/] {cfg.name}: run directory {run_dir}")
    t0 = time.time()
    cfg.data.preflight()  # validate what can be validated before any actor starts
    if cfg.labeller.kind == "judge" and cfg.labeller.judge is not None:
        cfg.labeller.judge.preflight()
    init_ray(cfg.ray)
    try:
        if args.in_process:
            summary = RLTHFLoop(cfg, run_dir).run_loop()
        else:
            import ray

            # Each event is printed once, here, from metrics.jsonl: the actor's own INFO
            # lines stay out of the terminal (warnings still come through).
            from rayalign.output import quiet_actor

            driver = ray.remote(num_cpus=0)(quiet_actor(RLTHFLoop)).remote(cfg, str(run_dir))
            ref = driver.run_loop.remote()
            seen: set = set()
            status = console.status("RLTHF loop running") if is_terminal() else None
            if status is not None:
                status.start()
            try:
                while True:
                    done, _ = ray.wait([ref], timeout=2.0)
                    _print_progress(console, seen, run_dir)
                    if done:
                        break
            finally:
                if status is not None:
                    status.stop()
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
    from rayalign.reports.rlthf_report import write_report

    report = write_report(run_dir)
    console.print(f"done in {time.time() - t0:.0f}s; report: {report}")
    return 0
