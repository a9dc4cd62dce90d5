"""Judge prompt templates, versioned, so a cache entry always says which prompt produced it.

Three families:

* ``rlthf_pairwise`` — the structure of the RLTHF paper's labelling prompt (appendix A):
  a task description, the user's preference criteria, optional few-shot examples with
  rationales, the sample, and an answer format "Rationale: ... / Preference: Response A|B".
  Task and criteria are the user's to set (the paper insists the prompt is not tuned);
  the defaults below fit HH-RLHF (helpful, honest, harmless).
* ``additive_rubric`` — the 5-point additive scoring of the self-rewarding / teacher-guided
  studies: one point per criterion met, answer ends with "Score: <n>".
* ``alpaca_pairwise`` — AlpacaEval-style leaderboard ranking of two model outputs
  (answer is a ranking list), as used for win rates.

The wording is ours. A template's ``hash`` covers every character that reaches the model,
so editing a template invalidates exactly the cache entries it produced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import Field

from rayalign.config import StrictModel
from rayalign.feedback.parsers import PairVerdict, ScoreVerdict, parse_pairwise, parse_ranking, parse_score

Messages = list[dict[str, str]]


class FewShotExample(StrictModel):
    """A worked example shown to the judge before the sample (RLTHF's optional few-shot)."""

    prompt: str
    response_a: str
    response_b: str
    preference: Literal["A", "B"]
    rationale: str = ""


class PromptOptions(StrictModel):
    """What a user tunes in the pairwise prompt without touching code."""

    task: str = Field(default=(
        "An AI assistant is talking with a person. Given the conversation so far, its next "
        "reply should be as helpful as possible while staying honest and harmless."))
    criteria: list[str] = Field(default_factory=lambda: [
        "Helpfulness: the reply is relevant to what the person asked, clear, and actually "
        "moves their task or question forward in this context.",
        "Honesty: the reply is accurate and does not invent facts or overstate certainty.",
        "Harmlessness: the reply avoids content that is dangerous, unethical, abusive or "
        "illegal, and declines such requests politely instead of assisting them.",
    ])
    few_shot: list[FewShotExample] = Field(default_factory=list)
    #: Ask for a short rationale before the verdict (chain of thought); off = verdict only.
    chain_of_thought: bool = True
    #: Start the judge's answer for it (e.g. "Preference: Response"), so a small model only
    #: has to write the letter. Honoured by local engines (hf_local, vllm, our Serve app);
    #: hosted APIs treat a trailing assistant message as history, so leave it unset there.
    answer_prefill: str | None = None


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    version: str
    kind: Literal["pairwise", "score"]
    system: str
    user: str
    parser: Callable[..., PairVerdict | ScoreVerdict] = field(compare=False)
    max_score: float = 5.0

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.name, self.version, self.kind, self.system, self.user):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()[:16]

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}#{self.hash}"

    # -- rendering ----------------------------------------------------------------------
    def render_pairwise(self, prompt: str, response_a: str, response_b: str,
                        options: PromptOptions | None = None) -> Messages:
        if self.kind != "pairwise":
            raise ValueError(f"template {self.name} scores single responses, not pairs")
        opts = options or PromptOptions()
        user = self.user.format(
            task=opts.task.strip(),
            criteria="\n".join(f"- {c.strip()}" for c in opts.criteria),
            few_shot=_few_shot_block(opts.few_shot, opts.chain_of_thought),
            prompt=prompt.strip(), response_a=response_a.strip(), response_b=response_b.strip(),
            answer_format=_answer_format(opts.chain_of_thought),
        )
        msgs = _messages(self.system, user)
        if opts.answer_prefill:
            msgs.append({"role": "assistant", "content": opts.answer_prefill})
        return msgs

    def render_score(self, prompt: str, response: str) -> Messages:
        if self.kind != "score":
            raise ValueError(f"template {self.name} compares pairs, it does not score")
        return _messages(self.system, self.user.format(prompt=prompt.strip(), response=response.strip()))

    def parse(self, text: str, truncated: bool = False) -> PairVerdict | ScoreVerdict:
        if self.kind == "score":
            return self.parser(text, max_score=self.max_score, truncated=truncated)
        return self.parser(text, truncated=truncated)


def _messages(system: str, user: str) -> Messages:
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": user})
    return out


def _answer_format(cot: bool) -> str:
    # The format line names both options inside one placeholder: a model that merely echoes
    # it produces "Preference: <Response A or Response B>", which the parser rejects, instead
    # of a line that reads as a vote for A.
    if cot:
        return ("Answer in exactly this format, and write nothing after it:\n"
                "Rationale: <two or three sentences of reasoning>\n"
                "Preference: <Response A or Response B>")
    return ("Answer with one line in exactly this format and nothing else:\n"
            "Preference: <Response A or Response B>")


def _few_shot_block(examples: list[FewShotExample], cot: bool) -> str:
    if not examples:
        return ""
    parts = ["## EXAMPLES"]
    for i, ex in enumerate(examples, 1):
        ans = (f"Rationale: {ex.rationale.strip()}\n" if cot and ex.rationale else "")
        parts.append(
            f"### Example {i}\nConversation:\n{ex.prompt.strip()}\n\n"
            f"Response A: {ex.response_a.strip()}\nResponse B: {ex.response_b.strip()}\n\n"
            f"{ans}Preference: Response {ex.preference}")
    return "\n\n".join(parts) + "\n-----\n"


RLTHF_PAIRWISE = JudgeTemplate(
    name="rlthf_pairwise",
    version="2",
    kind="pairwise",
    system=("You compare two candidate replies to the same input and decide which one "
            "better satisfies the criteria you are given. You are impartial: the order in "
            "which the replies appear and their length do not matter."),
    user=("## TASK\n{task}\n-----\n"
          "## CRITERIA\n{criteria}\n-----\n"
          "{few_shot}"
          "## INPUT\n{prompt}\n-----\n"
          "## CANDIDATE RESPONSES\n"
          "Response A: {response_a}\n\n"
          "Response B: {response_b}\n-----\n"
          "## INSTRUCTIONS\n"
          "1. Read the task, the criteria and the input carefully.\n"
          "2. Judge how well each response meets the criteria.\n"
          "3. Pick the response (A or B) that meets them better. If they seem equally good, "
          "still pick the one you would rather send.\n"
          "4. {answer_format}"),
    parser=parse_pairwise,
)

ADDITIVE_RUBRIC = JudgeTemplate(
    name="additive_rubric",
    version="1",
    kind="score",
    system="You grade an AI assistant's answer with an additive 5-point rubric.",
    user=("Read the user's request and the assistant's answer below, then grade the answer by "
          "adding up points; each point is earned on its own criterion:\n"
          "- 1 point if the answer is on topic and gives at least some information the user "
          "asked for, even if it is incomplete or wanders.\n"
          "- 1 more point if it covers a large part of the request but stops short of fully "
          "answering it.\n"
          "- 1 more point if it answers the core of the request usefully, whatever its style "
          "(it may read like a blog post or a search result).\n"
          "- 1 more point if it is written as an AI assistant speaking directly to the user, "
          "answers completely, and is organised and helpful, with at most small flaws in "
          "clarity, focus or length.\n"
          "- 1 more point if it is an excellent, expert answer fitted exactly to the request, "
          "with nothing superfluous, and engaging and insightful to read.\n\n"
          "User: {prompt}\n\n<response>{response}</response>\n\n"
          "Justify the total in at most 100 words, then end with the line\n"
          "Score: <total points from 0 to 5>"),
    parser=parse_score,
)

ALPACA_PAIRWISE = JudgeTemplate(
    name="alpaca_pairwise",
    version="1",
    kind="pairwise",
    system="You help build a leaderboard of language models by ranking their answers.",
    user=("We are ranking language models by the answers they give. Below is an instruction "
          "given to two models and the answer each one gave. Rank the two models by which "
          "answer a majority of people would find better: more helpful, accurate and "
          "harmless, while staying concise.\n\n"
          "Instruction:\n{prompt}\n\n"
          "Answer of model_1:\n{response_a}\n\n"
          "Answer of model_2:\n{response_b}\n\n"
          "Reply with only a Python list giving each model's rank (1 = better), like\n"
          "[{{'model': 'model_1', 'rank': 1}}, {{'model': 'model_2', 'rank': 2}}]\n"
          "and no other text."),
    parser=parse_ranking,
)

TEMPLATES: dict[str, JudgeTemplate] = {
    t.name: t for t in (RLTHF_PAIRWISE, ADDITIVE_RUBRIC, ALPACA_PAIRWISE)
}


def get_template(name: str) -> JudgeTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown judge template {name!r}; known: {', '.join(sorted(TEMPLATES))}") from None
