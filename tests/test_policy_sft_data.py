"""IFT / EFT seed data from the OASST ranked answers, and the held-out judge questions."""

from __future__ import annotations

from rayalign.data.schema import RankedAnswer
from rayalign.feedback.templates import ADDITIVE_RUBRIC
from rayalign.policy.sft_data import load_ranked
from rayalign.policy.prompts import eft_rationale
from rayalign.policy.sft_data import (
    eft_examples, ift_examples, rank_to_score, rm_eval_groups, split_by_question,
)


def _rows():
    r = lambda q, a, k: RankedAnswer(prompt=q, response=a, rank=k)  # noqa: E731
    return [r("q1", "best1", 0), r("q1", "mid1", 1), r("q1", "low1", 5),
            r("q2", "only2", 0),
            r("q3", "second3", 1), r("q3", "third3", 2)]


def test_ift_takes_the_rank0_answer_per_question():
    ex = ift_examples(_rows())
    assert [(e["prompt"][-1]["content"], e["completion"][0]["content"]) for e in ex] == \
        [("q1", "best1"), ("q2", "only2")]       # q3 has no rank-0 answer


def test_eft_targets_follow_the_human_rank():
    ex = eft_examples(_rows(), min_answers=2)
    got = sorted((e["rank"], e["score"]) for e in ex)
    assert got == [(0, 5), (1, 4), (1, 4), (2, 3), (5, 1)]  # q2 (one answer) is not EFT data
    e = next(x for x in ex if x["rank"] == 0)
    # The prompt is exactly what the rubric judge sends at inference.
    assert e["prompt"] == ADDITIVE_RUBRIC.render_score("q1", "best1")
    target = e["completion"][0]["content"]
    assert target.endswith("Score: 5") and ADDITIVE_RUBRIC.parse(target).score == 5
    assert [rank_to_score(k) for k in (0, 1, 2, 3, 4, 9)] == [5, 4, 3, 2, 1, 1]
    for s in range(6):
        assert ADDITIVE_RUBRIC.parse(eft_rationale(s)).score == s


def test_split_holds_out_whole_questions_on_the_real_data():
    rows = load_ranked(None)                       # the bundled OASST slice
    assert len(rows) == 3032
    sp = split_by_question(rows, n_eval_questions=10, min_eval_answers=3, seed=0)
    held = {r.prompt for r in sp.eval}
    assert len(held) == 10 and not held & {r.prompt for r in sp.train}
    assert len(sp.train) + len(sp.eval) == len(rows)
    groups = rm_eval_groups(sp.eval, max_answers=4)
    assert len(groups) == 10
    assert all(3 <= len(g["responses"]) <= 4 and g["ranks"] == sorted(g["ranks"]) for g in groups)
    # Same seed, fewer questions: a prefix of the same held-out set (evaluation stays held out).
    small = {r.prompt for r in split_by_question(rows, 4, seed=0).eval}
    assert small <= held
    assert len(ift_examples(sp.train, limit=50)) == 50


def test_eval_holds_out_only_questions_with_enough_ranks():
    sp = split_by_question(_rows(), n_eval_questions=5, min_eval_answers=3)
    assert [r.prompt for r in sp.eval] == ["q1", "q1", "q1"]  # only q1 has 3 distinct ranks
