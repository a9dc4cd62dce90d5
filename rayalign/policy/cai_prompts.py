"""Prompts and output clean-up of Constitutional AI (critique, revision, multiple choice).

Each request is one user message that shows the conversation so far, so the same request
goes through an in-process engine or the Ray Data generation fan-out (which takes a single
prompt per row) unchanged. Wording is rayalign's own.
"""

from __future__ import annotations

import re

from rayalign.engines.base import Message
from rayalign.policy.principles import Principle
from rayalign.policy.prompts import response_messages

#: Labels of the two options in the preference question, and the prefill after which the
#: next token is one of them (so their log-probs are the feedback model's choice).
OPTIONS = ("A", "B")
CHOICE_PREFILL = "The better answer is ("


def answer_messages(prompt: str, max_chars: int | None) -> list[Message]:
    """The policy's first answer (and the SL-CAI SFT prompt, so training matches sampling)."""
    return response_messages(prompt, max_chars)


def _dialogue(prompt: str, answer: str) -> str:
    return f"Person: {prompt.strip()}\n\nAssistant: {answer.strip()}"


def critique_messages(prompt: str, answer: str, principle: Principle) -> list[Message]:
    text = ("Below is a conversation between a person and an AI assistant.\n\n"
            f"{_dialogue(prompt, answer)}\n\n"
            f"Critique request: {principle.critique}\n"
            "Write a short critique of the assistant's answer (two or three sentences).")
    return [{"role": "user", "content": text}]


def revision_messages(prompt: str, answer: str, critique: str, principle: Principle,
                      max_chars: int | None) -> list[Message]:
    limit = f" in at most {max_chars} characters" if max_chars else ""
    text = ("Below is a conversation between a person and an AI assistant, and a critique of "
            f"the assistant's answer.\n\n{_dialogue(prompt, answer)}\n\n"
            f"Critique: {critique.strip()}\n\n"
            f"Revision request: {principle.revision}\n"
            f"Write only the new answer to the person{limit}, with nothing before or after it.")
    return [{"role": "user", "content": text}]


def choice_messages(prompt: str, answer_a: str, answer_b: str, principle: Principle,
                    prefill: bool = True) -> list[Message]:
    """The multiple-choice question of the preference phase: "(A) ... (B) ...".

    With ``prefill`` the assistant turn is started with ``CHOICE_PREFILL`` so the next token
    is the option label (log-probs are read there; a generated answer starts there too).
    """
    text = ("Consider this request a person sent to an AI assistant, and two possible "
            f"answers.\n\nPerson: {prompt.strip()}\n\n{principle.compare}\n\n"
            f"Options:\n(A) {answer_a.strip()}\n\n(B) {answer_b.strip()}\n\n"
            "Reply with (A) or (B).")
    msgs: list[Message] = [{"role": "user", "content": text}]
    if prefill:
        msgs.append({"role": "assistant", "content": CHOICE_PREFILL})
    return msgs


_LEAD = re.compile(r"^\s*(?:\**\s*(?:revised answer|revised response|revision|new answer|answer|"
                   r"critique)\s*\**\s*:\s*)", re.IGNORECASE)


def clean_output(text: str) -> str:
    """A critique or revision without a leading "Revision:"-style label or wrapping quotes."""
    t = _LEAD.sub("", text or "").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t


_CHOICE = re.compile(r"^\s*\(?\s*([AB])\b")


def parse_choice(text: str, prefilled: bool) -> str | None:
    """The chosen label of a generated answer, or None when it names neither or both.

    After the prefill the continuation should start with the label ("A) ..."); without it
    the shared pairwise parser reads the usual phrasings."""
    if prefilled:
        m = _CHOICE.match(text or "")
        if m:
            return m.group(1)
    from rayalign.feedback.parsers import ParseError, parse_pairwise

    try:
        return parse_pairwise(("(" if prefilled else "") + (text or "")).label
    except ParseError:
        return None
