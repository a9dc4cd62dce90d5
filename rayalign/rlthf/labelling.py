"""AI labels for the RLTHF loop: simulated, replayed from a file, or a real LLM judge.

Whatever the source, the result is a list of ``Judgment`` rows persisted in the run
directory, each recording which response was shown as A (``shown_a``); a rerun only asks
for the pairs that have no row yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rayalign.data.schema import Judgment, Label, PairwiseItem, response_key
# The recorded-judgment parser is shared with ``judge.kind: replay`` of ``rayalign label``.
from rayalign.feedback.replay import load_replay
from rayalign.feedback.simulated import SimulatedLabeller
from rayalign.feedback.config import JudgeConfig
from rayalign.rlthf.config import LabellerConfig

__all__ = ["get_ai_labels", "label_with_judge", "load_replay"]


def label_with_judge(judge_cfg: JudgeConfig, items: Sequence[PairwiseItem], cache_path: Path) -> list[Judgment]:
    """A real LLM judge through the Ray Data labelling pipeline (cached, fault tolerant)."""
    from rayalign.feedback.pipeline import label_pairs

    result = label_pairs(list(items), judge_cfg, cache_path=cache_path)
    judgments = getattr(result, "judgments", result)
    return list(judgments)


def get_ai_labels(cfg: LabellerConfig, items: Sequence[PairwiseItem], truth: dict[str, Label] | None,
                  cache_path: Path) -> list[Judgment]:
    if not items:
        return []
    if cfg.kind == "simulated":
        if truth is None:
            raise ValueError("the simulated labeller needs ground-truth labels")
        out = SimulatedLabeller(cfg.simulated).label(items, truth)
    elif cfg.kind == "replay":
        out = load_replay(cfg.replay_path, items)  # type: ignore[arg-type]
    else:
        assert cfg.judge is not None  # LabellerConfig refuses kind judge without one
        out = label_with_judge(cfg.judge, items, cache_path)
    if [j.item_id for j in out] != [it.id for it in items]:
        raise RuntimeError(f"the {cfg.kind} labeller returned judgments out of order or incomplete")
    return [j.model_copy(update={"shown_a": response_key(it.response_a)}) for j, it in zip(out, items)]
