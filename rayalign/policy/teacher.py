"""Teacher-guided pairs: a stronger model judges (teacher-reward) or answers (teacher-demo).

* teacher-reward (online AI feedback): the student's N candidates are scored by the
  *teacher* with the same 5-point rubric; best vs worst as in self-reward. Only the judge
  changes, so this reuses ``self_reward.score_candidates`` / ``build_pairs``.
* teacher-demonstration: the teacher's answer is the chosen response and the student's
  answer the rejected one; no judging step at all.

The teacher is any ``Engine``: an OpenAI-compatible endpoint (a hosted model, a vLLM
server), a local transformers model, or a replay of reference answers (``ReplayEngine``,
named "simulated" because it is not a model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from rayalign.data.schema import PreferencePair, PromptRecord
from rayalign.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from rayalign.policy.prompts import response_messages
from rayalign.policy.self_reward import CandidateSet


def teacher_answers(teacher: Engine, prompts: Sequence[PromptRecord], *,
                    params: SamplingParams | None = None,
                    max_answer_chars: int | None = 256) -> list[CandidateSet]:
    """One teacher answer per prompt (greedy by default: the teacher's best attempt)."""
    params = params or SamplingParams(max_tokens=256, temperature=0.0)
    reqs = [GenerationRequest(id=p.id, messages=response_messages(p.prompt, max_answer_chars),
                              params=params.model_copy(update={"n": 1})) for p in prompts]
    out = []
    for p, res in zip(prompts, teacher.generate(reqs)):
        out.append(CandidateSet(prompt_id=p.id, prompt=p.prompt, texts=list(res.texts[:1]),
                                generator=getattr(teacher, "spec", ""),
                                errors=[res.error] if res.error else []))
    return out


@dataclass
class DemoStats:
    prompts: int = 0
    pairs: int = 0
    skipped_no_teacher: int = 0
    skipped_no_student: int = 0
    skipped_identical: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def demo_pairs(teacher_sets: Sequence[CandidateSet], student_sets: Sequence[CandidateSet], *,
               iteration: int = 0) -> tuple[list[PreferencePair], DemoStats]:
    """Teacher answer = chosen, student answer = rejected (first student sample per prompt).

    Prompts where either side has no usable answer, or both wrote the same text, give no
    pair and are counted."""
    student = {s.prompt_id: s for s in student_sets}
    stats = DemoStats()
    pairs = []
    for t in teacher_sets:
        stats.prompts += 1
        s = student.get(t.prompt_id)
        t_text = next((x for x in t.texts if x.strip()), None)
        s_text = next((x for x in (s.texts if s else []) if x.strip()), None)
        if t_text is None:
            stats.skipped_no_teacher += 1
            continue
        if s_text is None:
            stats.skipped_no_student += 1
            continue
        if t_text.strip() == s_text.strip():
            stats.skipped_identical += 1
            continue
        pairs.append(PreferencePair(
            prompt=t.prompt, chosen=t_text, rejected=s_text, source="teacher-demo",
            meta={"prompt_id": t.prompt_id, "teacher": t.generator,
                  "student": s.generator if s else "", "iteration": iteration}))
    stats.pairs = len(pairs)
    return pairs, stats


class ReplayEngine:
    """An engine that answers from a table of reference answers keyed by the prompt text.

    It stands in for a teacher when no stronger model is at hand (e.g. OASST's best human
    answers for OASST prompts); its ``spec`` says "simulated" so no output can pass it off
    as a model. A prompt it has no answer for is an error result, never an invented text.
    """

    def __init__(self, answers: Mapping[str, str], name: str = "replay"):
        self.answers = dict(answers)
        self.name = name

    @property
    def spec(self) -> str:
        return f"simulated:{self.name}"

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            user = next((m["content"] for m in reversed(r.messages) if m["role"] == "user"), "")
            hit = self.answers.get(user)
            if hit is None:  # the response template wraps the prompt: look for it inside
                hit = next((a for p, a in self.answers.items() if p and p in user), None)
            if hit is None:
                out.append(GenerationResult(id=r.id, error="simulated teacher has no answer"))
            else:
                out.append(GenerationResult(id=r.id, texts=[hit] * r.params.n))
        return out
