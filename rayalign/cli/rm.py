"""``rayalign rm train`` / ``rayalign rm score``: the LoRA reward model as CLI jobs."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rayalign.cli.common import check_run_mode, load_pairs, resolve_config_path

log = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.rewards.lora import RMTrainJobConfig, train_lora_rm
    from rayalign.runs import RunDir

    cfg = load_config(RMTrainJobConfig, args.config, args.overrides)
    cfg.rm.base_model = resolve_config_path(cfg.rm.base_model, args.config)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="rm_train", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    pairs = load_pairs(resolve_config_path(cfg.data.path, args.config), cfg.data.limit)
    eval_pairs = (load_pairs(resolve_config_path(cfg.eval_data.path, args.config), cfg.eval_data.limit)
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


def add_train(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_train)


def add_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", required=True, help="a trained RM directory (…/model)")
    p.add_argument("--data", required=True, help="preference JSONL (TRL standard) or HH file")
    p.add_argument("--out", required=True, help="output JSONL: id, reward_a, reward_b, margin")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-actors", type=int, default=1)
    p.set_defaults(func=cmd_score)
