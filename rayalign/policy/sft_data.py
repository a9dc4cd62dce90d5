"""SFT seed data from human-ranked answers (OASST): IFT and EFT, plus a held-out judge set.

The study's M1 is the base model fine-tuned on two kinds of seed data:

* IFT (instruction fine-tuning): prompt -> the answer people ranked best (rank 0);
* EFT (evaluation fine-tuning): the 5-point judge prompt filled with (prompt, answer) ->
  a short justification ending in "Score: n", where n follows from the human rank.
  This is what teaches a small model to act as its own reward model.

The study (after Self-Rewarding LMs) had a model write the justifications and kept those
whose score agreed with the human rank; here the justification is written from the
rubric itself (which criteria hold for that score), so the data needs no model at all.

Questions with several ranked answers are also the reference for the judge metrics
(``rm_eval_groups``), so ``split_by_question`` keeps those evaluation questions out of
the training data.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from rayalign.data.schema import RankedAnswer
from rayalign.policy.align_config import AlignConfig
from rayalign.policy.prompts import eft_rationale, rubric_messages, response_messages

# Human rank (0 = best) -> rubric total. The best answer gets the full 5 points, each rank
# below costs one point, and everything from rank 4 down keeps 1 point (these are still
# on-topic human answers, just worse ones).
RANK_TO_SCORE = {0: 5, 1: 4, 2: 3, 3: 2}


def rank_to_score(rank: float) -> int:
    return RANK_TO_SCORE.get(int(rank), 1)


def group_by_question(rows: Sequence[RankedAnswer]) -> dict[str, list[RankedAnswer]]:
    """Answers per question, best rank first (first-appearance order of questions)."""
    groups: dict[str, list[RankedAnswer]] = defaultdict(list)
    for r in rows:
        groups[r.prompt].append(r)
    return {q: sorted(a, key=lambda x: x.rank) for q, a in groups.items()}


@dataclass
class OasstSplit:
    train: list[RankedAnswer]
    eval: list[RankedAnswer]


def split_by_question(rows: Sequence[RankedAnswer], n_eval_questions: int,
                      min_eval_answers: int = 3, seed: int = 0) -> OasstSplit:
    """Hold out ``n_eval_questions`` questions with at least ``min_eval_answers`` distinct
    ranks (the judge-metric reference); everything else is training data."""
    groups = group_by_question(rows)
    eligible = sorted(q for q, a in groups.items()
                      if len({x.rank for x in a}) >= min_eval_answers)
    rng = random.Random(seed)
    rng.shuffle(eligible)
    held = set(eligible[:n_eval_questions])
    train = [r for q, a in groups.items() if q not in held for r in a]
    ev = [r for q, a in groups.items() if q in held for r in a]
    return OasstSplit(train=train, eval=ev)


def ift_examples(rows: Sequence[RankedAnswer], max_rank: float = 0.0,
                 limit: int | None = None) -> list[dict]:
    """Prompt -> best human answer (rank <= ``max_rank``), one per question."""
    out = []
    for q, answers in group_by_question(rows).items():
        best = answers[0]
        if best.rank <= max_rank:
            out.append(as_example(response_messages(q, max_chars=None), best.response,
                                  kind="ift", rank=best.rank))
        if limit and len(out) >= limit:
            break
    return out


def as_example(messages: list[dict], completion: str, **extra) -> dict:
    """A prompt/completion example in TRL's conversational form (the chat template of the
    model is applied at training time, exactly as the engines apply it at inference)."""
    return {"prompt": messages, "completion": [{"role": "assistant", "content": completion}],
            **extra}


def eft_example(prompt: str, response: str, score: int) -> dict:
    """One judge-training example: the rubric prompt -> justification + "Score: n"."""
    return as_example(rubric_messages(prompt, response), eft_rationale(score),
                      kind="eft", score=score, question=prompt)


def eft_examples(rows: Sequence[RankedAnswer], min_answers: int = 2,
                 limit: int | None = None, seed: int = 0) -> list[dict]:
    """EFT examples from questions with at least ``min_answers`` ranked answers, so the
    model sees different scores for answers to the same question. Shuffled with ``seed``
    so that a ``limit`` keeps a mix of scores rather than the first questions only."""
    out = []
    for q, answers in group_by_question(rows).items():
        if len(answers) < min_answers:
            continue
        for a in answers:
            ex = eft_example(q, a.response, rank_to_score(a.rank))
            ex["rank"] = a.rank
            out.append(ex)
    random.Random(seed).shuffle(out)
    return out[:limit] if limit else out


def rm_eval_groups(rows: Sequence[RankedAnswer], max_answers: int = 4) -> list[dict]:
    """Questions with several ranked answers: the reference for judge metrics.

    Each group keeps up to ``max_answers`` answers (the best-ranked ones, as the study's
    4 responses per prompt) with their human ranks."""
    out = []
    for q, answers in group_by_question(rows).items():
        answers = answers[:max_answers]
        if len({a.rank for a in answers}) < 2:
            continue
        out.append({"prompt": q, "responses": [a.response for a in answers],
                    "ranks": [a.rank for a in answers]})
    return out


def load_ranked(path: str | None) -> list[RankedAnswer]:
    from rayalign.data.loaders import load_oasst_ranked

    if path is None:
        from rayalign.data.bundled import bundled_path

        path = str(bundled_path("oasst2_ranked"))
    return list(load_oasst_ranked(path))


def prepare_data(cfg: AlignConfig) -> dict[str, Any]:
    """OASST rows split into training and held-out evaluation questions (deterministic in
    the config): SFT examples, few-shot seeds, the DPO prompt pool and the judge-metric
    groups. Needs no run directory, so evaluations can rebuild the same held-out set."""
    rows = load_ranked(cfg.sft.data)
    split = split_by_question(rows, cfg.eval.rm_groups, seed=cfg.seed)
    ift = ift_examples(split.train, limit=cfg.sft.n_ift)
    eft = eft_examples(split.train, limit=cfg.sft.n_eft, seed=cfg.seed)
    ift_q = {r.prompt for r in split.train if r.rank == 0}
    # DPO prompts: training questions never seen in SFT (neither IFT nor EFT).
    pool = sorted({r.prompt for r in split.train} - ift_q - {e["question"] for e in eft})
    return {"split": split, "ift": ift, "eft": eft, "seed_prompts": sorted(ift_q),
            "prompt_pool": pool, "eval_groups": rm_eval_groups(split.eval, cfg.eval.max_answers)}
