"""AI labels for the RLTHF loop: simulated, replayed from a file, or a real LLM judge.

Whatever the source, the result is a list of ``Judgment`` rows persisted in the run
directory; a rerun only asks for the pairs that have no row yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rayalign.data.schema import Judgment, Label, PairwiseItem
# The recorded-judgment parser is shared with ``judge.kind: replay`` of ``rayalign label``.
from rayalign.feedback.replay import load_replay
from rayalign.feedback.simulated import SimulatedLabeller
from rayalign.rlthf.config import LabellerConfig

__all__ = ["get_ai_labels", "label_with_judge", "load_replay"]


def label_with_judge(judge_cfg: dict, items: Sequence[PairwiseItem], cache_path: Path) -> list[Judgment]:
    """A real LLM judge through the Ray Data labelling pipeline (cached, fault tolerant)."""
    from rayalign.config import validate_config
    from rayalign.feedback.config import JudgeConfig
    from rayalign.feedback.pipeline import label_pairs

    cfg = validate_config(JudgeConfig, judge_cfg, source="labeller.judge")
    result = label_pairs(list(items), cfg, cache_path=cache_path)
    judgments = getattr(result, "judgments", result)
    return list(judgments)


def get_ai_labels(cfg: LabellerConfig, items: Sequence[PairwiseItem], truth: dict[str, Label] | None,
                  cache_path: Path) -> list[Judgment]:
    if not items:
        return []
    if cfg.kind == "simulated":
        if truth is None:
            raise ValueError("the simulated labeller needs ground-truth labels")
        return SimulatedLabeller(cfg.simulated).label(items, truth)
    if cfg.kind == "replay":
        return load_replay(cfg.replay_path, items)  # type: ignore[arg-type]
    return label_with_judge(cfg.judge or {}, items, cache_path)
