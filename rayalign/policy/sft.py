"""Supervised fine-tuning (TRL ``SFTTrainer``) under Ray Train, LoRA optional.

Examples are ``{"prompt": str, "completion": str}`` — TRL's prompt/completion format, so
the loss covers only the completion (``completion_only_loss``). The result is a plain
``AutoModelForCausalLM`` directory (LoRA merged): the M0 the self-reward loop starts from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from rayalign.config import RayConfig
from rayalign.training.config import SFTTrainConfig
from rayalign.training.ray_train import count_too_long_prompts, is_final_model, resolve_model_dir, train_job
from rayalign.training.worker import causal_lm_final_builder, peft_lora_config

log = logging.getLogger(__name__)

SFT_META = "rayalign_sft.json"


def build_sft_trainer(cfg: dict[str, Any], tok, args: dict[str, Any], callbacks: list):
    """Trainer factory for ``training.worker.trl_train_loop``: TRL SFTTrainer, LoRA optional."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(cfg["model_path"]),
        args=SFTConfig(max_length=cfg["max_length"], completion_only_loss=cfg["completion_only_loss"], **args),
        train_dataset=datasets.Dataset.from_list(cfg["rows"]), processing_class=tok,
        peft_config=peft_lora_config(cfg.get("lora"), "CAUSAL_LM"), callbacks=callbacks)
    return trainer, causal_lm_final_builder(cfg["model_path"], tok, bool(cfg.get("lora")))


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
    model_dir = Path(output_dir).resolve() / "model"
    if is_final_model(model_dir) and (model_dir / SFT_META).is_file():
        return model_dir
    rows = _check_examples(examples)
    if not rows:
        raise ValueError("run_sft: no examples")
    base = resolve_model_dir(model_path)
    too_long = count_too_long_prompts(base, [r["prompt"] for r in rows], cfg.max_length)
    if too_long:
        log.warning("SFT: %d of %d examples have prompts of >= max_length=%d tokens; their "
                    "completions are cut away and TRL skips them (first rows: %s)",
                    len(too_long), len(rows), cfg.max_length, too_long[:5])
        if len(too_long) == len(rows):
            raise ValueError(f"SFT: every prompt is >= max_length={cfg.max_length} tokens")
    return train_job(
        "sft", build_sft_trainer,
        {"model_path": base, "rows": rows, "max_length": cfg.max_length,
         "completion_only_loss": cfg.completion_only_loss},
        cfg, cfg.scaling, cfg.lora, output_dir, SFT_META,
        {"kind": "sft", "base_model": base, "num_examples": len(rows),
         "skipped_long_prompts": len(too_long), "config": cfg.model_dump(mode="json")},
        ray_cfg=ray_cfg, fail_at_step=_fail_at_step)
