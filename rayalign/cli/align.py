"""``rayalign align --recipe self-reward|teacher-reward|teacher-demo|sft --config ...``: the
M1 -> M2 -> M3 loop; an existing run directory with the same config resumes at its last step."""

from __future__ import annotations

import argparse
import json

from rayalign.cli.common import check_run_mode
from rayalign.config import load_config

RECIPES = ("self-reward", "teacher-reward", "teacher-demo", "sft")


def add_align(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=RECIPES,
                   help="overrides the config's `recipe` (sft = only the M0 -> M1 stage)")
    p.add_argument("--in-process", action="store_true",
                   help="run the driver in this process instead of a Ray actor (debugging)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rayalign.policy.align_config import AlignConfig
    from rayalign.policy.driver import run_align

    overrides = list(args.overrides)
    if args.recipe:
        overrides.append(f"recipe={args.recipe}")
    cfg = load_config(AlignConfig, args.config, overrides)
    resume = check_run_mode(args.run_mode, args.run_dir or cfg.run_dir)
    summary = run_align(cfg, args.run_dir, use_actor=not args.in_process, resume=resume)
    print(json.dumps(summary, indent=2))
    return 0
