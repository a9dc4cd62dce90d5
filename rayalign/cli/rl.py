"""``rayalign rl``: online RL (GRPO / RLOO) of a policy against a reward model, on Ray Train."""

from __future__ import annotations

import argparse
import json

from rayalign.cli.common import check_run_mode, resolve_config_path


def _rl(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.rl_config import RLJobConfig
    from rayalign.policy.rl_job import run_rl_job
    from rayalign.runs import RunDir

    cfg = load_config(RLJobConfig, args.config, args.overrides)
    if cfg.reward.model_dir:  # relative to the working dir, else to the config file
        cfg.reward.model_dir = resolve_config_path(cfg.reward.model_dir, args.config)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="rl", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    prompts = resolve_config_path(cfg.prompts.path, args.config) if cfg.prompts.path else None
    summary = run_rl_job(cfg, run, prompts, resolve_config_path(cfg.model, args.config))
    from rayalign.reports.rl_report import report_rl_run

    report = report_rl_run(run.path)
    run.finish(model_dir=summary["model_dir"], report=str(report))
    print(json.dumps({k: summary[k] for k in ("model_dir", "steps", "heldout_reward_before",
                                              "heldout_reward_after", "heldout_win_rate")}))
    return 0


def add_rl(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_rl)
