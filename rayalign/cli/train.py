"""``rayalign sft`` and ``rayalign dpo``: training jobs from a YAML config."""

from __future__ import annotations

import argparse
import json
import logging

from rayalign.cli.common import check_run_mode, load_pairs, resolve_config_path

log = logging.getLogger(__name__)

def _load_sft_examples(path: str, limit: int | None) -> list[dict]:
    from rayalign.data.errors import DataError
    from rayalign.data.rows import iter_json_rows

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


def _train(args: argparse.Namespace, job: str) -> int:
    """Shared body of ``sft`` and ``dpo``: config -> run directory -> data -> model."""
    from rayalign.config import load_config
    from rayalign.runs import RunDir
    from rayalign.training.config import DPOJobConfig, SFTJobConfig

    cfg = load_config(SFTJobConfig if job == "sft" else DPOJobConfig, args.config, args.overrides)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job=job, config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    data = resolve_config_path(cfg.data.path, args.config)
    model_spec = resolve_config_path(cfg.model, args.config)
    if job == "sft":
        from rayalign.policy.sft import run_sft

        rows = _load_sft_examples(data, cfg.data.limit)
        model = run_sft(rows, model_spec, run.path, cfg.train, ray_cfg=cfg.ray)
    else:
        from rayalign.policy.dpo import run_dpo

        rows = load_pairs(data, cfg.data.limit)
        model = run_dpo(rows, model_spec, run.path, cfg.train, ray_cfg=cfg.ray)
    run.mark_done(job, model_dir=str(model), **{"examples" if job == "sft" else "pairs": len(rows)})
    run.finish(model_dir=str(model))
    print(json.dumps({"model_dir": str(model)}))
    return 0


def add_sft(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=lambda a: _train(a, "sft"))


def add_dpo(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=lambda a: _train(a, "dpo"))
