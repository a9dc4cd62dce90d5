"""AI labels for the RLTHF loop: simulated, replayed from a file, or a real LLM judge.

Whatever the source, the result is a list of ``Judgment`` rows persisted in the run
directory; a rerun only asks for the pairs that have no row yet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from rayalign.data.schema import Judgment, Label, PairwiseItem
from rayalign.feedback.simulated import SimulatedLabeller
from rayalign.rlthf.config import LabellerConfig


def load_replay(path: str | Path, items: Sequence[PairwiseItem]) -> list[Judgment]:
    """Recorded judgments: JSONL rows with ``id`` (or ``item_id``) and ``label`` A/B/tie."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay labels file not found: {p}")
    by_id: dict[str, Judgment] = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}:{n}: not valid JSON ({err.msg})") from None
            iid = row.get("id", row.get("item_id"))
            lab = row.get("label")
            if not isinstance(iid, str) or lab not in ("A", "B", "tie", None):
                raise ValueError(f"{p}:{n}: needs a string 'id' and a 'label' of A, B or tie")
            by_id[iid] = Judgment(item_id=iid, judge=f"replay:{p.name}", label=lab,
                                  rationale=str(row.get("rationale", "")))
    missing = [it.id for it in items if it.id not in by_id]
    if missing:
        raise ValueError(f"{p} has no label for {len(missing)} pairs (first: {missing[:3]})")
    return [by_id[it.id] for it in items]


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
