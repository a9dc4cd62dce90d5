"""``rayalign sft`` and ``rayalign dpo``: training jobs from a YAML config."""

from __future__ import annotations

import argparse
import json
import logging

from rayalign.cli.common import check_run_mode, load_pairs, resolve_config_path

log = logging.getLogger(__name__)

def _load_sft_examples(path: str, limit: int | None) -> list[dict]:
    from rayalign.data.errors import DataError
    from rayalign.data.loaders import iter_json_rows

    out = []
    for row, line, obj in iter_json_rows(path):
        if isinstance(obj, DataError):
            raise obj
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) \
                or not isinstance(obj.get("completion"), str):
            raise DataError(path, "expected an object with string 'prompt' and 'completion'",
                            row=row, line=line)
        out.append({"prompt": obj["prompt"], "completion": obj["completion"]})
        if limit and len(out) >= limit:
            break
    return out


def cmd_sft(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.sft import run_sft
    from rayalign.training.config import SFTJobConfig
    from rayalign.runs import RunDir

    cfg = load_config(SFTJobConfig, args.config, args.overrides)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="sft", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    examples = _load_sft_examples(resolve_config_path(cfg.data.path, args.config), cfg.data.limit)
    model = run_sft(examples, resolve_config_path(cfg.model, args.config), run.path, cfg.train,
                    ray_cfg=cfg.ray)
    run.mark_done("sft", model_dir=str(model), examples=len(examples))
    run.finish(model_dir=str(model))
    print(json.dumps({"model_dir": str(model)}))
    return 0


def cmd_dpo(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.dpo import run_dpo
    from rayalign.training.config import DPOJobConfig
    from rayalign.runs import RunDir

    cfg = load_config(DPOJobConfig, args.config, args.overrides)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="dpo", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    pairs = load_pairs(resolve_config_path(cfg.data.path, args.config), cfg.data.limit)
    model = run_dpo(pairs, resolve_config_path(cfg.model, args.config), run.path, cfg.train,
                    ray_cfg=cfg.ray)
    run.mark_done("dpo", model_dir=str(model), pairs=len(pairs))
    run.finish(model_dir=str(model))
    print(json.dumps({"model_dir": str(model)}))
    return 0


def add_sft(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_sft)


def add_dpo(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_dpo)
