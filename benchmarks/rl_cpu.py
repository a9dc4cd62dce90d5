"""GRPO on CPU against the RLTHF embedding-head RM: reward before/after, KL, s/step Ray Train vs plain TRL.

Policy: SmolLM2-135M-Instruct (``smollm2`` in ``rayalign.models.registry``). Reward: the
embedding-head RM the RLTHF quick start writes (``runs/quickstart/final/rm``; ``--rm``). Prompts:
the bundled HH-RLHF harmless prompts (seeded shuffle; ``--eval-prompts`` held out, the rest the
training pool, prompts over ``--max-prompt-tokens`` left out as ``rayalign rl`` does).

The same GRPO job (same trainer factory, same TRL arguments, same prompts, same seed) runs twice
in this process: through rayalign (``policy.rl.run_rl``: a Ray Train ``TorchTrainer`` worker,
checkpoints, final export) and as plain single-process TRL (``GRPOTrainer.train()``). Columns:

* s/step: median of TRL's own per-step ``step_time`` (generation + reward + update);
* wall s: the whole training call (rayalign includes the worker group start and the export);
* train reward: TRL's logged batch reward, mean of the first 2 vs the last 2 steps;
* KL: TRL's logged KL to the starting policy at the last step (``beta`` > 0);
* held-out reward: greedy answers to the held-out prompts scored by the RM, before and after,
  and the after-vs-before win rate under the RM.

Run (the measured command is in benchmarks/README.md):
    python benchmarks/rl_cpu.py --rm runs/quickstart/final/rm --steps 8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain_trl(job: dict, cfg, out_dir: Path) -> tuple[list[dict], float, Path]:
    """The same GRPO job as plain TRL in this process: (log history, wall s, model dir)."""
    from rayalign.policy.rl import build_rl_trainer
    from rayalign.training.ray_train import base_training_args
    from rayalign.training.worker import load_tokenizer

    tok = load_tokenizer(job["model_path"])
    args = {"output_dir": str(out_dir / "work"), **base_training_args(cfg, cfg.scaling),
            "save_strategy": "no"}
    trainer, _ = build_rl_trainer({**job, "lora": None}, tok, args, [])
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    model_dir = out_dir / "model"
    trainer.save_model(str(model_dir))
    tok.save_pretrained(model_dir)
    return trainer.state.log_history, wall, model_dir


def summarize(history: list[dict]) -> dict:
    steps = [r for r in history if "reward" in r]
    times = [r["step_time"] for r in steps if "step_time" in r]
    first = [r["reward"] for r in steps[:2]]
    last = [r["reward"] for r in steps[-2:]]
    return {"steps": len(steps), "s_per_step": statistics.median(times) if times else None,
            "reward_first": sum(first) / len(first) if first else None,
            "reward_last": sum(last) / len(last) if last else None,
            "kl_last": steps[-1].get("kl") if steps else None,
            "length_last": steps[-1].get("completions/mean_length") if steps else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm", default="runs/quickstart/final/rm", help="reward model directory")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="completions per step")
    ap.add_argument("--max-completion", type=int, default=32)
    ap.add_argument("--max-prompt-tokens", type=int, default=128)
    ap.add_argument("--train-prompts", type=int, default=64)
    ap.add_argument("--eval-prompts", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep outputs here (default: a temp dir)")
    ap.add_argument("--skip-plain", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rayalign.config import RayConfig
    from rayalign.evaluation.tables import markdown_table
    from rayalign.policy.rl import keep_short_prompts, run_rl, rl_trainer_kwargs  # noqa: F401
    from rayalign.policy.rl_config import PromptSource, RLTrainConfig
    from rayalign.policy.rl_eval import policy_reward, win_rate
    from rayalign.policy.rl_job import load_rl_prompts, split_prompts
    from rayalign.rewards.trl_reward import RewardSourceConfig, RMRewardFunction
    from rayalign.training.config import TrainScaling
    from rayalign.training.ray_train import resolve_model_dir

    out = Path(args.out or tempfile.mkdtemp(prefix="rl_cpu_bench-"))
    reward = RewardSourceConfig(model_dir=str(Path(args.rm).resolve()))
    src = PromptSource(bundled="hh_rlhf_harmless", limit=None, eval_prompts=args.eval_prompts)
    base = resolve_model_dir(args.model)
    pool, heldout = split_prompts(load_rl_prompts(src), src, args.seed)
    heldout, _ = keep_short_prompts(base, heldout, args.max_prompt_tokens)
    train, _ = keep_short_prompts(base, pool[:args.train_prompts * 3], args.max_prompt_tokens)
    train = train[:args.train_prompts]
    cfg = RLTrainConfig(max_steps=args.steps, learning_rate=args.lr, beta=args.beta,
                        num_generations=args.num_generations, effective_batch_size=args.batch,
                        per_device_batch_size=args.batch, max_completion_length=args.max_completion,
                        max_prompt_length=args.max_prompt_tokens, checkpoint_every_steps=args.steps,
                        seed=args.seed, scaling=TrainScaling(num_workers=1))
    scorer = RMRewardFunction(reward)
    t0 = time.perf_counter()
    before = policy_reward(base, heldout, reward, args.max_completion, scorer)
    eval_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ray_model = run_rl(train, base, out / "rayalign", cfg, reward, ray_cfg=RayConfig())
    ray_wall = time.perf_counter() - t0
    ray_hist = json.loads((ray_model / "rl_log_history.json").read_text())
    ray_after = policy_reward(str(ray_model), heldout, reward, args.max_completion, scorer)

    rows = []

    def row(name, hist, wall, after, ratio=""):
        s = summarize(hist)
        rows.append({"runner": name, "steps": s["steps"], "s/step": s["s_per_step"],
                     "wall s": wall, "train reward first 2 -> last 2":
                         f"{s['reward_first']:.3f} -> {s['reward_last']:.3f}",
                     "KL (last step)": s["kl_last"], "completion len": s["length_last"],
                     "held-out reward before": before["reward_mean"],
                     "held-out reward after": after["reward_mean"],
                     "win rate vs before": win_rate(after["rewards"], before["rewards"]),
                     "plain / rayalign s/step": ratio})
        # Saved and shown as soon as measured: on a loaded machine the second runner may not finish.
        (out / "rl_cpu.json").write_text(json.dumps(rows, indent=1, default=str))
        print(markdown_table(rows[-1:]), flush=True)
        return s

    rs = row("rayalign (Ray Train, 1 worker)", ray_hist, ray_wall, ray_after)
    if not args.skip_plain:
        job = {"model_path": base, "prompts": train, "reward": reward.model_dump(),
               **cfg.model_dump(include={"algorithm", "max_steps", "beta", "num_generations",
                                         "max_completion_length", "temperature", "top_p", "use_vllm",
                                         "vllm_mode", "vllm_gpu_memory_utilization",
                                         "vllm_server_base_url"})}
        hist, wall, model = plain_trl(job, cfg, out / "plain")
        after = policy_reward(str(model), heldout, reward, args.max_completion, scorer)
        ps = summarize(hist)
        ratio = (f"{ps['s_per_step'] / rs['s_per_step']:.2f}x"
                 if ps["s_per_step"] and rs["s_per_step"] else "")
        row("plain TRL (1 process)", hist, wall, after, ratio)
    print(f"\nGRPO, {args.model} policy, RM {args.rm}, {len(train)} train / {len(heldout)} held-out "
          f"HH prompts, {args.steps} steps x {args.batch} completions ({args.num_generations} per "
          f"prompt), lr {args.lr}, beta {args.beta}, max {args.max_completion} new tokens; "
          f"held-out eval {eval_s:.0f} s per policy\n")
    print(markdown_table(rows))
    (out / "rl_cpu.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"\noutputs: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
