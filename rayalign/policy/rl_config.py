"""Config of online RL against a reward model (``rayalign rl``): GRPO or RLOO through TRL.

The optimisation knobs extend :class:`rayalign.training.config.TrainHyper` (lr, batch,
checkpoints, seed) so an RL run scales like every other Ray Train job (``scaling``); the
RL-specific ones are TRL's own names (``beta``, ``num_generations``, ``max_completion_length``,
``temperature``, ``use_vllm``), passed through unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayalign.config import RayConfig, StrictModel
from rayalign.rewards.trl_reward import RewardSourceConfig
from rayalign.training.config import LoraSettings, TrainHyper, TrainScaling


class RLTrainConfig(TrainHyper):
    """GRPO / RLOO settings. Batch sizes count *completions*, not prompts.

    Each optimizer step sees ``effective_batch_size`` completions =
    ``effective_batch_size / num_generations`` prompts x ``num_generations`` samples each; TRL
    needs that to divide evenly, which is checked here rather than deep inside a worker.
    """

    algorithm: Literal["grpo", "rloo"] = "grpo"
    learning_rate: float = Field(default=1e-6, gt=0)
    #: Fixed number of optimizer steps (RL has no natural epoch); None = ``num_epochs`` over the prompts.
    max_steps: int | None = Field(default=20, ge=1)
    num_epochs: float = Field(default=1.0, gt=0)
    effective_batch_size: int = Field(default=16, ge=1)
    per_device_batch_size: int = Field(default=8, ge=1)
    #: KL coefficient against the starting (reference) policy. 0 = no reference model, no KL
    #: term (TRL's GRPO default); > 0 loads a reference (with LoRA: the adapter disabled).
    beta: float = Field(default=0.04, ge=0)
    num_generations: int = Field(default=4, ge=2, description="samples per prompt (the group)")
    max_completion_length: int = Field(default=64, ge=1)
    #: Prompts longer than this many tokens are left out (counted and logged): TRL 1.16 has no
    #: prompt truncation of its own and a cut dialogue would drop the turn being answered.
    max_prompt_length: int = Field(default=256, ge=8)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    #: Generate with vLLM (GPU only; TRL's vLLM integration). "colocate": vLLM shares each
    #: training GPU; "server": a separate ``trl vllm-serve`` at vllm_server_base_url.
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    vllm_server_base_url: str | None = None
    lora: LoraSettings | None = None
    scaling: TrainScaling = Field(default_factory=TrainScaling)
    checkpoint_every_steps: int | None = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _groups_fit(self) -> "RLTrainConfig":
        if self.effective_batch_size % self.num_generations:
            raise ValueError(f"effective_batch_size={self.effective_batch_size} must be a multiple "
                             f"of num_generations={self.num_generations} (whole groups per step)")
        if self.use_vllm and not self.scaling.use_gpu:
            raise ValueError("use_vllm needs GPU workers: set scaling.use_gpu: true")
        return self


class PromptSource(StrictModel):
    """RL prompts: a bundled data set's prompts (``bundled: hh_rlhf_harmless``) or a JSONL
    file of ``{"prompt": ...}`` rows (``path``). Duplicates are dropped, order kept."""

    bundled: str | None = "hh_rlhf_harmless"
    path: str | None = None
    limit: int | None = Field(default=64, ge=1)
    #: Prompts held out from training, scored before/after by the RM in the run report.
    eval_prompts: int = Field(default=16, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _path_replaces_default(cls, data):
        if isinstance(data, dict) and data.get("path") and "bundled" not in data:
            data = {**data, "bundled": None}  # a path given: the bundled default steps aside
        return data

    @model_validator(mode="after")
    def _one(self) -> "PromptSource":
        if bool(self.bundled) == bool(self.path):
            raise ValueError("prompts: set exactly one of bundled (e.g. hh_rlhf_harmless) "
                             "or path (a JSONL file of {\"prompt\": ...} rows)")
        return self


class RLJobConfig(StrictModel):
    """``rayalign rl --config``: a policy, prompts, a reward model, an output run directory."""

    model: str
    prompts: PromptSource = Field(default_factory=PromptSource)
    reward: RewardSourceConfig
    run_dir: str = "runs/rl"
    train: RLTrainConfig = Field(default_factory=RLTrainConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
