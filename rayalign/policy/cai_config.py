"""Config of ``rayalign cai``: Constitutional AI (SL-CAI critique/revision + AI preferences).

CPU demo and GPU configs differ only in numbers and engine kinds (``jobs/configs/cai_*.yaml``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rayalign.config import RayConfig, StrictModel
from rayalign.engines.base import SamplingParams
from rayalign.engines.config import EngineConfig
from rayalign.policy.align_config import FanoutConfig, PolicyEngineConfig
from rayalign.policy.principles import DEFAULT_CONSTITUTION
from rayalign.training.config import SFTTrainConfig


class CAIPromptsConfig(StrictModel):
    """Red-team prompts. ``bundled:hh_rlhf_harmless`` = the first human turn of each bundled
    HH-RLHF harmless dialogue (de-duplicated, file order); otherwise a JSONL file with a
    ``prompt`` field per line."""

    source: str = "bundled:hh_rlhf_harmless"
    n_prompts: int = Field(default=16, ge=1)
    offset: int = Field(default=0, ge=0)
    max_chars: int = Field(default=500, ge=10)


class SLStageConfig(StrictModel):
    """Optional: fine-tune the SL-CAI model on the revisions inside the run (TRL SFTTrainer on
    Ray Train). Off, the SFT file is still written for ``rayalign sft``."""

    enabled: bool = False
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)


class CAIJudgeConfig(StrictModel):
    """The feedback model that answers the multiple-choice question against a principle.

    ``labels``: ``soft`` = normalised probabilities of the two option tokens (needs an engine
    with log-probs: ``hf_local``); ``hard`` = the parsed generated answer; ``auto`` = soft
    where the engine gives log-probs, else hard."""

    engine: EngineConfig | None = None  # None: the policy model through policy_engine
    labels: Literal["auto", "soft", "hard"] = "auto"
    both_orders: bool = True
    #: Start the assistant turn with "The better answer is (" (local engines; some servers
    #: do not continue a prefilled assistant turn: turn off for them).
    prefill: bool = True
    params: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=8, temperature=0.0))


class CAIPreferenceConfig(StrictModel):
    """RL-CAI preference data. ``revision``: the policy's first answer vs its final revision
    (one model); ``samples``: two samples per prompt from ``model`` (default: the SL-CAI
    model trained in this run, else the policy)."""

    enabled: bool = True
    source: Literal["revision", "samples"] = "revision"
    model: str | None = None
    params: SamplingParams = Field(default_factory=lambda: SamplingParams(
        max_tokens=96, temperature=0.8, top_p=0.95))
    judge: CAIJudgeConfig = Field(default_factory=CAIJudgeConfig)


class CAIConfig(StrictModel):
    model: str = "smollm2"  # the policy: "smollm2", "tiny", or a local model directory
    run_dir: str = "runs/cai"
    #: ``bundled:harmless`` or a YAML file (see ``rayalign.policy.principles``).
    constitution: str = DEFAULT_CONSTITUTION
    seed: int = 0
    #: Critique -> revision rounds per prompt (k), each with a freshly drawn principle.
    revisions: int = Field(default=2, ge=1, le=8)
    max_answer_chars: int | None = Field(default=300, ge=16)
    policy_engine: PolicyEngineConfig = Field(default_factory=PolicyEngineConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)
    answer: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=96, temperature=0.0))
    critique: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=96, temperature=0.0))
    revision: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=96, temperature=0.0))
    prompts: CAIPromptsConfig = Field(default_factory=CAIPromptsConfig)
    sft: SLStageConfig = Field(default_factory=SLStageConfig)
    preference: CAIPreferenceConfig = Field(default_factory=CAIPreferenceConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
