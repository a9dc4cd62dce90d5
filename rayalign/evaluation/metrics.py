"""Reward-modelling metrics of a judge against reference rankings (the study's Table 2).

A judge (an LLM scoring each response with the 5-point additive rubric, or a reward model)
is compared with a reference ranking of several responses per prompt (human ranks of
OASST answers, GPT-4 rankings, ...). The metrics are computed per prompt *group* and
aggregated, because a judge's scores are only meaningful relative to the other responses
to the same prompt.

Conventions (chosen so that a judge cannot score well by abstaining):

* reference values are "higher is better" (use ``ranks_to_reference`` for 0 = best ranks);
* a judge score of ``None`` (unparseable output) is placed below every parsed score of the
  group and counted in ``n_unparsed``;
* a judge tie on a pair the reference orders is a *disagreement* in pairwise accuracy and
  breaks an exact match (a judge that gives every answer 3 points scores 0 %, as in the
  study's self-reward row);
* best-of-N credits ``|top ∩ best| / |top|`` — the chance that a random tie-break among the
  judge's top-scored answers picks a reference-best one;
* Spearman / Kendall τ (tau-b) are computed per group and averaged; a group where either
  side is constant has no defined correlation and counts as 0 (no information), with the
  number of such groups reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

from scipy import stats


@dataclass
class RankGroup:
    """Several responses to one prompt: the judge's scores and the reference values."""

    prompt_id: str
    scores: list[float | None]
    reference: list[float]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.reference):
            raise ValueError(
                f"group {self.prompt_id!r}: {len(self.scores)} judge scores but "
                f"{len(self.reference)} reference values")
        if len(self.scores) < 2:
            raise ValueError(f"group {self.prompt_id!r}: needs at least 2 responses")

    def filled_scores(self) -> list[float]:
        """Scores with unparseable ones placed below every parsed score of the group."""
        parsed = [s for s in self.scores if s is not None]
        floor = (min(parsed) if parsed else 0.0) - 1.0
        return [floor if s is None else float(s) for s in self.scores]


def ranks_to_reference(ranks: Sequence[float]) -> list[float]:
    """Human ranks (0 = best) → reference values where higher is better."""
    return [-float(r) for r in ranks]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pairwise_accuracy(groups: Sequence[RankGroup]) -> tuple[float, int]:
    """Share of reference-ordered pairs the judge orders the same way (judge ties = wrong)."""
    agree = total = 0
    for g in groups:
        s = g.filled_scores()
        for i, j in combinations(range(len(s)), 2):
            ref = _sign(g.reference[i] - g.reference[j])
            if ref == 0:
                continue
            total += 1
            agree += int(_sign(s[i] - s[j]) == ref)
    return (agree / total if total else float("nan")), total


def best_of_n(groups: Sequence[RankGroup]) -> float:
    """How often the judge's top-scored response is a reference-best one (ties share credit)."""
    if not groups:
        return float("nan")
    credit = 0.0
    for g in groups:
        s = g.filled_scores()
        top = {i for i, v in enumerate(s) if v == max(s)}
        best = {i for i, v in enumerate(g.reference) if v == max(g.reference)}
        credit += len(top & best) / len(top)
    return credit / len(groups)


def perfect_score_best(groups: Sequence[RankGroup], perfect: float = 5.0) -> tuple[float, int]:
    """The study's "5-best %": of the responses the judge gave a perfect score, the share
    that are the reference's best for their prompt. Returns (value, number of perfect scores)."""
    hits = n = 0
    for g in groups:
        best = max(g.reference)
        for s, r in zip(g.scores, g.reference):
            if s is not None and float(s) == perfect:
                n += 1
                hits += int(r == best)
    return (hits / n if n else float("nan")), n


def exact_match(groups: Sequence[RankGroup]) -> float:
    """Share of prompts whose whole ordering (ties included) matches the reference."""
    if not groups:
        return float("nan")
    ok = 0
    for g in groups:
        s = g.filled_scores()
        ok += int(all(_sign(s[i] - s[j]) == _sign(g.reference[i] - g.reference[j])
                      for i, j in combinations(range(len(s)), 2)))
    return ok / len(groups)


def _mean_corr(groups: Sequence[RankGroup], fn) -> tuple[float, int]:
    vals, undefined = [], 0
    for g in groups:
        s = g.filled_scores()
        if len(set(s)) < 2 or len(set(g.reference)) < 2:
            undefined += 1
            vals.append(0.0)
            continue
        r = fn(s, g.reference).statistic
        if r is None or math.isnan(r):
            undefined += 1
            r = 0.0
        vals.append(float(r))
    return (sum(vals) / len(vals) if vals else float("nan")), undefined


def spearman(groups: Sequence[RankGroup]) -> tuple[float, int]:
    """Mean per-prompt Spearman correlation; returns (mean, groups with no defined value)."""
    return _mean_corr(groups, stats.spearmanr)


def kendall_tau(groups: Sequence[RankGroup]) -> tuple[float, int]:
    """Mean per-prompt Kendall tau-b; returns (mean, groups with no defined value)."""
    return _mean_corr(groups, stats.kendalltau)


def reward_model_metrics(groups: Sequence[RankGroup], perfect: float = 5.0) -> dict:
    """All of Table 2's metrics for one judge, plus the counts needed to read them."""
    pa, n_pairs = pairwise_accuracy(groups)
    five, n_perfect = perfect_score_best(groups, perfect)
    sp, sp_undef = spearman(groups)
    kt, kt_undef = kendall_tau(groups)
    n_resp = sum(len(g.scores) for g in groups)
    n_unparsed = sum(1 for g in groups for s in g.scores if s is None)
    return {
        "pairwise_accuracy": pa,
        "best_of_n": best_of_n(groups),
        "perfect_score_best": five,
        "exact_match": exact_match(groups),
        "spearman": sp,
        "kendall_tau": kt,
        "n_groups": len(groups),
        "n_responses": n_resp,
        "n_ordered_pairs": n_pairs,
        "n_perfect_scores": n_perfect,
        "n_unparsed": n_unparsed,
        "n_groups_corr_undefined": kt_undef,
        "n_groups_spearman_undefined": sp_undef,
    }


def judge_metrics(scorer, groups: Sequence[dict]) -> dict:
    """Score every response of every group with ``scorer``; Table 2 metrics vs human ranks.

    ``scorer`` is anything with ``name`` and ``score([(prompt, response), ...])`` returning
    objects with a ``score`` (``policy.self_reward.RubricScorer``): duck-typed, so evaluation
    stays below the policy layer that defines scorers."""
    flat = [(g["prompt"], r) for g in groups for r in g["responses"]]
    scores = scorer.score(flat)
    rank_groups, k = [], 0
    for i, g in enumerate(groups):
        n = len(g["responses"])
        rank_groups.append(RankGroup(str(i), [s.score for s in scores[k:k + n]],
                                     ranks_to_reference(g["ranks"])))
        k += n
    m = reward_model_metrics(rank_groups)
    m["judge"] = scorer.name
    return m
