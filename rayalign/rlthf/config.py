"""The RLTHF job's config: every knob of the loop, with the paper's defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rayalign.cache import CacheConfig
from rayalign.config import RayConfig, StrictModel, operational
from rayalign.feedback.config import JudgeConfig
from rayalign.feedback.simulated import SimulatedLabellerConfig
from rayalign.rewards.factory import RewardModelConfig
from rayalign.rlthf.select import PAPER_BACKOFF_AFTER, PAPER_BACKOFF_SCHEDULE


class DataConfig(StrictModel):
    #: ``pandalm``: PandaLM's test set; ``votes``: the generic votes JSONL (prompt, two
    #: responses, several human votes; ``rayalign.data.votes``). Both: truth = human majority.
    kind: Literal["hh", "preferences", "pandalm", "votes"] = "hh"

    @field_validator("kind", mode="before")
    @classmethod
    def _label_format_names_too(cls, v: Any) -> Any:
        """``hh_rlhf`` (``rayalign label``'s name for it) means ``hh``."""
        from rayalign.data.pairs import LABEL_FORMAT_TO_KIND

        return LABEL_FORMAT_TO_KIND.get(v, v) if isinstance(v, str) else v
    #: a file/dir path, or ``bundled:<name>`` for data shipped in the package.
    path: str = "bundled:hh_rlhf_harmless"
    limit: int | None = Field(default=None, ge=10, description="use only the first N pairs")
    skip_bad_rows: bool = Field(default=True, description="count and report malformed rows instead of failing")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    shards: int = Field(default=1, ge=1, description="run the loop on 1/shards of the train split")
    shard_index: int = Field(default=0, ge=0)

    def preflight(self) -> None:
        """Before any actor starts: a data path that does not exist is the user's to fix."""
        from pathlib import Path

        if not self.path.startswith("bundled:") and not Path(self.path).expanduser().exists():
            raise FileNotFoundError(f"data.path: {self.path} does not exist")

    @model_validator(mode="after")
    def _shard_in_range(self):
        if self.shard_index >= self.shards:
            raise ValueError(f"shard_index {self.shard_index} must be < shards {self.shards}")
        return self


class LabellerConfig(StrictModel):
    """Who gives the AI labels: a simulation, a recorded file, or a real LLM judge."""

    kind: Literal["simulated", "replay", "judge"] = "simulated"
    simulated: SimulatedLabellerConfig = Field(default_factory=SimulatedLabellerConfig)
    #: recorded judgments: a JSONL (``rayalign label``'s ``judgments.jsonl``, or rows
    #: ``{"id", "label"[, "shown_a"]}``), or ``bundled:pandalm_gpt35`` / ``bundled:pandalm_7b``
    #: (real gpt-3.5-turbo / PandaLM-7B verdicts on the bundled PandaLM pairs).
    replay_path: str | None = None
    judge: JudgeConfig | None = None

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "replay" and not self.replay_path:
            raise ValueError("labeller.kind 'replay' needs labeller.replay_path")
        if self.kind == "judge" and self.judge is None:
            raise ValueError("labeller.kind 'judge' needs a labeller.judge mapping")
        if self.replay_path and self.replay_path.startswith("bundled:"):
            from rayalign.data.bundled import BUNDLED_VERDICTS

            name = self.replay_path.split(":", 1)[1]
            if name not in BUNDLED_VERDICTS:
                raise ValueError(f"unknown bundled verdicts {name!r}; valid: "
                                 + ", ".join(f"bundled:{n}" for n in sorted(BUNDLED_VERDICTS)))
        return self


class HumanConfig(StrictModel):
    """Who answers the selected pairs: a simulation of ground truth, real votes recorded in
    the data (``recorded``: PandaLM, votes JSONL), or people via the queue."""

    kind: Literal["simulated", "recorded", "queue"] = "simulated"
    error_rate: float = Field(default=0.0, ge=0.0, lt=0.5, description="simulated human only")
    #: recorded human only: ``majority`` answers the human majority; ``single_annotator``
    #: answers one annotator's recorded vote, drawn per pair (seeded): a realistic single
    #: person, who sometimes says "tie" (spent, no label) or disagrees with the majority.
    mode: Literal["majority", "single_annotator"] = "majority"
    poll_seconds: float = operational(10.0, gt=0)
    #: Bounded by default: after this long the run stops (exit 3, nothing lost) and says how
    #: to continue; rerunning the same command resumes the wait. None = wait without limit.
    wait_timeout_s: float | None = operational(
        1800.0, gt=0, description="queue only: stop (resumable) if a batch is not done in time")
    progress_every_s: float = operational(
        60.0, gt=0, description="while waiting: an 'answered/total' line at least this often")


class GroundTruthConfig(StrictModel):
    """How pairs' true labels are judged for metrics (see DESIGN.md, evaluation protocol)."""

    mode: Literal["cleaned", "raw"] = "cleaned"
    clean_fraction: float = Field(default=0.25, ge=0.0, lt=0.5)
    folds: int = Field(default=5, ge=2)


class CurveConfig(StrictModel):
    smooth_frac: float = Field(default=0.05, gt=0.0, lt=0.5)
    #: elbow/knee = first/last point whose slope is under slope_factor × the middle's median
    #: slope. 1.3 was chosen on HH seeds 0-1 (benchmarks/rlthf_hh.py); 2.0 is more conservative.
    slope_factor: float = Field(default=1.3, gt=1.0)


class RLTHFConfig(StrictModel):
    name: str = "rlthf"
    run_dir: str | None = operational(None, description="default: runs/<name>")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    labeller: LabellerConfig = Field(default_factory=LabellerConfig)
    human: HumanConfig = Field(default_factory=HumanConfig)
    ground_truth: GroundTruthConfig = Field(default_factory=GroundTruthConfig)
    reward_model: RewardModelConfig = Field(default_factory=RewardModelConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)
    #: The cross-run cache of embeddings and judgments (``rayalign.cache``).
    cache: CacheConfig = Field(default_factory=CacheConfig)

    iterations: int = Field(default=3, ge=1, le=50, description="human-annotation rounds")
    human_budget_pct: float = Field(default=4.0, gt=0.0, le=50.0,
                                    description="per iteration, % of the shard (paper: 4)")
    amplification: int = Field(default=4, ge=1, le=64, description="α (paper: 4)")
    backoff_schedule: list[float] = Field(default_factory=lambda: list(PAPER_BACKOFF_SCHEDULE))
    backoff_after: float = Field(default=PAPER_BACKOFF_AFTER, ge=0.0, lt=1.0)
    #: The paper flips these labels "to correct the mislabeling" but names only human × α and
    #: the backed-off trusted region as the next training set; training on the flipped pairs
    #: too is our reading (they are confident, corrected labels). False = the narrow reading.
    train_on_flips: bool = True
    #: Beyond the paper: spend this many of each iteration's human labels on a random sample
    #: of the flip candidates, and skip the flips when people agree with fewer than
    #: ``flip_audit_min_precision`` of them. Guards against an RM whose confident
    #: disagreements are wrong (measured on HH's raw labels, where unaudited flips hurt).
    flip_audit: int = Field(default=0, ge=0)
    flip_audit_min_precision: float = Field(default=0.6, gt=0.0, le=1.0)
    #: The "RLTHF without flips" ablation: False keeps every label right of the reflection
    #: point as it is, so all of the gain must come from the paid human answers.
    apply_flips: bool = True
    #: The paper's eyes-off sanity check: people look at this many pairs from the very top
    #: of each curve (the top-left < 0.1 %, where labels should all be right), paid from the
    #: iteration's budget. The ground-truth side of the check is always reported.
    eyes_off_spot_check: int = Field(default=0, ge=0)
    #: Beyond the paper: score each pair with an RM not trained on it (k folds), so the RM
    #: cannot hide label noise it memorised. None = auto: 5 for embedding_head (cheap),
    #: 0 (the paper's plain margins) for finetune and lora, where k extra fits per iteration
    #: cost minutes on a CPU (finetune) or GPU hours (lora).
    cross_fit_folds: int | None = Field(default=None, ge=0)

    #: ``random_flips``: Random annotation after the same flip step as RLTHF's iteration 0.
    baselines: list[Literal["ai_only", "random", "random_flips", "full_human"]] = Field(
        default_factory=lambda: ["ai_only", "random", "random_flips", "full_human"])
    final_relabel: bool = True
    #: ``curated_then_rm`` (default): the shard keeps its curated labels (human answers,
    #: flips, AI labels), the final RM labels only pairs the loop never saw — so the DPO
    #: corpus is never worse than what was curated (rlthf/final.py says why).
    #: ``rm``: the paper's variant, the final RM labels every train pair, human answers kept.
    final_labels: Literal["rm", "curated_then_rm"] = "curated_then_rm"
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _check(self):
        for b in self.backoff_schedule:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"backoff_schedule values must be in [0, 1), got {b}")
        if self.cross_fit_folds == 1:
            raise ValueError("cross_fit_folds must be 0 (off) or ≥ 2")
        return self

    @property
    def effective_cross_fit_folds(self) -> int:
        if self.cross_fit_folds is not None:
            return self.cross_fit_folds
        return 5 if self.reward_model.backend == "embedding_head" else 0
