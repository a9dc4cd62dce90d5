"""Honest accounting of an RLTHF run: accuracies, human spend, and where each gain came from.

Why a module of its own: the same numbers go into iteration rows, baseline rows, the
report and the benchmark table, and they must mean the same everywhere. Two rules:

- Curated-label gain is split by origin: pairs whose label was *flipped* by the RM (free)
  and pairs people *answered* (paid). ROI divides only the human part by the human share,
  so a method is not credited for free flips (Random gets the same flip step in the
  ``random_flips`` baseline for a like-for-like comparison).
- The eyes-off sanity check of the paper: only the top-left of the curve (< 0.1 %) should
  ever need a look. We count how many labels there (and in the trusted head) are wrong
  against ground truth, and people spot-check a few of them.

All functions are pure.
"""

from __future__ import annotations

import math
from typing import Sequence

from rayalign.rlthf.rounds import HUMAN_ORIGINS

#: the top-left share of the curve the paper's eyes-off setting spot-checks
TOP_LEFT_FRACTION = 0.001


def accuracy(labels: dict[str, str], truth: dict[str, str], ids: Sequence[str]) -> float | None:
    """Share of ``ids`` whose label equals the truth (None for no ids)."""
    if not ids:
        return None
    return sum(labels[i] == truth[i] for i in ids) / len(ids)


def human_counts(origins: dict[str, str], shard_ids: Sequence[str], n_train: int) -> dict[str, float]:
    """Spend is every pair shown to people, whether or not they gave an A/B answer."""
    n = sum(1 for i in shard_ids if origins.get(i) in HUMAN_ORIGINS)
    return {"human_count": n,
            "human_no_label": sum(1 for i in shard_ids if origins.get(i) == "human_nolabel"),
            "human_pct": 100.0 * n / max(1, n_train),
            "human_pct_shard": 100.0 * n / max(1, len(shard_ids))}


def gain_split(labels: dict[str, str], origins: dict[str, str], base: dict[str, str],
               truth: dict[str, str], shard_ids: Sequence[str]) -> dict[str, float]:
    """Curated-label accuracy gain over ``base`` (the AI labels), split into flips and humans.

    A pair people answered counts as human even if it was flipped before; the two parts
    add up to ``accuracy(labels) − accuracy(base)`` exactly.
    """
    flips = humans = 0
    for i in shard_ids:
        delta = int(labels[i] == truth[i]) - int(base[i] == truth[i])
        if origins.get(i) in HUMAN_ORIGINS:
            humans += delta
        else:
            flips += delta  # only flipped pairs can differ from base outside human answers
    n = max(1, len(shard_ids))
    return {"gain_from_flips": flips / n, "gain_from_humans": humans / n}


def eyes_off_check(order: Sequence[str], labels: dict[str, str], truth: dict[str, str] | None,
                   trusted_cut: int | None) -> dict[str, int | None]:
    """Wrong labels vs ground truth in the top 0.1 % of the curve (≥ 1 pair) and the trusted head."""
    n_top = max(1, math.ceil(TOP_LEFT_FRACTION * len(order))) if order else 0
    head = order[: trusted_cut or 0]
    if truth is None:
        return {"top_left_n": n_top, "top_left_wrong": None, "trusted_head": len(head), "trusted_wrong": None}
    return {"top_left_n": n_top, "trusted_head": len(head),
            "top_left_wrong": sum(labels[i] != truth[i] for i in order[:n_top]),
            "trusted_wrong": sum(labels[i] != truth[i] for i in head)}


def roi(gain: float | None, human_pct: float | None) -> float | None:
    """Accuracy points gained per 1 % of the corpus human-labelled (None without spend)."""
    if gain is None or not human_pct:
        return None
    return 100.0 * gain / human_pct


def errors_found(origins: dict[str, str], base: dict[str, str], truth: dict[str, str],
                 shard_ids: Sequence[str]) -> dict[str, float | int | None]:
    """Judge errors among the pairs people were shown (ties and skips included: they cost a
    look): the starting AI label against ground truth, in total and per 100 human labels."""
    shown = [i for i in shard_ids if origins.get(i) in HUMAN_ORIGINS]
    found = sum(base[i] != truth[i] for i in shown)
    return {"judge_errors_found": found, "errors_per_100_labels": 100.0 * found / len(shown) if shown else None}


def round_counts(plan, res, labels: dict[str, str], truth: dict[str, str] | None) -> dict:
    """What one round did (``rounds.RoundPlan`` + ``RoundResult``), for its ``IterationRow``.

    ``labels``: the labels going into the round (what people were asked to check). Judge
    errors are counted against ground truth per part of the batch: the random share gives the
    base rate, the targeted part the error model's precision at the budget.
    """
    sel = plan.selection

    def wrong(ids):
        return sum(labels[i] != truth[i] for i in ids) if truth else None
    targeted = [i for i in plan.asked if plan.part_of(i) == "targeted"]
    gate = res.gate
    return dict(
        flips=len(res.flips), flip_candidates=len(sel.flips), human_batch=len(res.answers),
        human_batch_no_label=len(res.no_label), backoff=plan.backoff, trusted=len(sel.trusted),
        flip_audit=len(plan.audit), flip_audit_precision=res.audit_precision,
        flip_gate=gate.reason if gate else "flips switched off (apply_flips: false)",
        flip_audit_lower_bound=gate.lower_bound if gate else None,
        spot_check=len(plan.spot_check), spot_check_disagree=res.spot_check_disagree,
        flips_correct=sum(res.state.labels[i] == truth[i] for i in res.flips) if truth else None,
        human_batch_ai_wrong=wrong(plan.asked),
        human_batch_disagree=sum(a != labels[i] for i, a in res.answers.items()),
        random_share=len(plan.random_share), random_share_ai_wrong=wrong(plan.random_share),
        targeted=len(targeted), targeted_ai_wrong=wrong(targeted))


def measure(labels: dict[str, str], origins: dict[str, str], base: dict[str, str], gt, shard_ids: Sequence[str],
            n_train: int, reward_diff, test_ids: Sequence[str], model, curated_model=None) -> dict:
    """Spend, judge errors found, RM test accuracy (``model``, and ``curated_model`` fit on all
    curated labels when given), curated-label accuracy and its gain split, for one label set.

    ``gt``: the ``GroundTruth`` (None: spend only); ``reward_diff(model, ids)``: r(A) − r(B).
    """
    out: dict = human_counts(origins, shard_ids, n_train)
    if not gt:
        return out
    truth = gt.labels

    def test_acc(m, against):
        if not test_ids:
            return None
        from rayalign.rewards.base import preference_accuracy

        return preference_accuracy(reward_diff(m, test_ids), [against[i] for i in test_ids])
    if curated_model is not None:
        out["rm_test_acc_curated"] = test_acc(curated_model, truth)
    out.update(ground_truth=gt.tag, rm_test_acc=test_acc(model, truth), rm_test_acc_raw=test_acc(model, gt.raw),
               curated_acc=accuracy(labels, truth, shard_ids), curated_acc_raw=accuracy(labels, gt.raw, shard_ids),
               **errors_found(origins, base, truth, shard_ids), **gain_split(labels, origins, base, truth, shard_ids))
    return out
