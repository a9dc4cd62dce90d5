"""Self-reward / teacher pair construction: best vs worst, ties and unparseable counted."""

from __future__ import annotations

from policy_fakes import ScriptedEngine

from rayalign.data.schema import PromptRecord
from rayalign.engines.base import SamplingParams
from rayalign.policy.prompts import parse_synthesized_prompt
from rayalign.policy.self_reward import (
    CandidateSet, JudgedSet, RubricScorer, build_pairs, sample_candidates, score_candidates,
    synthesize_prompts,
)
from rayalign.policy.teacher import ReplayEngine, demo_pairs, teacher_answers


def _js(pid, scores, texts=None):
    texts = texts or [f"answer {pid} {i}" for i in range(len(scores))]
    return JudgedSet(prompt_id=pid, prompt=f"prompt {pid}", texts=texts, scores=scores)


def test_best_vs_worst_and_every_skip_is_counted():
    judged = [
        _js("a", [2, 5, 1, 5]),          # best = first 5 (idx 1), worst = 1 (idx 2)
        _js("tie", [3, 3, 3, 3]),        # all equal -> no pair
        _js("unp", [4, None, None, None]),  # one parseable score -> no pair
        _js("mix", [None, 4, 2, None]),  # unparseable left out, 4 vs 2
        _js("same", [5, 1], texts=["same text", "same text "]),
    ]
    pairs, st = build_pairs(judged, recipe="self-reward", iteration=1)
    assert [p.meta["prompt_id"] for p in pairs] == ["a", "mix"]
    assert pairs[0].chosen == "answer a 1" and pairs[0].rejected == "answer a 2"
    assert pairs[0].meta["score_chosen"] == 5 and pairs[0].meta["score_rejected"] == 1
    assert pairs[1].chosen == "answer mix 1" and pairs[1].rejected == "answer mix 2"
    assert (st.prompts, st.pairs, st.skipped_tie, st.skipped_unparseable, st.skipped_identical) == \
        (5, 2, 1, 1, 1)
    assert st.unparseable_scores == 5
    assert st.scores[5] == 3 and st.as_dict()["scores"]["5"] == 3


def test_self_judging_through_an_engine_end_to_end():
    eng = ScriptedEngine(answer_scores={"alpha": "5241", "beta": "3333", "gamma": "x2xx"})
    prompts = [PromptRecord(id=k, prompt=f"tell me about {k}") for k in ("alpha", "beta", "gamma")]
    sets = sample_candidates(eng, prompts, n=4)
    assert [len(s.texts) for s in sets] == [4, 4, 4]
    judged = score_candidates(RubricScorer(eng), sets)
    assert judged[0].scores == [5, 2, 4, 1]
    assert judged[2].scores == [None, 2, None, None]
    assert "parse error" in judged[2].errors[0] and judged[2].raws[0] == "I have no idea how to grade."
    pairs, st = build_pairs(judged)
    assert len(pairs) == 1 and "[s=5]" in pairs[0].chosen and "[s=1]" in pairs[0].rejected
    assert st.skipped_tie == 1 and st.skipped_unparseable == 1
    assert eng.by_kind == {"answer": 3, "judge": 12}


def test_engine_returning_fewer_samples_is_topped_up():
    class OneAtATime(ScriptedEngine):
        def generate(self, requests):
            res = super().generate(requests)
            for r in res:
                r.texts = r.texts[:1]
            return res

    eng = OneAtATime()
    sets = sample_candidates(eng, [PromptRecord(id="p", prompt="hello")], n=3,
                             params=SamplingParams(temperature=0.7, seed=1))
    assert len(sets[0].texts) == 3 and eng.by_kind["answer"] == 3


def test_prompt_synthesis_filters_dedups_and_counts():
    outs = ["Task: Write a haiku about autumn leaves falling",
            "Task: Write a haiku about autumn leaves falling",   # exact duplicate
            "1. Hi",                                            # too short
            "Task: What is the capital of France?",            # copy of a seed
            "",                                                 # empty
            "Task: Explain how a refrigerator keeps food cold"]
    eng = ScriptedEngine(synth=outs)
    seeds = ["What is the capital of France?", "Give three tips for sleeping well."]
    # Round 1 asks for 2 + 1 spare, round 2 for 1 + 1, round 3 for 1 + 1 (the last one empty).
    got, st = synthesize_prompts(eng, seeds, n_new=2, max_rounds=3)
    assert [p.prompt for p in got] == ["Write a haiku about autumn leaves falling",
                                       "Explain how a refrigerator keeps food cold"]
    assert st.duplicate == 1 and st.too_short == 1 and st.duplicate_of_seed == 1 and st.empty == 2
    assert st.kept == 2 and st.generated == 7 and st.rounds == 3
    assert parse_synthesized_prompt('  \n2) "Name a fruit that is red."\nmore') == "Name a fruit that is red."


def test_teacher_reward_uses_the_teacher_as_judge():
    student = ScriptedEngine(name="student", answer_scores={"q": "1234"})
    teacher = ScriptedEngine(name="teacher")
    sets = sample_candidates(student, [PromptRecord(id="q", prompt="q?")], n=4)
    # What the align driver does for teacher-reward: the teacher scores, best vs worst.
    judged = score_candidates(RubricScorer(teacher), sets)
    pairs, st = build_pairs(judged, recipe="teacher-reward", iteration=2)
    assert teacher.by_kind == {"judge": 4} and "judge" not in student.by_kind
    assert pairs[0].source == "teacher-reward" and "[s=4]" in pairs[0].chosen
    assert st.pairs == 1


def test_teacher_demo_pairs_teacher_chosen_student_rejected():
    teacher = ReplayEngine({"What is 2+2?": "2+2 is 4.", "Name a colour.": "Blue."})
    prompts = [PromptRecord(id="a", prompt="What is 2+2?"), PromptRecord(id="b", prompt="Name a colour."),
               PromptRecord(id="c", prompt="Unknown to the teacher")]
    t_sets = teacher_answers(teacher, prompts)
    assert t_sets[2].texts == [] and "no answer" in t_sets[2].errors[0]
    assert teacher.spec.startswith("simulated:")
    student = [CandidateSet("a", "What is 2+2?", ["five"]), CandidateSet("b", "Name a colour.", ["Blue."]),
               CandidateSet("c", "Unknown to the teacher", ["x"])]
    pairs, st = demo_pairs(t_sets, student, iteration=1)
    assert len(pairs) == 1 and pairs[0].chosen == "2+2 is 4." and pairs[0].rejected == "five"
    assert pairs[0].source == "teacher-demo"
    assert (st.skipped_identical, st.skipped_no_teacher) == (1, 1)
