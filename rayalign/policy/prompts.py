"""Prompt templates of the self-learning loop (our own wording of the study's figures 2-4).

* ``prompt_synthesis_messages`` — few-shot request for ONE new task (study, figure 2): the
  model sees a handful of seed tasks and writes another one in the same spirit.
* ``response_messages`` — the answer request (figure 3): short, direct, no follow-up
  questions; small models otherwise wander into asking themselves new questions.
* ``rubric_messages`` — the 5-point additive judge (figure 4). The labelling area
  (``rayalign.feedback.templates``) owns that template; EFT training data must use the very
  prompt the judge uses at inference, so it is rendered from there, never copied.
"""

from __future__ import annotations

import re
from typing import Sequence

from rayalign.engines.base import Message

SYNTHESIS_INSTRUCTION = (
    "Below are some example tasks that people asked an assistant to do. Write ONE new task "
    "of the same kind: a different topic, self-contained, stated plainly in one or two "
    "sentences. Output only the task itself, with no answer, no numbering and no comments."
)


def prompt_synthesis_messages(examples: Sequence[str]) -> list[Message]:
    """Few-shot messages asking for one new task, in the spirit of the examples."""
    shots = "\n".join(f"Task: {' '.join(e.split())}" for e in examples)
    return [{"role": "user", "content": f"{SYNTHESIS_INSTRUCTION}\n\n{shots}\nTask:"}]


_LEAD = re.compile(r"^\s*(?:task\s*\d*\s*[:.)-]|new task\s*[:.)-]|\d+\s*[.)-]|[-*•]|question\s*:)\s*",
                   re.IGNORECASE)


def parse_synthesized_prompt(text: str) -> str:
    """The new task from a raw generation: first non-empty line, list markers and a
    leading "Task:" removed, surrounding quotes stripped."""
    for line in (text or "").splitlines():
        line = _LEAD.sub("", line).strip().strip('"').strip("'").strip()
        if line:
            return line
    return ""


RESPONSE_INSTRUCTION = (
    "Answer the request below directly, in at most {max_chars} characters. Keep it concise, "
    "do not ask questions back and do not add remarks about yourself. Request: {prompt}"
)


def response_messages(prompt: str, max_chars: int | None = 256) -> list[Message]:
    """The answer request; ``max_chars=None`` sends the bare prompt (evaluation, SFT)."""
    if max_chars is None:
        return [{"role": "user", "content": prompt}]
    return [{"role": "user", "content": RESPONSE_INSTRUCTION.format(max_chars=max_chars,
                                                                     prompt=prompt)}]


def rubric_messages(instruction: str, response: str) -> list[Message]:
    """The 5-point additive judge prompt, exactly as ``feedback.judges`` sends it
    (``rayalign.feedback.templates.ADDITIVE_RUBRIC``): EFT data must match it word for word."""
    from rayalign.feedback.templates import ADDITIVE_RUBRIC

    return ADDITIVE_RUBRIC.render_score(instruction, response)


# EFT targets: a short justification per total, naming which criteria of the rubric hold.
# Kept terse on purpose: a small judge must reach "Score: n" within a short token budget
# (a long justification cut at max_tokens loses the score and the judgment).
_CRITERIA = ["relevant", "covers much of the question", "useful answer to its core",
             "direct, complete and well organised", "expert and precisely tailored"]


def eft_rationale(score: int) -> str:
    """A judge answer for a known total: the criteria met, the first one missed, the score."""
    score = max(0, min(5, int(score)))
    met = ", ".join(_CRITERIA[:score]) or "nothing"
    missed = f" Not {_CRITERIA[score]}." if score < 5 else ""
    return f"Meets: {met}.{missed}\nScore: {score}"
