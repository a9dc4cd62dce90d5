"""Online RL against a reward model: TRL ``GRPOTrainer`` / ``RLOOTrainer`` under Ray Train.

Same shape as ``policy/dpo.py``: a trainer factory for the generic worker loop
(``training.worker.trl_train_loop``) and a driver that hands it to ``training.ray_train.train_job``
— N workers, checkpoints every ``checkpoint_every_steps``, ``FailureConfig`` restarts, a rerun
with the same output directory resumes from the latest checkpoint, LoRA optional, the result a
plain ``from_pretrained`` directory (LoRA merged).

The reward is :class:`rayalign.rewards.trl_reward.RMRewardFunction`: a local RM directory (the
embedding-head RM RLTHF writes, or a sequence-classification RM) loaded inside each worker, or
a ``rayalign rm serve`` endpoint over HTTP. A failing endpoint fails the step with an error
naming the URL — the checkpoint taken before it is what a rerun resumes from.

Generation is TRL's: the policy in-process (``model.generate``) on CPU, vLLM on GPU
(``use_vllm``). TRL logs reward mean/std, KL and completion length every step; the final model
directory carries that log (``rl_log_history.json``) so the driver can write it into the run
dir even when the workers ran on other nodes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from rayalign.config import RayConfig
from rayalign.policy.rl_config import RLTrainConfig
from rayalign.rewards.trl_reward import RewardSourceConfig
from rayalign.training.ray_train import gradient_accumulation, is_final_model, resolve_model_dir, train_job
from rayalign.training.worker import causal_lm_final_builder, peft_lora_config

log = logging.getLogger(__name__)

RL_META = "rayalign_rl.json"
LOG_HISTORY = "rl_log_history.json"


def rl_trainer_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The RL-specific TRL config kwargs (same names in GRPOConfig and RLOOConfig)."""
    out = {k: cfg[k] for k in ("beta", "num_generations", "max_completion_length", "temperature",
                               "top_p", "use_vllm")}
    if cfg["use_vllm"]:
        out["vllm_mode"] = cfg["vllm_mode"]
        out["vllm_gpu_memory_utilization"] = cfg["vllm_gpu_memory_utilization"]
        if cfg.get("vllm_server_base_url"):
            out["vllm_server_base_url"] = cfg["vllm_server_base_url"]
    return out


def build_rl_trainer(cfg: dict[str, Any], tok, args: dict[str, Any], callbacks: list):
    """Trainer factory for ``training.worker.trl_train_loop``: GRPO or RLOO, LoRA optional."""
    import datasets
    from transformers import AutoModelForCausalLM

    from rayalign.rewards.trl_reward import RMRewardFunction

    if cfg["algorithm"] == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    args = {**args, "max_steps": cfg["max_steps"] or -1}
    args.pop("per_device_eval_batch_size", None)  # no eval set; TRL checks it against the group
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(cfg["model_path"]),
        reward_funcs=RMRewardFunction(cfg["reward"]),
        args=Config(**rl_trainer_kwargs(cfg), **args),
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in cfg["prompts"]]),
        processing_class=tok, callbacks=callbacks,
        peft_config=peft_lora_config(cfg.get("lora"), "CAUSAL_LM"))
    model_final = causal_lm_final_builder(cfg["model_path"], tok, bool(cfg.get("lora")))

    def make_final(saved: Path, final: Path) -> None:
        model_final(saved, final)
        # Per-step metrics travel with the model (the driver may be on another node).
        (Path(final) / LOG_HISTORY).write_text(json.dumps(trainer.state.log_history, default=str))

    return trainer, make_final


def keep_short_prompts(model_dir: str, prompts: Sequence[str], max_tokens: int) -> tuple[list[str], int]:
    """Prompts of at most ``max_tokens`` tokens (TRL 1.16 does not cut prompts), and how many
    were left out."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    kept = [p for p in prompts if len(tok(p)["input_ids"]) <= max_tokens]
    return kept, len(prompts) - len(kept)


def check_group_shape(cfg: RLTrainConfig) -> None:
    """TRL's constraint, said up front: each generation batch holds whole groups."""
    per_step = cfg.per_device_batch_size * cfg.scaling.num_workers * gradient_accumulation(
        cfg, cfg.scaling.num_workers)
    if per_step % cfg.num_generations:
        raise ValueError(
            f"train: per_device_batch_size x num_workers x gradient accumulation = {per_step} "
            f"completions per step is not a multiple of num_generations={cfg.num_generations}; "
            "choose effective_batch_size / per_device_batch_size so it is")


def run_rl(prompts: Sequence[str], model_path: str | Path, output_dir: Path, cfg: RLTrainConfig,
           reward: RewardSourceConfig, ray_cfg: RayConfig | None = None, *,
           _fail_at_step: int | None = None) -> Path:
    """Optimise ``model_path`` against ``reward`` on ``prompts``; return the model directory.

    Idempotent and resumable like every training job: ``output_dir/model`` is returned at once
    when finished; an interrupted run (killed worker, failed RM endpoint) continues from its
    latest checkpoint when called again with the same ``output_dir``.
    """
    model_dir = Path(output_dir).resolve() / "model"
    if is_final_model(model_dir) and (model_dir / RL_META).is_file():
        return model_dir
    check_group_shape(cfg)
    base = resolve_model_dir(model_path)
    kept, dropped = keep_short_prompts(base, list(dict.fromkeys(prompts)), cfg.max_prompt_length)
    if dropped:
        log.warning("RL: %d of %d prompts are longer than max_prompt_length=%d tokens and were "
                    "left out", dropped, dropped + len(kept), cfg.max_prompt_length)
    if not kept:
        raise ValueError(f"RL: no prompt fits max_prompt_length={cfg.max_prompt_length} tokens")
    if reward.model_dir:  # fail here, not in every worker
        from rayalign.rewards.sources import rm_kind

        reward = reward.model_copy(update={"model_dir": str(Path(reward.model_dir).resolve())})
        rm_kind(reward.model_dir)
    job = {"model_path": base, "prompts": kept, "reward": reward.model_dump(),
           **cfg.model_dump(include={"algorithm", "max_steps", "beta", "num_generations",
                                     "max_completion_length", "temperature", "top_p", "use_vllm",
                                     "vllm_mode", "vllm_gpu_memory_utilization",
                                     "vllm_server_base_url"})}
    return train_job(
        "rl", build_rl_trainer, job, cfg, cfg.scaling, cfg.lora, output_dir, RL_META,
        {"kind": "rl", "algorithm": cfg.algorithm, "base_model": base, "num_prompts": len(kept),
         "skipped_long_prompts": dropped, "reward": reward.model_dump(mode="json"),
         "config": cfg.model_dump(mode="json")},
        ray_cfg=ray_cfg, fail_at_step=_fail_at_step)


def step_metrics(model_dir: Path) -> list[dict[str, Any]]:
    """One row per logged training step: reward mean/std, KL, completion length, loss."""
    p = Path(model_dir) / LOG_HISTORY
    if not p.is_file():
        return []
    keys = {"reward": "reward", "reward_std": "reward_std", "kl": "kl", "loss": "loss",
            "completions/mean_length": "completion_length", "entropy": "entropy",
            "learning_rate": "learning_rate"}
    rows = []
    for row in json.loads(p.read_text()):
        if "reward" not in row:
            continue  # the closing summary row (train_runtime, ...)
        rows.append({"step": int(row.get("step", len(rows) + 1)),
                     **{out: row[k] for k, out in keys.items() if k in row}})
    return rows
