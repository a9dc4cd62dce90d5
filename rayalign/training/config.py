"""Config models shared by every Ray Train job (LoRA RM, SFT, DPO).

One place for the knobs that decide *where and how wide* a training run goes (workers,
GPUs, DeepSpeed, fault tolerance) and *how it optimises* (batch, lr, epochs, LoRA), so a
config moves from the laptop (``num_workers: 1, use_gpu: false``) to eight A100 nodes by
editing numbers, never code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rayalign.config import RayConfig, StrictModel


class TrainScaling(StrictModel):
    """How a training run is spread over Ray Train workers."""

    num_workers: int = Field(default=1, ge=1, description="Ray Train workers (one per GPU on a GPU cluster)")
    use_gpu: bool = False
    # Per-worker resources, e.g. {"CPU": 8, "GPU": 1}. None = on CPU the cluster's free CPUs split over
    # the workers (capped at one node; logged), on GPU Ray Train's default (1 CPU + 1 GPU).
    resources_per_worker: dict[str, float] | None = None
    # DeepSpeed ZeRO stage through TRL/accelerate; None = plain DDP. Needs the optional `deepspeed` extra.
    deepspeed: Literal[2, 3] | None = None
    # A worker that dies (node lost, OOM, killed) restarts the worker group from the latest checkpoint
    # this many times before the run fails. -1 = retry forever.
    max_failures: int = Field(default=1, ge=-1)
    # Where Ray Train persists checkpoints. None = inside the job's output directory, which is right on
    # one machine; on a multi-node cluster give shared storage (NFS path or s3://, gs:// URI).
    storage_path: str | None = None


class LoraSettings(StrictModel):
    """PEFT LoRA adapter settings (paper defaults for the RM: r 32, alpha 64)."""

    r: int = Field(default=32, ge=1)
    alpha: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    # "all-linear" lets PEFT find every linear layer except the output head; or list module names.
    target_modules: str | list[str] = "all-linear"


class TrainHyper(StrictModel):
    """Optimisation settings common to RM, SFT and DPO training."""

    learning_rate: float = Field(default=1e-4, gt=0)
    num_epochs: float = Field(default=2.0, gt=0)
    # Pairs (or examples) per optimizer step over all workers: per_device_batch_size x workers x
    # gradient accumulation. Gradient accumulation is derived from it.
    effective_batch_size: int = Field(default=128, ge=1)
    per_device_batch_size: int = Field(default=8, ge=1)
    max_length: int = Field(default=512, ge=8)
    # Fraction of optimizer steps with linear warm-up. Each job kind may override the default
    # (the LoRA RM's LoraRMConfig uses the RLTHF paper's 0.1; SFT and DPO keep 0.0).
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    lr_scheduler_type: str = "linear"
    weight_decay: float = Field(default=0.0, ge=0.0)
    # Checkpoint (and report to Ray Train) every N optimizer steps; None = at the end of each epoch.
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    # bf16 mixed precision; "auto" = on for GPU workers that support it, off on CPU.
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    seed: int = 0
    logging_steps: int = Field(default=1, ge=1)


class SFTTrainConfig(TrainHyper):
    """Supervised fine-tuning of a causal LM on prompt/completion examples (TRL SFTTrainer)."""

    learning_rate: float = Field(default=2e-5, gt=0)
    num_epochs: float = Field(default=1.0, gt=0)
    effective_batch_size: int = Field(default=32, ge=1)
    # None = full fine-tuning; a LoraSettings block = train a LoRA adapter (merged before saving).
    lora: LoraSettings | None = None
    # Loss only on the completion tokens (the prompt is context, not a target).
    completion_only_loss: bool = True
    scaling: TrainScaling = Field(default_factory=TrainScaling)


class DPOTrainConfig(TrainHyper):
    """Direct preference optimisation (TRL DPOTrainer). Paper defaults: lr 1e-6, beta 0.1."""

    learning_rate: float = Field(default=1e-6, gt=0)
    beta: float = Field(default=0.1, gt=0)
    num_epochs: float = Field(default=1.0, gt=0)
    effective_batch_size: int = Field(default=32, ge=1)
    per_device_batch_size: int = Field(default=4, ge=1)
    loss_type: str = "sigmoid"
    # DPOConfig has no max_prompt_length: sequences are cut at max_length with this mode.
    truncation_mode: Literal["keep_start", "keep_end"] = "keep_start"
    # With LoRA, TRL's reference model is the base with the adapter disabled (no second copy);
    # without LoRA, TRL loads a frozen copy of the starting model as reference.
    lora: LoraSettings | None = None
    scaling: TrainScaling = Field(default_factory=TrainScaling)


class DataSource(StrictModel):
    """Where a CLI training job reads its records (JSONL with the fields the job needs)."""

    path: str
    limit: int | None = Field(default=None, ge=1)

    @field_validator("path")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a JSONL file")
        return v


class SFTJobConfig(StrictModel):
    """`rayalign sft --config`: a model, prompt/completion JSONL, an output run directory."""

    model: str
    data: DataSource
    run_dir: str = "runs/sft"
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


class DPOJobConfig(StrictModel):
    """`rayalign dpo --config`: a model, prompt/chosen/rejected JSONL, an output run directory."""

    model: str
    data: DataSource
    run_dir: str = "runs/dpo"
    train: DPOTrainConfig = Field(default_factory=DPOTrainConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
