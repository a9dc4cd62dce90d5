"""``rayalign align --recipe self-reward|teacher-reward|teacher-demo|sft --config ...``."""

from __future__ import annotations

import argparse
import json

from rayalign.config import load_config

RECIPES = ("self-reward", "teacher-reward", "teacher-demo", "sft")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align", help="self-reward / teacher-reward / teacher-demo DPO loops (M1 -> M2 -> M3)",
        description="Run (or resume) an iterated DPO loop. An existing run directory with the "
                    "same config is resumed at its last finished step.")
    p.add_argument("--recipe", choices=RECIPES,
                   help="overrides the config's `recipe` (sft = only the M0 -> M1 stage)")
    p.add_argument("--config", required=True, help="YAML config (see jobs/configs/align_*.yaml)")
    p.add_argument("--run-dir", help="run directory (default: the config's run_dir)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set iterations=1 (repeatable)")
    p.add_argument("--in-process", action="store_true",
                   help="run the driver in this process instead of a Ray actor (debugging)")
    p.add_argument("--no-resume", action="store_true",
                   help="refuse to continue an existing run directory")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rayalign.policy.align_config import AlignConfig
    from rayalign.policy.driver import run_align

    overrides = list(args.overrides)
    if args.recipe:
        overrides.append(f"recipe={args.recipe}")
    cfg = load_config(AlignConfig, args.config, overrides)
    summary = run_align(cfg, args.run_dir, use_actor=not args.in_process,
                        resume=not args.no_resume)
    print(json.dumps(summary, indent=2))
    return 0
