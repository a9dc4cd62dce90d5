"""The ``reward_model`` config section and the one place that turns it into a backend.

Backend imports are lazy: a backend's heavy dependencies (transformers, TRL, PEFT) load only when
that backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rayalign.config import RayConfig, StrictModel
from rayalign.rewards.base import RewardBackend
from rayalign.rewards.embedding_head import EmbeddingHeadConfig
from rayalign.rewards.finetune import FinetuneRMConfig
from rayalign.rewards.lora import LoraRMConfig


class RewardModelConfig(StrictModel):
    """Which RM the loop trains, and each backend's own typed settings.

    ``embedding_head``: frozen MiniLM + linear Bradley-Terry head (seconds per fit).
    ``finetune``: the top layer(s) of pretrained MiniLM fine-tuned as the BT RM on CPU, lower
    layers cached (minutes per fit on a loaded 2-core machine; with its defaults it was measured
    *less* accurate than the frozen head, see benchmarks/README.md). ``lora``: TRL
    RewardTrainer + PEFT under Ray Train, the GPU-cluster backend.
    """

    backend: Literal["embedding_head", "finetune", "lora"] = "embedding_head"
    embedding_head: EmbeddingHeadConfig = Field(default_factory=EmbeddingHeadConfig)
    finetune: FinetuneRMConfig = Field(default_factory=FinetuneRMConfig)
    lora: LoraRMConfig = Field(default_factory=LoraRMConfig)


def make_reward_backend(rm: RewardModelConfig, cache_dir: Path,
                        ray_cfg: RayConfig | None = None) -> RewardBackend:
    """The backend ``rm.backend`` names, built from its typed sub-config."""
    if rm.backend == "embedding_head":
        from rayalign.rewards.embedding_head import EmbeddingHeadBackend

        return EmbeddingHeadBackend(rm.embedding_head, cache_dir)
    if rm.backend == "finetune":
        from rayalign.rewards.finetune import FinetuneRewardBackend

        return FinetuneRewardBackend(rm.finetune, cache_dir)
    from rayalign.rewards.lora import LoraRewardBackend

    return LoraRewardBackend(rm.lora, ray_cfg)
