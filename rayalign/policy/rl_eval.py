"""Held-out check of an RL run: the RM's reward of a policy's answers, before vs after.

Greedy decoding (deterministic, so "before" and "after" differ only by the weights), the
same reward source the run trained against, prompts the trainer never saw. Small by design
(a few dozen prompts in the driver process): the run report's sanity check, not a benchmark
harness — best-of-N and RM-based evaluation at scale live in ``policy/best_of_n.py`` /
``policy/rm_eval.py``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rayalign.rewards.trl_reward import RewardSourceConfig, RMRewardFunction


def greedy_completions(model_dir: str, prompts: Sequence[str], max_new_tokens: int,
                       batch_size: int = 8) -> list[str]:
    """Greedy continuations of ``prompts`` (text only, prompt stripped)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out: list[str] = []
    for s in range(0, len(prompts), batch_size):
        enc = tok(list(prompts[s:s + batch_size]), return_tensors="pt", padding=True)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        out += tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def policy_reward(model_dir: str, prompts: Sequence[str], reward: RewardSourceConfig,
                  max_new_tokens: int, scorer: RMRewardFunction | None = None) -> dict[str, Any]:
    """Mean/std RM reward of the policy's greedy answers to ``prompts``."""
    completions = greedy_completions(model_dir, prompts, max_new_tokens)
    scorer = scorer or RMRewardFunction(reward)
    rewards = np.asarray(scorer.score_texts(list(prompts), completions), dtype=float)
    return {"n": len(prompts), "reward_mean": float(rewards.mean()) if len(rewards) else None,
            "reward_std": float(rewards.std()) if len(rewards) else None,
            "rewards": rewards.tolist(), "completions": completions}


def win_rate(after: Sequence[float], before: Sequence[float]) -> float:
    """Share of prompts whose answer the RM scores higher after RL (ties count half)."""
    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    return float(np.mean((a > b) + 0.5 * (a == b))) if len(a) else float("nan")
