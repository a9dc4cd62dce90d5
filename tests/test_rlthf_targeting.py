"""Error-model targeting as pure functions on hand-made states (no Ray, no model).

Signals per pair -> features -> P(AI label wrong) -> the human batch (a random share,
audited flip candidates, the highest P(wrong)) -> the flip gate.
"""

from __future__ import annotations

import numpy as np
import pytest

from rayalign.data.schema import Judgment, OrderVerdict, PairwiseItem, response_key
from rayalign.rlthf.error_model import FEATURES, ErrorModel, feature_rows, fit_error_model, prior_model
from rayalign.rlthf.rounds import LoopState, RoundPlan, apply_round, plan_error_round
from rayalign.rlthf.signals import PairSignals, all_signals, starting_label
from rayalign.rlthf.targeting import flip_gate, plan_targeted, rm_better_than_chance, wilson_lower


def item(i: int) -> PairwiseItem:
    return PairwiseItem(id=f"p{i}", prompt=f"q{i}", response_a=f"a{i}", response_b=f"b{i}")


def judged(it: PairwiseItem, *winners: str, confidence: float | None = None) -> Judgment:
    """A judgment whose k-th order showed A first (k even) or B first (k odd)."""
    keys = {"A": response_key(it.response_a), "B": response_key(it.response_b), "tie": "tie"}
    verdicts = [OrderVerdict(shown_first=keys["AB"[k % 2]], winner=keys[w], confidence=confidence)
                for k, w in enumerate(winners)]
    labels = set(winners)
    return Judgment(item_id=it.id, judge="j", label=winners[0] if len(labels) == 1 else "tie",
                    order_verdicts=verdicts)


def test_signals_see_self_contradiction_disagreement_and_fall_back_to_the_extra_judge():
    items = [item(i) for i in range(4)]
    primary = {"p0": judged(items[0], "A", "A", confidence=0.9), "p1": judged(items[1], "A", "B"),
               "p2": judged(items[2], "B"), "p3": Judgment(item_id="p3", judge="j", error="timeout")}
    extra = {"p0": judged(items[0], "A"), "p1": judged(items[1], "B"), "p2": judged(items[2], "A")}
    sig = all_signals(items, primary, [extra])
    assert sig["p0"] == PairSignals(primary="A", inconsistent=False, orders=2, p_a=pytest.approx(0.9), extra=("A",))
    assert sig["p1"].inconsistent and sig["p1"].primary == "tie"
    assert sig["p3"].primary is None and sig["p3"].extra == (None,)
    assert starting_label(sig["p0"]) == ("A", "ai")
    assert starting_label(sig["p1"]) == ("B", "extra_judge")   # the labeller could not decide
    assert starting_label(sig["p3"]) == (None, "rm")            # nobody could: the RM labels it
    x = feature_rows(["p0", "p1", "p2"], sig, {"p0": "A", "p1": "B", "p2": "B"}, {"p0": 1.0, "p1": 0.0, "p2": -1.0})
    col = {f: x[:, k].tolist() for k, f in enumerate(FEATURES)}
    assert col["inconsistent"] == [0.0, 1.0, 0.0] and col["disagree"] == [0.0, 0.0, 1.0]
    assert col["confidence"] == pytest.approx([0.4, 0.0, 0.0]) and col["margin"][0] > 0 > col["margin"][2]


def test_a_pair_the_judge_contradicts_itself_on_is_asked_before_a_confident_one():
    items = [item(i) for i in range(3)]
    sig = all_signals(items, {"p0": judged(items[0], "A", "A", confidence=0.95),
                              "p1": judged(items[1], "A", "B"),
                              "p2": judged(items[2], "A", "A")})
    labels = {"p0": "A", "p1": "A", "p2": "A"}
    x = feature_rows(["p0", "p1", "p2"], sig, labels, {"p0": 0.5, "p1": 0.5, "p2": 0.5})
    p = prior_model(0.2).predict(x)
    assert p[1] > p[2] > p[0]
    assert p[1] == pytest.approx(0.5, abs=0.02)   # a self-contradicting judge is guessing
    batch = plan_targeted(["p0", "p1", "p2"], dict(zip(["p0", "p1", "p2"], p)), budget=1, random_share=0.0,
                          flip_audit=0, seed="s")
    assert batch.targeted == ["p1"] and batch.random_share == []


def test_random_share_is_drawn_seeded_and_persisted_with_the_plan():
    ids = [f"p{i:02d}" for i in range(40)]
    p = {i: 0.9 - 0.01 * k for k, i in enumerate(ids)}
    st = LoopState(labels={i: "A" for i in ids}, origins={i: "ai" for i in ids}, train=[])
    feats = {i: [0.0] * len(FEATURES) for i in ids}
    plan = plan_error_round(ids, st, p, feats, iteration=0, budget=10, random_share=0.2,
                            flip_audit=3, spot_check=0, apply_flips=True, seed=7)
    assert len(plan.random_share) == 2 and len(plan.asked) == 10
    assert len(plan.audit) == 3 and all(p[i] > 0.5 for i in plan.audit)
    assert plan.selection.human_batch == [i for i in ids if i not in plan.random_share][:5]
    assert not set(plan.audit) & set(plan.selection.human_batch)      # audits: candidates left to flip
    assert set(plan.selection.flips) == {i for i in ids if p[i] > 0.5} - set(plan.asked)
    again = plan_error_round(ids, st, p, feats, iteration=0, budget=10, random_share=0.2,
                             flip_audit=3, spot_check=0, apply_flips=True, seed=7)
    assert again.random_share == plan.random_share and again.audit == plan.audit
    back = RoundPlan.from_json(plan.to_json())
    assert back == plan and back.part_of(plan.random_share[0]) == "random"
    assert set(back.features) == set(plan.asked)   # the error model's next training rows


def test_the_error_model_learns_from_answers_and_the_prior_holds_without_them():
    rng = np.random.default_rng(0)
    pool = np.zeros((200, len(FEATURES)))
    pool[:, FEATURES.index("disagree")] = rng.integers(0, 2, 200)
    pool[:, FEATURES.index("margin")] = rng.normal(size=200)
    assert fit_error_model(pool, [], [], prior_error_rate=0.2, prior_weight=20).fitted is False
    # answers say: where the second judge disagrees the label is wrong 90 % of the time
    hist = pool[:80]
    wrong = [int(r[FEATURES.index("disagree")] == 1 and k % 10 != 0) for k, r in enumerate(hist)]
    em = fit_error_model(pool, hist, wrong, prior_error_rate=0.2, prior_weight=20)
    assert em.fitted and em.n_labels == 80 and em.n_errors == sum(wrong)
    assert em.coef["disagree"] > PRIOR_DISAGREE
    assert set(em.constant) == {"inconsistent", "abstained", "extra_abstain", "against_labeller", "confidence"}
    p = em.predict(pool)
    dis = pool[:, FEATURES.index("disagree")] == 1
    assert p[dis].mean() > 0.6 > 0.2 > p[~dis].mean()
    assert ErrorModel.from_json(em.to_json()).predict(pool) == pytest.approx(p)


PRIOR_DISAGREE = prior_model(0.2).coef["disagree"]


def test_wilson_bound_and_the_flip_gate_refuse_weak_evidence():
    assert wilson_lower(0, 0, 0.95) is None
    assert wilson_lower(5, 6, 0.95) < 0.5 < wilson_lower(6, 6, 0.95)    # "5 of 6" is not evidence
    g = flip_gate(40, 5, 6, confidence=0.95, require_audit=True, rm_ok=True)
    assert not g.apply and "refused" in g.reason and "5/6" in g.reason
    assert flip_gate(40, 18, 20, confidence=0.95, require_audit=True, rm_ok=True).apply
    assert not flip_gate(40, 18, 20, confidence=0.95, require_audit=True, rm_ok=False).apply
    assert not flip_gate(40, 0, 0, confidence=0.95, require_audit=True, rm_ok=True).apply
    assert flip_gate(40, 0, 0, confidence=0.95, require_audit=False, rm_ok=True).apply   # the paper's policy
    assert not flip_gate(0, 9, 9, confidence=0.95, require_audit=True, rm_ok=True).apply
    ok, agree = rm_better_than_chance([1.0, -1.0] * 50, 0.95)
    assert not ok and agree == 0.5
    assert rm_better_than_chance([1.0] * 70 + [-1.0] * 30, 0.95)[0]


def _round(audit_answers_agree: int, rm_ok: bool = True):
    ids = [f"p{i:02d}" for i in range(30)]
    st = LoopState(labels={i: "A" for i in ids}, origins={i: "ai" for i in ids}, train=[])
    p = {i: (0.8 if k < 20 else 0.1) for k, i in enumerate(ids)}
    plan = plan_error_round(ids, st, p, {i: [0.0] * len(FEATURES) for i in ids}, iteration=0, budget=12,
                            random_share=0.0, flip_audit=10, spot_check=0, apply_flips=True, seed=0)
    plan.rm_ok = rm_ok
    asked = {i: "A" for i in plan.asked}
    for i in plan.audit[:audit_answers_agree]:
        asked[i] = "B"   # people agree with the flip
    return plan, apply_round(st, plan, asked, amplification=4, train_on_flips=True, apply_flips=True)


def test_flips_refused_under_a_failing_audit_and_an_at_chance_rm_applied_with_evidence():
    plan, res = _round(audit_answers_agree=5)          # 5 of 10 audited flips right
    assert len(plan.audit) == 10 and plan.selection.flips and res.vetoed and res.flips == []
    assert res.state.audits and len(res.state.audits) == 10
    plan, res = _round(audit_answers_agree=10, rm_ok=False)
    assert res.flips == [] and "chance" in res.gate.reason
    plan, res = _round(audit_answers_agree=10)
    assert res.flips == plan.selection.flips and res.gate.apply
    assert all(res.state.labels[i] == "B" and res.state.origins[i] == "flip" for i in res.flips)
    assert len(res.state.history) == 12 and {h["part"] for h in res.state.history} == {"audit", "targeted"}
