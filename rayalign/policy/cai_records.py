"""Red-team prompts and the per-prompt SL-CAI record (answer, then critique/revision rounds).

Plain data, kept apart from the loop so readers of ``sl/records.jsonl`` (tests, reports,
other jobs) need neither engines nor the run driver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rayalign.data.schema import PromptRecord, stable_id
from rayalign.runs import read_jsonl


# --------------------------------------------------------------------------- prompts
def first_human_turn(dialogue: str) -> str:
    """The opening human message of an HH-style "\\n\\nHuman: ...\\n\\nAssistant: ..." text."""
    text = dialogue.strip()
    if text.startswith("Human:"):
        text = text[len("Human:"):]
    return text.split("\n\nAssistant:")[0].strip()


def load_red_team_prompts(source: str, n: int, offset: int = 0, max_chars: int = 500) -> list[PromptRecord]:
    """``n`` distinct prompts (after ``offset``) no longer than ``max_chars``, in file order."""
    texts: list[str] = []
    if source.startswith("bundled:"):
        from rayalign.data.bundled import load_bundled

        texts = [first_human_turn(p.prompt) for p in load_bundled(source[len("bundled:"):])]
    else:
        for i, row in enumerate(read_jsonl(Path(source))):
            t = row.get("prompt")
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"{source}: row {i + 1}: field prompt: missing or empty")
            texts.append(t.strip())
    seen: set[str] = set()
    out: list[PromptRecord] = []
    for t in texts:
        if not t or len(t) > max_chars or t in seen:
            continue
        seen.add(t)
        out.append(PromptRecord(id=stable_id("cai", t), prompt=t, source=source))
    out = out[offset:offset + n]
    if not out:
        raise ValueError(f"{source}: no usable prompts (offset {offset}, max_chars {max_chars})")
    return out


# --------------------------------------------------------------------------- records
@dataclass
class CAIRecord:
    """One prompt's SL-CAI history: the first answer, then each round's critique/revision."""

    prompt_id: str
    prompt: str
    answer: str
    rounds: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def final(self) -> str:
        """The latest non-empty revision (the first answer when every revision failed)."""
        for r in reversed(self.rounds):
            if r.get("revision"):
                return r["revision"]
        return self.answer

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "final": self.final}


def record_from_dict(d: dict[str, Any]) -> CAIRecord:
    return CAIRecord(prompt_id=d["prompt_id"], prompt=d["prompt"], answer=d["answer"],
                     rounds=list(d.get("rounds", [])), errors=list(d.get("errors", [])))
