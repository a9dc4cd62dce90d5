"""The RECORDED human: answers from the real PandaLM annotators' votes, in any A/B order."""

from __future__ import annotations

from collections import Counter

import pytest

from rayalign.data.pairs import load_pair_items
from rayalign.data.schema import PairwiseItem
from rayalign.humans.factory import make_annotator
from rayalign.humans.recorded import RecordedHuman
from rayalign.rlthf.config import HumanConfig


@pytest.fixture(scope="module")
def items() -> list[PairwiseItem]:
    return list(load_pair_items("bundled:pandalm", seed=0))


def test_majority_mode_answers_the_human_majority(items):
    human = RecordedHuman("majority")
    assert not human.simulated and "recorded" in human.name
    got = human.request_labels("b0", items, {})
    assert got == {it.id: it.label for it in items}
    assert human.calls == len(items)


def test_single_annotator_answers_real_votes_seeded(items):
    a, b = RecordedHuman("single_annotator", seed=0), RecordedHuman("single_annotator", seed=1)
    got_a, got_b = a.request_labels("b0", items, {}), b.request_labels("b0", items, {})
    assert got_a == RecordedHuman("single_annotator", seed=0).request_labels("x", items, {})
    assert got_a != got_b
    agree = Counter(got_a.get(it.id) == it.label for it in items)
    ties = sum(1 for it in items if it.id not in got_a)
    # a single person mostly agrees with the majority, sometimes not, sometimes says "tie"
    assert 0.85 < agree[True] / len(items) < 1.0 and ties > 0
    # every answer is one of that pair's recorded votes, mapped onto the current A/B order
    for it in items:
        lab = got_a.get(it.id)
        want = {"chosen": it.label, "rejected": "B" if it.label == "A" else "A", "tie": None}
        assert lab in {want[v] for v in it.meta["votes"]}


def test_answers_follow_the_pair_not_the_slot(items):
    swapped = [it.model_copy(update={"response_a": it.response_b, "response_b": it.response_a,
                                     "label": "B" if it.label == "A" else "A"}) for it in items[:50]]
    for mode in ("majority", "single_annotator"):
        h = RecordedHuman(mode, seed=4)
        one, two = h.request_labels("a", items[:50], {}), h.request_labels("b", swapped, {})
        assert set(one) == set(two) and all(one[i] != two[i] for i in one)


def test_data_without_votes_is_a_clear_error():
    it = PairwiseItem(prompt="q", response_a="a", response_b="b", label="A")
    with pytest.raises(ValueError, match="no recorded human votes"):
        RecordedHuman().request_labels("b", [it], {})


def test_factory_builds_each_kind(tmp_path):
    rec = make_annotator(HumanConfig(kind="recorded", mode="single_annotator"), truth=None, seed=3)
    assert isinstance(rec, RecordedHuman) and rec.mode == "single_annotator" and rec.seed == 3
    sim = make_annotator(HumanConfig(kind="simulated"), truth={"x": "A"}, seed=0)
    assert sim.simulated
    with pytest.raises(ValueError, match="ground-truth"):
        make_annotator(HumanConfig(kind="simulated"), truth=None, seed=0)
    q = make_annotator(HumanConfig(kind="queue"), truth=None, seed=0, queue_path=tmp_path / "q.sqlite")
    assert q.name == "annotation-queue"
