"""Supervised fine-tuning (TRL ``SFTTrainer``) under Ray Train, LoRA optional.

Examples are ``{"prompt": str, "completion": str}`` — TRL's prompt/completion format, so
the loss covers only the completion (``completion_only_loss``). The result is a plain
``AutoModelForCausalLM`` directory (LoRA merged): the M0 the self-reward loop starts from.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from rayalign import train_utils as tu
from rayalign.config import RayConfig
from rayalign.policy.train_config import SFTTrainConfig
from rayalign.runs import atomic_write_json

log = logging.getLogger(__name__)

SFT_META = "rayalign_sft.json"


def _sft_worker(cfg: dict[str, Any]) -> None:
    import tempfile

    import datasets
    import torch
    from peft import LoraConfig, TaskType
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

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
    workdir = tempfile.mkdtemp(prefix=f"rayalign-sft-rank{rank}-")
    args = SFTConfig(output_dir=workdir, max_length=cfg["max_length"],
                     completion_only_loss=cfg["completion_only_loss"], **cfg["training_args"])
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = cfg.get("lora")
    peft_config = None
    if lora:
        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora["r"], lora_alpha=lora["alpha"],
                                 lora_dropout=lora["dropout"], target_modules=lora["target_modules"])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
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


def _check_examples(examples: Sequence[dict]) -> list[dict[str, str]]:
    rows = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise ValueError(f"SFT example {i}: expected an object with prompt and completion")
        for f in ("prompt", "completion"):
            if not isinstance(ex.get(f), str):
                raise ValueError(f"SFT example {i}: field {f!r} must be a string")
        if not ex["completion"].strip():
            raise ValueError(f"SFT example {i}: field 'completion' is empty")
        rows.append({"prompt": ex["prompt"], "completion": ex["completion"]})
    return rows


def run_sft(examples: Sequence[dict], model_path: str | Path, output_dir: Path,
            cfg: SFTTrainConfig, ray_cfg: RayConfig | None = None, *,
            _fail_at_step: int | None = None) -> Path:
    """Fine-tune ``model_path`` on prompt/completion ``examples``; return the model directory."""
    output_dir = Path(output_dir).resolve()
    model_dir = output_dir / "model"
    if tu.is_final_model(model_dir) and (model_dir / SFT_META).is_file():
        log.info("SFT already finished: %s", model_dir)
        return model_dir
    rows = _check_examples(examples)
    if not rows:
        raise ValueError("run_sft: no examples")
    base = tu.resolve_model_dir(model_path)
    too_long = tu.count_too_long_prompts(base, [r["prompt"] for r in rows], cfg.max_length)
    if too_long:
        log.warning("SFT: %d of %d examples have prompts of >= max_length=%d tokens; their "
                    "completions are cut away and TRL skips them (first rows: %s)",
                    len(too_long), len(rows), cfg.max_length, too_long[:5])
        if len(too_long) == len(rows):
            raise ValueError(f"SFT: every prompt is >= max_length={cfg.max_length} tokens")
    loop_cfg = {
        "model_path": base, "rows": rows, "max_length": cfg.max_length,
        "completion_only_loss": cfg.completion_only_loss,
        "training_args": tu.base_training_args(cfg, cfg.scaling),
        "lora": tu.lora_kwargs(cfg.lora), "fail_at_step": _fail_at_step,
        "torch_threads": int(os.environ.get("RAYALIGN_TRAIN_THREADS", "0")) or None,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = tu.run_torch_trainer(_sft_worker, loop_cfg, cfg.scaling, output_dir, name="sft",
                                  ray_cfg=ray_cfg)
    tu.export_final_model(result, model_dir)
    atomic_write_json(model_dir / SFT_META, {
        "kind": "sft", "base_model": base, "num_examples": len(rows),
        "skipped_long_prompts": len(too_long), "config": cfg.model_dump(mode="json"),
        "metrics": dict(result.metrics or {}), "wall_seconds": time.perf_counter() - t0})
    return model_dir
