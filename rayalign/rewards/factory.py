"""One place that turns a ``reward_model`` config section into a ``RewardBackend``.

Imports are lazy: a backend's heavy dependencies (transformers, TRL, PEFT) load only when
that backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rayalign.config import RayConfig
from rayalign.rewards.base import RewardBackend

if TYPE_CHECKING:
    from rayalign.rlthf.config import RewardModelConfig


def make_reward_backend(rm: "RewardModelConfig", cache_dir: Path,
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
