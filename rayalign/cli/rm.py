"""``rayalign rm train`` / ``rayalign rm score``: the LoRA reward model as CLI jobs."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pydantic import Field

from rayalign.config import RayConfig, StrictModel
from rayalign.training.config import DataSource
from rayalign.rewards.lora import LoraRMConfig

log = logging.getLogger(__name__)


class RMTrainJobConfig(StrictModel):
    """`rayalign rm train --config`: preference data in, a trained LoRA RM out."""

    data: DataSource
    eval_data: DataSource | None = None
    run_dir: str = "runs/rm"
    rm: LoraRMConfig = Field(default_factory=LoraRMConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


def cmd_train(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.policy.commands import _load_pairs, _resolve
    from rayalign.rewards.lora import train_lora_rm
    from rayalign.runs import RunDir

    cfg = load_config(RMTrainJobConfig, args.config, args.overrides)
    if cfg.rm.base_model != "tiny":
        cfg.rm.base_model = _resolve(cfg.rm.base_model, args.config)
    run = RunDir.create_or_open(args.run_dir or cfg.run_dir, job="rm_train", config=cfg)
    pairs = _load_pairs(_resolve(cfg.data.path, args.config), cfg.data.limit)
    eval_pairs = (_load_pairs(_resolve(cfg.eval_data.path, args.config), cfg.eval_data.limit)
                  if cfg.eval_data else None)
    model = train_lora_rm(pairs, cfg.rm, run.path, eval_pairs=eval_pairs, ray_cfg=cfg.ray)
    if eval_pairs:
        from rayalign.rewards.scoring import score_pairs

        r = score_pairs(model, [p.to_pairwise(True) for p in eval_pairs],
                        batch_size=cfg.rm.score_batch_size, num_actors=cfg.rm.score_actors)
        acc = float((r[:, 0] > r[:, 1]).mean())
        run.log_metrics(step="rm_eval", eval_accuracy=acc, eval_pairs=len(eval_pairs))
        print(f"held-out preference accuracy: {acc:.3f} on {len(eval_pairs)} pairs")
    run.mark_done("rm_train", model_dir=str(model), pairs=len(pairs))
    run.finish(model_dir=str(model))
    print(json.dumps({"model_dir": str(model)}))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rayalign.data.loaders import load_any
    from rayalign.rewards.scoring import score_pairs
    from rayalign.runs import write_jsonl

    pairs = list(load_any(args.data))
    items = [p.to_pairwise(True) if hasattr(p, "chosen") else p for p in pairs]
    r = score_pairs(Path(args.model_dir), items, batch_size=args.batch_size,
                    num_actors=args.num_actors)
    rows = [{"id": it.id, "reward_a": float(a), "reward_b": float(b), "margin": float(a - b)}
            for it, (a, b) in zip(items, r)]
    write_jsonl(Path(args.out), rows)
    labelled = [(it.label, row) for it, row in zip(items, rows) if it.label in ("A", "B")]
    if labelled:
        acc = sum((row["margin"] > 0) == (lab == "A") for lab, row in labelled) / len(labelled)
        print(f"preference accuracy vs labels: {acc:.3f} on {len(labelled)} pairs")
    print(json.dumps({"scored": len(rows), "out": args.out}))
    return 0


def register(subparsers) -> None:
    rm = subparsers.add_parser("rm", help="LoRA reward model: train on Ray Train, score with Ray Data")
    sub = rm.add_subparsers(dest="rm_command", metavar="<rm command>")
    p = sub.add_parser("train", help="train a LoRA Bradley-Terry RM (TRL RewardTrainer)")
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-dir", default=None)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("score", help="score preference pairs with a trained RM (JSONL out)")
    p.add_argument("--model-dir", required=True, help="a trained RM directory (…/model)")
    p.add_argument("--data", required=True, help="preference JSONL (TRL standard) or HH file")
    p.add_argument("--out", required=True, help="output JSONL: id, reward_a, reward_b, margin")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-actors", type=int, default=1)
    p.set_defaults(func=cmd_score)
    rm.set_defaults(func=lambda a: (rm.print_help(), 0)[1])
