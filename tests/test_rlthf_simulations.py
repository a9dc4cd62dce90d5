"""The simulated labeller and human: calibrated, seeded, and biased the way they claim."""

from __future__ import annotations

import numpy as np
import pytest

from rayalign.data.schema import PairwiseItem
from rayalign.feedback.simulated import SimulatedLabeller, SimulatedLabellerConfig
from rayalign.humans.simulated import SimulatedHuman


def make_items(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    items, truth = [], {}
    for i in range(n):
        la, lb = rng.integers(5, 400, size=2)
        it = PairwiseItem(id=f"p{i}", prompt="q", response_a="a" * la, response_b="b" * lb)
        items.append(it)
        truth[it.id] = "A" if rng.random() < 0.5 else "B"
    return items, truth


@pytest.mark.parametrize("errors", ["uniform", "length"])
def test_agreement_hits_target(errors):
    items, truth = make_items()
    lab = SimulatedLabeller(SimulatedLabellerConfig(target_agreement=0.75, errors=errors, seed=1))
    js = lab.label(items, truth)
    acc = np.mean([j.label == truth[j.item_id] for j in js])
    assert abs(acc - 0.75) < 0.025
    assert all(j.simulated and "simulated" in j.judge and "simulated" in j.rationale for j in js)


def test_length_errors_prefer_longer_answer():
    items, truth = make_items()
    js = SimulatedLabeller(SimulatedLabellerConfig(errors="length", length_bias=2.0)).label(items, truth)
    by = {it.id: it for it in items}
    wrong = [j for j in js if j.label != truth[j.item_id]]
    longer = np.mean([len(by[j.item_id].response_a if j.label == "A" else by[j.item_id].response_b) >
                      len(by[j.item_id].response_b if j.label == "A" else by[j.item_id].response_a)
                      for j in wrong])
    assert longer > 0.75  # mistakes mostly pick the longer answer
    uni = SimulatedLabeller(SimulatedLabellerConfig(errors="uniform")).label(items, truth)
    wrong_u = [j for j in uni if j.label != truth[j.item_id]]
    longer_u = np.mean([len(by[j.item_id].response_a if j.label == "A" else by[j.item_id].response_b) >
                        len(by[j.item_id].response_b if j.label == "A" else by[j.item_id].response_a)
                        for j in wrong_u])
    assert 0.4 < longer_u < 0.6


def test_labels_are_keyed_by_seed_and_id_not_batch_order():
    items, truth = make_items(500)
    cfg = SimulatedLabellerConfig(seed=3, errors="uniform")
    a = {j.item_id: j.label for j in SimulatedLabeller(cfg).label(items, truth)}
    b = {j.item_id: j.label for j in SimulatedLabeller(cfg).label(items[::-1], truth)}
    assert a == b
    c = {j.item_id: j.label for j in SimulatedLabeller(cfg.model_copy(update={"seed": 4})).label(items, truth)}
    assert a != c


def test_unreachable_target_and_missing_truth_are_clear_errors():
    items, truth = make_items(200)
    with pytest.raises(ValueError, match="cannot reach"):
        SimulatedLabeller(SimulatedLabellerConfig(position_bias=200.0, target_agreement=0.95)).label(items, truth)
    with pytest.raises(ValueError, match="true label"):
        SimulatedLabeller(SimulatedLabellerConfig()).label(items, {})


def test_simulated_human_replays_truth_with_optional_errors():
    items, truth = make_items(2000)
    h = SimulatedHuman(truth)
    got = h.request_labels("b0", items, {})
    assert got == truth and h.calls == 2000 and h.simulated and "simulated" in h.name
    noisy = SimulatedHuman(truth, error_rate=0.1, seed=2).request_labels("b0", items, {})
    err = np.mean([noisy[i] != truth[i] for i in truth])
    assert 0.08 < err < 0.12
    with pytest.raises(ValueError):
        SimulatedHuman(truth, error_rate=0.6)


def test_simulated_kind_through_the_judge_factory():
    from rayalign.feedback.config import JudgeConfig, build_judge

    items, truth = make_items(400)
    labelled = [it.model_copy(update={"label": truth[it.id]}) for it in items]
    judge = build_judge(JudgeConfig(kind="simulated", settings={"target_agreement": 0.8, "errors": "uniform"}))
    js = judge.judge(labelled)
    assert len(js) == 400 and all(j.simulated for j in js) and "simulated" in judge.name
    assert abs(np.mean([j.label == truth[j.item_id] for j in js]) - 0.8) < 0.06
    with pytest.raises(ValueError, match="true label"):
        judge.judge(items)  # unlabelled pairs: nothing to simulate from
