"""AI preference labels of RL-CAI: multiple-choice verdicts -> soft or hard preference pairs.

The feedback model sees "(A) ... (B) ..." with a principle's question. Soft labels (an engine
with log-probs): P(A) = exp(l_A) / (exp(l_A) + exp(l_B)) from the next-token log-probs of
"A" and "B" after the prefill; with both orders the pair's probability is the mean over the
two orders (in the swapped order the same answer is "B"), which cancels a constant position
preference. Hard labels (no log-probs): the parsed answer; with both orders a label is kept
only when both orders agree, as ``feedback.judges`` does.

In ``preferences.jsonl`` ``meta.soft_label`` is P(chosen preferred over rejected) in
[0.5, 1] (1.0 for a hard label), ``meta.principle`` the principle id, ``meta.label_kind``
"soft" or "hard". Pairs at exactly 0.5 (or hard disagreements) are ties: counted, not kept.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rayalign.data.schema import PreferencePair
from rayalign.engines.base import Engine, GenerationRequest, OptionLogprobs, OptionScorer
from rayalign.policy.cai_config import CAIJudgeConfig
from rayalign.policy.cai_prompts import OPTIONS, choice_messages, parse_choice
from rayalign.policy.principles import Constitution


def soft_probability(lp: Sequence[float]) -> float:
    """P(first option) from the two options' log-probs, normalised over the two (softmax)."""
    a, b = float(lp[0]), float(lp[1])
    m = max(a, b)
    if m == -math.inf:
        return 0.5
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)


def combine_orders(p_first_ab: float | None, p_first_ba: float | None) -> float | None:
    """P(the pair's first answer wins) from the AB order's P(A) and the BA order's P(A).

    In the swapped order the first answer is shown as B, so its probability there is
    1 - P(A). None when the AB order failed; the BA order is optional."""
    if p_first_ab is None:
        return None
    if p_first_ba is None:
        return p_first_ab
    return (p_first_ab + (1.0 - p_first_ba)) / 2.0


def label_kind(want: str, engine: Engine, prefill: bool) -> str:
    """"soft" or "hard" for this engine; a clear error when soft is asked but impossible."""
    can = isinstance(engine, OptionScorer) and prefill
    if want == "soft" and not can:
        raise ValueError("preference.judge.labels: soft needs an engine with option log-probs "
                         "(hf_local) and judge.prefill: true; use labels: hard or auto")
    return "soft" if (want == "soft" or (want == "auto" and can)) else "hard"


def judge_chunk(engine: Engine, kind: str, chunk: Sequence[tuple[dict, str]], jc: CAIJudgeConfig,
                constitution: Constitution, seed: int) -> list[dict[str, Any]]:
    """One verdict row per (pair, order): P(A) (soft, with the raw log-probs) or the parsed
    label (hard), and the id of the principle drawn for the pair."""
    reqs, meta = [], []
    for p, order in chunk:
        pr = constitution.draw(seed, p["id"], "compare")
        a, b = (p["first"], p["second"]) if order == "ab" else (p["second"], p["first"])
        reqs.append(GenerationRequest(id=f"{p['id']}:{order}", params=jc.params,
                                      messages=choice_messages(p["prompt"], a, b, pr, jc.prefill)))
        meta.append({"id": p["id"], "order": order, "principle": pr.id, "label_kind": kind})
    rows = []
    if kind == "soft":
        got: list[OptionLogprobs] = engine.option_logprobs(reqs, list(OPTIONS))  # type: ignore[attr-defined]
        for m, g in zip(meta, got):
            rows.append({**m, "logprobs": g.logprobs, "error": g.error,
                         "p_a": None if g.error else soft_probability(g.logprobs)})
        return rows
    for m, g in zip(meta, engine.generate(reqs)):
        raw = g.texts[0] if g.texts else ""
        lab = parse_choice(raw, jc.prefill) if raw else None
        rows.append({**m, "raw": raw, "label": lab, "p_a": None if lab is None else float(lab == "A"),
                     "error": g.error or (None if lab else "no (A)/(B) answer found")})
    return rows


def build_preferences(pairs: Sequence[dict], verdicts: Sequence[dict], both_orders: bool,
                      judge: str) -> tuple[list[PreferencePair], dict[str, int]]:
    """PreferencePair rows from the verdicts, and counts (pairs, kept, ties, failed)."""
    by = {(v["id"], v["order"]): v for v in verdicts}
    out, ties, failed = [], 0, 0
    for p in pairs:
        ab, ba = by.get((p["id"], "ab")), by.get((p["id"], "ba"))
        p_ab = ab["p_a"] if ab else None
        p_ba = (ba["p_a"] if ba else None) if both_orders else None
        if p_ab is None or (both_orders and p_ba is None):
            failed += 1
            continue
        kind = ab["label_kind"]
        if kind == "hard" and both_orders and p_ab == p_ba:  # the same slot in both orders
            ties += 1
            continue
        p_first = combine_orders(p_ab, p_ba)
        if p_first is None or p_first == 0.5:
            ties += 1
            continue
        first_wins = p_first > 0.5
        chosen, rejected = (p["first"], p["second"]) if first_wins else (p["second"], p["first"])
        out.append(PreferencePair(
            prompt=p["prompt"], chosen=chosen, rejected=rejected, source=f"cai-{p['kind']}",
            meta={"soft_label": round(max(p_first, 1 - p_first), 6), "label_kind": kind,
                  "principle": ab["principle"], "judge": judge, "orders": 2 if both_orders else 1,
                  "pair_kind": p["kind"], "chosen_is": "first" if first_wins else "second",
                  "prompt_id": p["id"]}))
    return out, {"pairs": len(pairs), "kept": len(out), "ties": ties, "failed": failed}
