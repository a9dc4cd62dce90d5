"""Parsers read verdicts out of messy judge text, and refuse to guess when there is none."""

from __future__ import annotations

import pytest

from rayalign.feedback.parsers import ParseError, parse_pairwise, parse_ranking, parse_score
from rayalign.feedback.templates import (
    ADDITIVE_RUBRIC, ALPACA_PAIRWISE, RLTHF_PAIRWISE, FewShotExample, PromptOptions, get_template,
)


@pytest.mark.parametrize("text,label", [
    ("Rationale: B refuses politely.\nPreference: Response B", "B"),
    ("rationale: ok\npreference: \"Response A\"", "A"),
    ("**Rationale:** fine\n\n**Preference:** Response B", "B"),
    ("RATIONALE: x\nPREFERENCE: RESPONSE A\nI hope this helps!", "A"),
    ("Preference: Response 2", "B"),
    ("preference: response_1", "A"),
    ("Preference: A", "A"),
    ("Let me think. Response A is longer. Preference: Response A. Wait, actually\nPreference: Response B", "B"),
    ("My verdict: [[A]]", "A"),
    ("After reading both, Response B is clearly better.", "B"),
    ("Reasoning...\n\nB", "B"),
    ("`Preference: Response A`", "A"),
    ("Preference: <Response B>", "B"),
])
def test_pairwise_variants(text, label):
    assert parse_pairwise(text).label == label


@pytest.mark.parametrize("text", [
    "", "I cannot decide.", "Preference: Both", "Preference: A tie",
    "Response A is better in tone but Response B is better in substance.",
    "lorem ipsum dolor sit amet }{ <<<>>> 42",
    "Preference: <Response A or Response B>",  # the format line echoed back is not a vote
    'preference: "Response A" or "Response B"',
    "Preference: 1. Read the task, the criteria",  # an echoed numbered list
    "Preference: Response",  # a prefill the model did not continue
])
def test_pairwise_failures_keep_raw_text(text):
    with pytest.raises(ParseError) as ei:
        parse_pairwise(text)
    assert ei.value.raw == text


def test_truncated_output_says_so():
    with pytest.raises(ParseError, match="truncated"):
        parse_pairwise("Rationale: Response A is more", truncated=True)


def test_rationale_is_extracted():
    v = parse_pairwise("Rationale: B declines the harmful request.\nPreference: Response B")
    assert v.rationale == "B declines the harmful request."


@pytest.mark.parametrize("text,score", [
    ("The response is relevant (+1) and useful (+1).\nScore: 2", 2.0),
    ("**Score:** 4/5", 4.0), ("Score: 8/10", 4.0), ("Total score = 3.5", 3.5),
    ("Score: 1\n...\nScore: 5", 5.0), ("score: 0", 0.0),
])
def test_score_variants(text, score):
    assert parse_score(text).score == score


@pytest.mark.parametrize("text", ["Score: 7", "no score here", "Score: five"])
def test_score_failures(text):
    with pytest.raises(ParseError):
        parse_score(text)


def test_ranking():
    assert parse_ranking("[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]").label == "B"
    assert parse_ranking('```\n[{"model": "model_1", "rank": 1}, {"model": "model_2", "rank": 2}]\n```').label == "A"
    with pytest.raises(ParseError):
        parse_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]")


def test_templates_render_and_hash():
    opts = PromptOptions(task="Summarise the post.", criteria=["Short", "Faithful"],
                         few_shot=[FewShotExample(prompt="p", response_a="a", response_b="b",
                                                  preference="B", rationale="b is faithful")])
    msgs = RLTHF_PAIRWISE.render_pairwise("Human: {weird} braces", "first", "second", opts)
    user = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and "{weird}" in user
    assert user.index("Summarise the post.") < user.index("- Faithful") < user.index("Example 1") \
        < user.index("Response A: first") < user.index("Response B: second") < user.rindex("Preference:")
    no_cot = RLTHF_PAIRWISE.render_pairwise("p", "a", "b", PromptOptions(chain_of_thought=False))
    assert "Rationale:" not in no_cot[-1]["content"]
    assert "Score: <total points" in ADDITIVE_RUBRIC.render_score("q", "r")[-1]["content"]
    assert "model_2" in ALPACA_PAIRWISE.render_pairwise("q", "a", "b")[-1]["content"]
    assert len({t.hash for t in (RLTHF_PAIRWISE, ADDITIVE_RUBRIC, ALPACA_PAIRWISE)}) == 3
    assert get_template("rlthf_pairwise") is RLTHF_PAIRWISE
    with pytest.raises(ValueError, match="unknown judge template"):
        get_template("nope")
