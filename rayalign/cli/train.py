"""``rayalign sft`` and ``rayalign dpo``: training jobs from a YAML config.

Extending: other policy commands live in their own module with a ``register(subparsers)``
(``rayalign align`` is ``rayalign/policy/align_commands.py``, listed in ``rayalign/cli.py``);
modules listed in ``EXTENSION_MODULES`` here are registered too, skipped if not written yet.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Policy sub-commands owned by other modules; add a module name here, nothing else.
# (align_commands is not listed: rayalign/cli.py registers it directly.)
EXTENSION_MODULES: list[str] = []


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="job YAML (see jobs/configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.beta=0.2 (repeatable)")
    p.add_argument("--run-dir", default=None, help="override the config's run_dir")


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


def _load_pairs(path: str, limit: int | None):
    from rayalign.data.loaders import load_any

    pairs = list(load_any(path))
    return pairs[:limit] if limit else pairs


def _resolve(path: str, config_path: str) -> str:
    """Data/model paths in a config are relative to the config file's folder, or absolute."""
    from rayalign.config import resolve_path
    from rayalign.models.registry import is_named_spec

    if is_named_spec(path):
        return path
    p = resolve_path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    return str(resolve_path(path, Path(config_path).parent))


def cmd_sft(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.sft import run_sft
    from rayalign.training.config import SFTJobConfig
    from rayalign.runs import RunDir

    cfg = load_config(SFTJobConfig, args.config, args.overrides)
    run = RunDir.create_or_open(args.run_dir or cfg.run_dir, job="sft", config=cfg)
    examples = _load_sft_examples(_resolve(cfg.data.path, args.config), cfg.data.limit)
    model = run_sft(examples, _resolve(cfg.model, args.config), run.path, cfg.train,
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
    run = RunDir.create_or_open(args.run_dir or cfg.run_dir, job="dpo", config=cfg)
    pairs = _load_pairs(_resolve(cfg.data.path, args.config), cfg.data.limit)
    model = run_dpo(pairs, _resolve(cfg.model, args.config), run.path, cfg.train,
                    ray_cfg=cfg.ray)
    run.mark_done("dpo", model_dir=str(model), pairs=len(pairs))
    run.finish(model_dir=str(model))
    print(json.dumps({"model_dir": str(model)}))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sft", help="supervised fine-tuning (TRL SFTTrainer on Ray Train)")
    _add_common(p)
    p.set_defaults(func=cmd_sft)
    p = subparsers.add_parser("dpo", help="DPO training (TRL DPOTrainer on Ray Train)")
    _add_common(p)
    p.set_defaults(func=cmd_dpo)
    for name in EXTENSION_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(subparsers)
