"""DPO (TRL ``DPOTrainer``) under Ray Train, LoRA optional, DeepSpeed by config switch.

Reference model handling is TRL's: with LoRA there is no second copy — the reference is the
same weights with the adapter disabled; without LoRA TRL loads a frozen copy of the starting
model. The result is always a plain ``AutoModelForCausalLM`` directory (LoRA merged), so the
next stage (generation, evaluation, the next M_t of self-reward) loads it like any model.

Paper defaults (self-learning / teacher-guided DPO): lr 1e-6, beta 0.1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from rayalign.config import RayConfig
from rayalign.data.schema import PreferencePair
from rayalign.data.trl_format import to_trl_rows
from rayalign.training.config import DPOTrainConfig
from rayalign.training.ray_train import count_too_long_prompts, is_final_model, resolve_model_dir, train_job
from rayalign.training.worker import causal_lm_final_builder, peft_lora_config

log = logging.getLogger(__name__)

DPO_META = "rayalign_dpo.json"


def build_dpo_trainer(cfg: dict[str, Any], tok, args: dict[str, Any], callbacks: list):
    """Trainer factory for ``training.worker.trl_train_loop``: TRL DPOTrainer, LoRA optional."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(cfg["model_path"]), ref_model=None,
        args=DPOConfig(beta=cfg["beta"], max_length=cfg["max_length"],
                       truncation_mode=cfg["truncation_mode"], loss_type=[cfg["loss_type"]], **args),
        train_dataset=datasets.Dataset.from_list(cfg["rows"]), processing_class=tok,
        peft_config=peft_lora_config(cfg.get("lora"), "CAUSAL_LM"), callbacks=callbacks)
    return trainer, causal_lm_final_builder(cfg["model_path"], tok, bool(cfg.get("lora")))


def run_dpo(pairs: Sequence[PreferencePair], model_path: str | Path, output_dir: Path,
            cfg: DPOTrainConfig, ray_cfg: RayConfig | None = None, *,
            _fail_at_step: int | None = None) -> Path:
    """DPO-train ``model_path`` on ``pairs``; return a ``from_pretrained`` model directory.

    Idempotent and resumable like every training job: ``output_dir/model`` is returned at
    once when finished; an interrupted run continues from its latest checkpoint.
    """
    model_dir = Path(output_dir).resolve() / "model"
    if is_final_model(model_dir) and (model_dir / DPO_META).is_file():
        return model_dir
    if not pairs:
        raise ValueError("run_dpo: no preference pairs")
    base = resolve_model_dir(model_path)
    rows = to_trl_rows(pairs)  # TRL's standard layout: the space after "Assistant:" kept
    dropped: list[int] = []
    if cfg.truncation_mode == "keep_start":
        dropped = count_too_long_prompts(base, [r["prompt"] for r in rows], cfg.max_length)
        if dropped:
            ids = ", ".join(pairs[i].id for i in dropped[:5])
            log.warning("DPO: %d of %d pairs have prompts of >= max_length=%d tokens; TRL skips "
                        "them (first ids: %s). Raise max_length to keep them.",
                        len(dropped), len(rows), cfg.max_length, ids)
            if len(dropped) == len(rows):
                raise ValueError(f"DPO: every prompt is >= max_length={cfg.max_length} tokens")
    return train_job(
        "dpo", build_dpo_trainer,
        {"model_path": base, "rows": rows, "beta": cfg.beta, "max_length": cfg.max_length,
         "truncation_mode": cfg.truncation_mode, "loss_type": cfg.loss_type},
        cfg, cfg.scaling, cfg.lora, output_dir, DPO_META,
        {"kind": "dpo", "base_model": base, "num_pairs": len(pairs),
         "skipped_long_prompts": len(dropped), "config": cfg.model_dump(mode="json")},
        ray_cfg=ray_cfg, fail_at_step=_fail_at_step)
