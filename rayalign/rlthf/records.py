"""The RLTHF run directory's schema: one pydantic model per record the loop writes.

The driver writes these records, the report and the progress printer read them, and the
tests build fake runs from them — so a renamed key breaks all of them at once instead of
silently leaving a column empty. Files and the model that describes each row:

- ``metrics.jsonl``: ``IterationRow``, ``BaselineRow``, ``FinalRow`` (told apart by ``kind``)
- ``iterations/iter_NN/curve.json``: ``CurveRecord``
- ``iterations/iter_NN/selection.json``: ``SelectionRecord``
- ``iterations/iter_NN/margins.jsonl``: ``MarginRow``
- ``iterations/iter_NN/error_model.json``: ``ErrorModelRecord``
- ``humans/labels.jsonl`` and ``iterations/iter_NN/human_labels.jsonl``: ``HumanLabelRow``

Reading tolerates unknown keys (``extra="ignore"``) so an older run still opens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from rayalign.humans.ledger import HumanLabelRow  # noqa: F401  (re-exported: part of the schema)
from rayalign.runs import atomic_write_json, read_jsonl

__all__ = ["Accuracies", "BaselineRow", "CurveRecord", "ErrorModelRecord", "FinalRow", "HumanLabelRow", "IterationRow", "MarginRow",
           "MetricRow", "OriginStat", "SelectionRecord", "Spend", "latest", "parse_metric", "read_metrics",
           "read_record", "write_record"]


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- metrics.jsonl ---------------------------------------------------------------------------
class Accuracies(Record):
    """The two accuracies, never mixed up (DESIGN.md): RM test accuracy is the paper's metric."""

    ground_truth: str | None = None
    #: held-out split scored by the RM trained on this row's labels
    rm_test_acc: float | None = None
    rm_test_acc_raw: float | None = None
    #: the training labels (after flips and human answers) against ground truth, over the shard
    curated_acc: float | None = None
    curated_acc_raw: float | None = None
    #: curated_acc − the AI labels' accuracy, split by where the change came from:
    #: flips cost nothing, human answers are paid for (ROI is computed on these alone)
    gain_from_flips: float | None = None
    gain_from_humans: float | None = None


class Spend(Record):
    """Pairs people were shown (A/B answers, ties and skips all cost a look)."""

    human_count: int = 0
    human_no_label: int = 0
    #: share of the whole train split (the paper's "% of the corpus")
    human_pct: float = 0.0
    human_pct_shard: float = 0.0
    #: of the pairs shown, those whose AI label was wrong against ground truth: what a human
    #: label is for. Per 100 human labels, the number targeting exists to raise.
    judge_errors_found: int | None = None
    errors_per_100_labels: float | None = None


class IterationRow(Accuracies, Spend):
    """One RLTHF iteration: the state going in (counts, accuracies) and the round it ran.

    ``human_count``/accuracies describe the labels iteration k *trains on* (bought in
    iterations < k); ``human_batch``/``flips`` are what iteration k *did* (used from k+1 on).
    """

    kind: Literal["iteration"] = "iteration"
    method: str = "rlthf"
    iteration: int
    train_size: int = 0
    labeller: str | None = None
    targeting: str = "paper"
    apply_flips: bool = True
    #: held-out test accuracy of an RM fit on the whole curated label set (every shard pair,
    #: weight 1: the baselines' protocol), beside the iteration's own RM (``rm_test_acc``)
    rm_test_acc_curated: float | None = None
    #: the iteration RM's agreement with the labels on held-out folds (cross-fitted margins)
    rm_heldout_agreement: float | None = None
    elbow: int | None = None
    knee: int | None = None
    reflection: int | None = None
    curve_fallback: str | None = None
    # -- the round (absent in the last iteration: it only measures) -------------------------
    flips: int | None = None
    flips_correct: int | None = None
    flip_candidates: int | None = None
    human_batch: int | None = None           # A/B answers bought this iteration
    human_batch_no_label: int | None = None  # ties/skips bought this iteration
    human_batch_ai_wrong: int | None = None
    backoff: float | None = None
    trusted: int | None = None
    flip_audit: int | None = None
    flip_audit_precision: float | None = None
    #: the flip gate's verdict in one line, and its pooled audit evidence
    flip_gate: str | None = None
    flip_audit_lower_bound: float | None = None
    #: the batch by why each pair was asked, and judge errors (vs ground truth) in each part
    random_share: int | None = None
    random_share_ai_wrong: int | None = None
    targeted: int | None = None
    targeted_ai_wrong: int | None = None     # / targeted = the error model's precision at the budget
    human_batch_disagree: int | None = None  # answers that contradict the label (no ground truth needed)
    # -- the paper's eyes-off sanity check of the curve's top-left ---------------------------
    top_left_n: int | None = None            # pairs in the top 0.1 % of the curve (≥ 1)
    top_left_wrong: int | None = None        # of those, labels wrong vs ground truth
    trusted_head: int | None = None          # pairs left of the backed-off knee
    trusted_wrong: int | None = None         # labels wrong vs ground truth in the trusted head
    spot_check: int | None = None            # top-left pairs shown to people this iteration
    spot_check_disagree: int | None = None   # of those, people disagreed with the label
    time: float = Field(default_factory=time.time)


class BaselineRow(Accuracies, Spend):
    kind: Literal["baseline"] = "baseline"
    #: ai_only | random | random_flips | full_human
    method: str
    flips: int | None = None
    rm_test_acc_sd: float | None = None
    curated_acc_sd: float | None = None
    time: float = Field(default_factory=time.time)


class OriginStat(Record):
    pairs: int
    acc: float | None = None


class FinalRow(Record):
    """What the final relabelling wrote for DPO, and how accurate it is, by label origin."""

    kind: Literal["final"] = "final"
    pairs: int
    from_iteration: int
    labels: str
    written_acc: float | None = None          # accuracy of final/relabelled_trl.jsonl
    curated_acc: float | None = None          # the loop's curated labels (shard)
    written_acc_shard: float | None = None    # the written labels on the same shard pairs
    written_acc_outside_shard: float | None = None
    rm_only_acc: float | None = None          # had the final RM labelled everything (humans kept)
    by_origin: dict[str, OriginStat] = Field(default_factory=dict)
    time: float = Field(default_factory=time.time)


MetricRow = Union[IterationRow, BaselineRow, FinalRow]
_KINDS = {"iteration": IterationRow, "baseline": BaselineRow, "final": FinalRow}


def parse_metric(row: dict[str, Any]) -> MetricRow | None:
    """A metrics.jsonl row as its model; None for kinds this schema does not know."""
    model = _KINDS.get(row.get("kind", ""))
    return model.model_validate(row) if model else None


def read_metrics(path: Path) -> list[MetricRow]:
    if not path.is_file():
        return []
    return [m for m in (parse_metric(r) for r in read_jsonl(path)) if m is not None]


def latest(rows: list[MetricRow], kind: type) -> list:
    """One row per (method, iteration, human count): a resumed run may log a step twice."""
    seen: dict[tuple, Any] = {}
    for r in rows:
        if isinstance(r, kind):
            seen[(getattr(r, "method", None), getattr(r, "iteration", None),
                  getattr(r, "human_count", None))] = r
    return list(seen.values())


# -- iteration files -------------------------------------------------------------------------
class CurveRecord(Record):
    n: int
    elbow: int | None = None
    knee: int | None = None
    reflection: int | None = None
    elbow_margin: float | None = None
    threshold_slope: float | None = None
    fallback: str | None = None
    notes: list[str] = Field(default_factory=list)
    #: flips actually applied (0 when vetoed or ``apply_flips: false``), and A/B answers bought
    flip_count: int = 0
    human_batch_count: int = 0


class SelectionRecord(Record):
    flips: list[str] = Field(default_factory=list)           # candidates right of the reflection
    human_batch: list[str] = Field(default_factory=list)
    trusted: list[str] = Field(default_factory=list)
    human_start: int | None = None
    trusted_cut: int | None = None
    flip_audit: list[str] = Field(default_factory=list)
    spot_check: list[str] = Field(default_factory=list)
    amplification: int | None = None
    backoff: float | None = None
    budget: int | None = None
    flips_applied: bool = True
    targeting: str = "paper"
    random_share: list[str] = Field(default_factory=list)
    flip_gate: str | None = None


class MarginRow(Record):
    id: str
    rank: int
    label: str
    margin: float
    origin: str
    correct: bool | None = None
    #: the error model's P(label wrong) (targeting: error_model; None for pairs people answered)
    p_wrong: float | None = None


class ErrorModelRecord(Record):
    """The error model of one iteration (``rlthf.error_model.ErrorModel.to_json``), persisted
    before the batch is drawn so a rerun reuses it instead of refitting."""

    iteration: int
    model: dict[str, Any]
    features: list[str]
    #: pairs still unseen, and the mean P(wrong) over them / over the targeted batch
    pool: int = 0
    mean_p_wrong: float | None = None


def write_record(path: Path, record: Record) -> None:
    atomic_write_json(path, record.to_json())


def read_record(path: Path, model: type[Record]) -> Any:
    return model.model_validate(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
