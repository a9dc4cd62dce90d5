"""``rayalign cai --config``: Constitutional AI — SL-CAI critique/revision data (and, optionally,
the SL-CAI model), then AI preference labels judged against the principles.

Writes into the run directory (see ``rayalign.policy.constitution``): ``sl/records.jsonl``
(every critique and revision with its principle), ``sl_cai_sft.jsonl`` (for ``rayalign sft``)
and ``preferences.jsonl`` (for ``rayalign rm train``, ``rayalign dpo``, ``rayalign rlthf run``).
Rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rayalign.cli.common import check_run_mode, resolve_config_path


def add_cai(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.cai_config import CAIConfig
    from rayalign.policy.constitution import run_cai
    from rayalign.policy.principles import BUNDLED_PREFIX

    cfg = load_config(CAIConfig, args.config, args.overrides)
    updates = {}
    if not cfg.constitution.startswith(BUNDLED_PREFIX):
        updates["constitution"] = str(Path(resolve_config_path(cfg.constitution, args.config)).resolve())
    if not cfg.prompts.source.startswith("bundled:"):
        updates["prompts"] = cfg.prompts.model_copy(
            update={"source": str(Path(resolve_config_path(cfg.prompts.source, args.config)).resolve())})
    cfg = cfg.model_copy(update=updates)
    run_dir = args.run_dir or cfg.run_dir
    resume = check_run_mode(args.run_mode, run_dir)
    if cfg.fanout.enabled or cfg.sft.enabled:
        from rayalign.ray_utils import init_ray

        init_ray(cfg.ray)
    summary = run_cai(cfg, run_dir, resume=resume)
    print(json.dumps(summary, indent=2))
    return 0
