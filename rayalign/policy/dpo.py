"""DPO (TRL ``DPOTrainer``) under Ray Train, LoRA optional, DeepSpeed by config switch.

Reference model handling is TRL's: with LoRA there is no second copy — the reference is the
same weights with the adapter disabled; without LoRA TRL loads a frozen copy of the starting
model. The result is always a plain ``AutoModelForCausalLM`` directory (LoRA merged), so the
next stage (generation, evaluation, the next M_t of self-reward) loads it like any model.

Paper defaults (self-learning / teacher-guided DPO): lr 1e-6, beta 0.1.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rayalign import train_utils as tu
from rayalign.config import RayConfig
from rayalign.data.schema import PreferencePair
from rayalign.policy.train_config import DPOTrainConfig
from rayalign.runs import atomic_write_json

log = logging.getLogger(__name__)

DPO_META = "rayalign_dpo.json"


def _dpo_worker(cfg: dict[str, Any]) -> None:
    import tempfile

    import datasets
    import torch
    from peft import LoraConfig, TaskType
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rank, world = tu.worker_setup()
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg["torch_threads"]))
    holder, resume_from, final_ckpt = tu.resume_checkpoint_dir()
    if final_ckpt is not None:
        tu.rereport_final(rank, final_ckpt)
        return
    base = cfg["model_path"]
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    ds = datasets.Dataset.from_list(cfg["rows"])
    workdir = tempfile.mkdtemp(prefix=f"rayalign-dpo-rank{rank}-")
    args = DPOConfig(
        output_dir=workdir, beta=cfg["beta"], max_length=cfg["max_length"],
        truncation_mode=cfg["truncation_mode"], loss_type=[cfg["loss_type"]],
        **cfg["training_args"])
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = cfg.get("lora")
    peft_config = None
    if lora:
        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora["r"], lora_alpha=lora["alpha"],
                                 lora_dropout=lora["dropout"], target_modules=lora["target_modules"])
    trainer = DPOTrainer(
        model=model, ref_model=None, args=args, train_dataset=ds, processing_class=tok,
        peft_config=peft_config,
        callbacks=[RayTrainReportCallback(),
                   tu.make_fault_callback(cfg.get("fail_at_step"), holder is None, rank)])
    trainer = prepare_trainer(trainer)
    resumed_step = tu.checkpoint_step(resume_from)
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    metrics = tu.summarize_log_history(trainer.state.log_history)
    metrics.update({"train_seconds_this_attempt": time.perf_counter() - t0,
                    "global_step": trainer.state.global_step, "world_size": world, "peak_mem_bytes": tu.peak_memory_bytes(),
                    "resumed_from_step": resumed_step, "train_loss": out.training_loss})
    tu.save_and_report_final(trainer, rank, tu.causal_lm_final_builder(base, tok, bool(lora)),
                             metrics)
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def run_dpo(pairs: Sequence[PreferencePair], model_path: str | Path, output_dir: Path,
            cfg: DPOTrainConfig, ray_cfg: RayConfig | None = None, *,
            _fail_at_step: int | None = None) -> Path:
    """DPO-train ``model_path`` on ``pairs``; return a ``from_pretrained`` model directory.

    Idempotent and resumable like every training job: ``output_dir/model`` is returned at
    once when finished; an interrupted run continues from its latest checkpoint.
    """
    import os

    output_dir = Path(output_dir).resolve()
    model_dir = output_dir / "model"
    if tu.is_final_model(model_dir) and (model_dir / DPO_META).is_file():
        log.info("DPO already finished: %s", model_dir)
        return model_dir
    if not pairs:
        raise ValueError("run_dpo: no preference pairs")
    base = tu.resolve_model_dir(model_path)
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    dropped: list[int] = []
    if cfg.truncation_mode == "keep_start":
        dropped = tu.count_too_long_prompts(base, [r["prompt"] for r in rows], cfg.max_length)
        if dropped:
            ids = ", ".join(pairs[i].id for i in dropped[:5])
            log.warning("DPO: %d of %d pairs have prompts of >= max_length=%d tokens; TRL skips "
                        "them (first ids: %s). Raise max_length to keep them.",
                        len(dropped), len(rows), cfg.max_length, ids)
            if len(dropped) == len(rows):
                raise ValueError(f"DPO: every prompt is >= max_length={cfg.max_length} tokens")
    loop_cfg = {
        "model_path": base, "rows": rows, "beta": cfg.beta, "max_length": cfg.max_length,
        "truncation_mode": cfg.truncation_mode, "loss_type": cfg.loss_type,
        "training_args": tu.base_training_args(cfg, cfg.scaling),
        "lora": tu.lora_kwargs(cfg.lora), "fail_at_step": _fail_at_step,
        "torch_threads": int(os.environ.get("RAYALIGN_TRAIN_THREADS", "0")) or None,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = tu.run_torch_trainer(_dpo_worker, loop_cfg, cfg.scaling, output_dir, name="dpo",
                                  ray_cfg=ray_cfg)
    tu.export_final_model(result, model_dir)
    atomic_write_json(model_dir / DPO_META, {
        "kind": "dpo", "base_model": base, "num_pairs": len(pairs),
        "skipped_long_prompts": len(dropped), "config": cfg.model_dump(mode="json"),
        "metrics": dict(result.metrics or {}), "wall_seconds": time.perf_counter() - t0})
    return model_dir


def completion_logprobs(model_dir: str | Path, prompts: Sequence[str],
                        completions: Sequence[str]) -> np.ndarray:
    """Sum of log p(completion | prompt) under a causal LM, one value per example.

    What DPO moves: the chosen-minus-rejected difference of these (the implicit reward
    margin, up to the reference term). Used by tests and evaluation.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = np.zeros(len(prompts), dtype=np.float64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        p_ids = tok(p)["input_ids"]
        c_ids = tok(p + c)["input_ids"][len(p_ids):] or tok(c)["input_ids"]
        ids = torch.tensor([p_ids + c_ids])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        targets = ids[0, 1:]
        lp = logp[torch.arange(len(targets)), targets]
        out[i] = float(lp[len(p_ids) - 1:].sum())
    return out


def preference_margins(model_dir: str | Path, pairs: Sequence[PreferencePair]) -> np.ndarray:
    """log p(chosen | prompt) - log p(rejected | prompt) for each pair."""
    prompts = [p.prompt for p in pairs]
    return (completion_logprobs(model_dir, prompts, [p.chosen for p in pairs])
            - completion_logprobs(model_dir, prompts, [p.rejected for p in pairs]))
