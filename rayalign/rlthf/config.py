"""The RLTHF job's config: every knob of the loop, with the paper's defaults."""

from __future__ import annotations

import re
from pathlib import Path
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


class JudgeSource(StrictModel):
    """One source of AI verdicts: a simulation, a recorded file, or a real LLM judge."""

    kind: Literal["simulated", "replay", "judge"] = Field(
        default="simulated", description="simulated | replay (a recorded file) | judge (a live LLM judge)")
    name: str | None = Field(default=None, description="shown in reports; default: from the file or kind")
    simulated: SimulatedLabellerConfig = Field(default_factory=SimulatedLabellerConfig)
    replay_path: str | None = Field(
        default=None,
        description="recorded verdicts: a JSONL of rows {id, label[, shown_first][, confidence]} (or "
                    "`rayalign label`'s judgments.jsonl), or bundled:pandalm_gpt35 / bundled:pandalm_7b "
                    "(real gpt-3.5-turbo / PandaLM-7B verdicts on the bundled PandaLM pairs); "
                    "see rayalign.feedback.replay")
    judge: JudgeConfig | None = Field(default=None, description="the LLM judge of kind 'judge'")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "replay" and not self.replay_path:
            raise ValueError("kind 'replay' needs replay_path")
        if self.kind == "judge" and self.judge is None:
            raise ValueError("kind 'judge' needs a judge mapping")
        if self.replay_path and self.replay_path.startswith("bundled:"):
            from rayalign.data.bundled import BUNDLED_VERDICTS

            name = self.replay_path.split(":", 1)[1]
            if name not in BUNDLED_VERDICTS:
                raise ValueError(f"unknown bundled verdicts {name!r}; valid: "
                                 + ", ".join(f"bundled:{n}" for n in sorted(BUNDLED_VERDICTS)))
        return self

    def display_name(self, default: str) -> str:
        if self.name:
            return self.name
        if self.kind == "replay" and self.replay_path:
            tail = self.replay_path.split(":", 1)[1] if self.replay_path.startswith("bundled:") else self.replay_path
            return Path(tail).name.split(".")[0] or default
        return default


class LabellerConfig(JudgeSource):
    """Who gives the AI labels, and which further judges give a second opinion.

    ``extra_judges`` never label a pair the labeller decided; their verdicts are evidence:
    where they disagree with the labeller, or abstain, the error model expects mistakes and
    people look there first. Where the labeller abstains, their consensus is the AI label.
    """

    extra_judges: list[JudgeSource] = Field(
        default_factory=list, description="second opinions (each simulated, replayed or a live judge)")

    @model_validator(mode="after")
    def _unique_names(self):
        names = self.extra_names()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"extra_judges need distinct names (set `name`); repeated: {', '.join(dup)}")
        return self

    def extra_names(self) -> list[str]:
        """File-safe names of the extra judges (``data/extra_judgments/<name>.jsonl``)."""
        return [re.sub(r"[^A-Za-z0-9_.-]+", "_", j.display_name(f"judge{k + 2}")) for k, j in enumerate(self.extra_judges)]


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


class ErrorModelConfig(StrictModel):
    """The error model behind ``targeting: error_model`` (``rayalign.rlthf.error_model``)."""

    random_share: float = Field(default=0.1, ge=0.0, le=0.5,
                                description="share of each human batch drawn at random (≥ 1 pair when > 0)")
    prior_error_rate: float = Field(default=0.2, gt=0.0, lt=0.5,
                                    description="the prior's error rate of an AI label with no warning sign")
    prior_weight: float = Field(default=2.0, ge=0.0,
                                description="the prior's weight, in rounds of human answers")
    c: float = Field(default=1.0, gt=0.0, description="inverse L2 strength of the logistic fit")


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
    targeting: Literal["error_model", "paper"] = Field(
        default="error_model",
        description="error_model: ask where P(AI label wrong) is highest (every signal, refit on each answer); "
                    "paper: the RLTHF paper's curve policy (ask left of the reflection point, flip right of it)")
    error_model: ErrorModelConfig = Field(default_factory=ErrorModelConfig)
    flip_audit: int | None = Field(
        default=None, ge=0,
        description="human labels per round spent on a random sample of the flip candidates; None = auto: "
                    "a third of the budget with targeting error_model, 0 (unaudited, as the paper) with paper")
    flip_window: float = Field(
        default=2.0, gt=0.0,
        description="targeting error_model: each round's flip candidates are at most this many budgets of the "
                    "highest-P(wrong) pairs after the targeted batch (the audit samples exactly these)")
    flip_confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0,
        description="flips need the audited candidates' one-sided Wilson lower bound at this confidence above 0.5, "
                    "and a reward model better than chance on held-out folds at the same confidence")
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

    curated_rm: bool | None = Field(
        default=None, description="each iteration also fits an RM on the whole curated label set and reports "
                                  "its test accuracy (the baselines' protocol); None = auto: embedding_head only")
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
    def measures_curated_rm(self) -> bool:
        return self.curated_rm if self.curated_rm is not None else self.reward_model.backend == "embedding_head"

    def flip_audit_for(self, budget: int) -> int:
        """Audited flip candidates per round of ``budget`` human labels (see ``flip_audit``)."""
        if self.flip_audit is not None:
            return min(self.flip_audit, budget)
        return 0 if self.targeting == "paper" else budget // 3

    @property
    def effective_cross_fit_folds(self) -> int:
        if self.cross_fit_folds is not None:
            return self.cross_fit_folds
        return 5 if self.reward_model.backend == "embedding_head" else 0
