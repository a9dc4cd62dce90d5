"""Config of ``rayalign align``: the self-reward / teacher-reward / teacher-demo loops.

One model for the three recipes (and ``sft``, the M1 stage alone) so a run differs from
another by the ``recipe`` line plus the teacher block. CPU demo and GPU configs differ only
in numbers and engine kinds (see ``jobs/configs/align_*.yaml``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayalign.config import RayConfig, StrictModel
from rayalign.engines.base import SamplingParams
from rayalign.engines.config import EngineConfig
from rayalign.training.config import DPOTrainConfig, SFTTrainConfig


#: Sampling for prompt synthesis (diverse, short: one instruction). The one default, used by
#: ``policy.self_reward.synthesize_prompts`` and by ``PromptsConfig.params``.
SYNTHESIS_PARAMS = SamplingParams(max_tokens=64, temperature=1.0, top_p=0.95)

Recipe = Literal["self-reward", "teacher-reward", "teacher-demo", "sft"]


class PolicyEngineConfig(StrictModel):
    """How the policy being trained generates (its model path changes every iteration)."""

    kind: Literal["hf_local", "vllm"] = "hf_local"
    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(default=8, ge=1)
    max_input_tokens: int = Field(default=2048, ge=16)
    engine_kwargs: dict = Field(default_factory=dict)

    def for_model(self, model: str) -> EngineConfig:
        return EngineConfig(kind=self.kind, model=model, device=self.device, dtype=self.dtype,
                            batch_size=self.batch_size, max_input_tokens=self.max_input_tokens,
                            engine_kwargs=self.engine_kwargs)


class FanoutConfig(StrictModel):
    """Candidate generation through the Ray Data fan-out of ``feedback.pipeline``
    (``feedback.pipeline.generate_candidates``): one engine per actor, ``concurrency``
    actors (one per GPU on a cluster). Off = the driver calls its engine directly, which is
    fastest for one small local model."""

    enabled: bool = False
    concurrency: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=1)
    num_gpus: float = Field(default=0, ge=0)


class TeacherConfig(StrictModel):
    """The teacher: a real engine, or (``kind: replay``) a *simulated* teacher that replays
    reference answers from an OASST-style file (rank-0 answer per question)."""

    kind: Literal["engine", "replay"] = "engine"
    engine: EngineConfig | None = None
    replay_path: str | None = None  # None = the bundled OASST slice

    @model_validator(mode="after")
    def _engine_needed(self) -> "TeacherConfig":
        if self.kind == "engine" and self.engine is None:
            raise ValueError("teacher.kind 'engine' needs a teacher.engine block")
        return self


class PromptsConfig(StrictModel):
    """Where each iteration's prompts come from.

    ``synthesize``: the current policy writes them from few-shot seed examples (the study);
    ``oasst``: questions of the OASST file (not used by SFT or evaluation);
    ``file``: a JSONL with a ``prompt`` field per line."""

    source: Literal["synthesize", "oasst", "file"] = "synthesize"
    path: str | None = None
    n_prompts: int = Field(default=8, ge=1)
    n_shots: int = Field(default=4, ge=1)
    seed_pool: int = Field(default=64, ge=1)
    params: SamplingParams = Field(default_factory=lambda: SYNTHESIS_PARAMS.model_copy())
    min_chars: int = Field(default=12, ge=1)
    max_chars: int = Field(default=400, ge=10)
    dedup_threshold: float = Field(default=0.7, gt=0, le=1)
    max_rounds: int = Field(default=3, ge=1)


class SFTStageConfig(StrictModel):
    """M0 -> M1 on IFT + EFT seed data from OASST ranked answers."""

    enabled: bool = True
    data: str | None = None  # OASST ranked JSONL(.gz); None = the bundled slice
    n_ift: int | None = Field(default=64, ge=1)
    n_eft: int | None = Field(default=64, ge=1)
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)


class EvalConfig(StrictModel):
    """Judge metrics on held-out OASST questions. ``rm_groups`` questions are always kept
    out of SFT data and prompt pools; ``per_iteration`` decides whether each model is
    evaluated on them inside the run (a benchmark may evaluate separately)."""

    rm_groups: int = Field(default=8, ge=0)
    max_answers: int = Field(default=4, ge=2)
    per_iteration: bool = True


class AlignConfig(StrictModel):
    recipe: Recipe = "self-reward"
    model: str = "smollm2"  # "smollm2", "tiny", or a local model directory
    run_dir: str = "runs/align"
    iterations: int = Field(default=2, ge=1, le=10)
    n_candidates: int = Field(default=4, ge=2)
    max_answer_chars: int | None = Field(default=256, ge=16)
    seed: int = 0
    policy_engine: PolicyEngineConfig = Field(default_factory=PolicyEngineConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)
    generation: SamplingParams = Field(default_factory=lambda: SamplingParams(
        max_tokens=96, temperature=0.8, top_p=0.95))
    judge: SamplingParams = Field(default_factory=lambda: SamplingParams(
        max_tokens=160, temperature=0.0))
    teacher: TeacherConfig | None = None
    teacher_generation: SamplingParams = Field(default_factory=lambda: SamplingParams(
        max_tokens=160, temperature=0.0))
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    sft: SFTStageConfig = Field(default_factory=SFTStageConfig)
    dpo: DPOTrainConfig = Field(default_factory=DPOTrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _teacher_needed(self) -> "AlignConfig":
        if self.recipe in ("teacher-reward", "teacher-demo") and self.teacher is None:
            raise ValueError(f"recipe {self.recipe!r} needs a teacher block")
        if self.recipe == "teacher-reward" and self.teacher and self.teacher.kind == "replay":
            raise ValueError("teacher-reward needs a judging teacher (teacher.kind: engine); "
                             "a replay teacher can only demonstrate")
        return self
