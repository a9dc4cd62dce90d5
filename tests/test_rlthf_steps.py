"""The RLTHF loop's step functions, called directly on hand-made states (no Ray, no model)."""

from __future__ import annotations

import pytest

from rayalign.data.schema import PairwiseItem
from rayalign.humans.ledger import HumanLabelRow, HumanLabelsPending, HumanLedger, ask_humans, wait_for_batch
from rayalign.humans.simulated import SimulatedHuman
from rayalign.rlthf.accounting import eyes_off_check, gain_split, human_counts, roi
from rayalign.rlthf.baselines import baseline_label_sets
from rayalign.rlthf.curve import CurveAnalysis
from rayalign.rlthf.final import final_labels, final_summary
from rayalign.rlthf.rounds import LoopState, RoundPlan, apply_round, plan_round
from rayalign.rlthf.select import Selection

IDS = [f"p{i:02d}" for i in range(20)]


def curve(n=20, elbow=2, knee=14, reflection=16) -> CurveAnalysis:
    return CurveAnalysis(n=n, elbow=elbow, knee=knee, reflection=reflection, elbow_margin=1.0,
                         threshold_slope=0.1)


def state(labels=None) -> LoopState:
    labels = labels or {i: "A" for i in IDS}
    return LoopState(labels=dict(labels), origins={i: "ai" for i in labels},
                     train=[(i, labels[i], 1.0) for i in labels])


def items(ids=IDS):
    return {i: PairwiseItem(id=i, prompt="q", response_a=f"a{i}", response_b=f"b{i}") for i in ids}


def test_plan_pays_audit_and_spot_check_from_one_budget():
    plan = plan_round(IDS, curve(), state(), iteration=0, budget=5, backoff_schedule=[0.5],
                      backoff_after=0.1, flip_audit=1, spot_check=2, apply_flips=True, seed=0)
    assert plan.selection.flips == IDS[17:]
    assert plan.spot_check == IDS[:2]             # the very top of the curve
    assert len(plan.audit) == 1 and plan.audit[0] in IDS[17:]
    assert len(plan.asked) == 5 and len(plan.selection.human_batch) == 2
    assert plan.selection.human_batch == [IDS[16], IDS[15]]   # from the reflection point leftwards
    assert RoundPlan.from_json(plan.to_json()) == plan
    off = plan_round(IDS, curve(), state(), iteration=0, budget=5, backoff_schedule=[0.5],
                     backoff_after=0.1, flip_audit=1, spot_check=0, apply_flips=False, seed=0)
    assert off.audit == [] and len(off.selection.human_batch) == 5


def test_apply_round_flips_then_answers_win_and_no_flips_switch():
    s0 = state()
    sel = Selection(flips=IDS[17:], human_batch=[IDS[16], IDS[17]], trusted=IDS[:5])
    plan = RoundPlan(selection=sel, spot_check=[IDS[0]], budget=3)
    asked = {IDS[16]: "B", IDS[17]: "A", IDS[0]: None}    # IDS[0]: a tie on the spot check
    r = apply_round(s0, plan, asked, amplification=4, train_on_flips=True, apply_flips=True)
    assert r.flips == IDS[17:]
    assert r.state.labels[IDS[18]] == "B" and r.state.origins[IDS[18]] == "flip"
    assert r.state.labels[IDS[17]] == "A" and r.state.origins[IDS[17]] == "human"  # answer beats flip
    assert r.state.origins[IDS[0]] == "human_nolabel" and r.no_label == [IDS[0]]
    assert r.spot_check_disagree == 0
    weights = {i: w for i, _, w in r.state.train}
    assert weights[IDS[16]] == 4.0 and weights[IDS[19]] == 1.0 and IDS[10] not in weights
    assert s0.labels[IDS[18]] == "A"                      # pure: the input state is untouched
    r2 = apply_round(s0, plan, asked, amplification=4, train_on_flips=True, apply_flips=False)
    assert r2.flips == [] and r2.state.labels[IDS[18]] == "A"


def test_gain_split_adds_up_and_roi_counts_humans_only():
    truth = {i: ("B" if n >= 15 else "A") for n, i in enumerate(IDS)}  # AI wrong on the last 5
    base = {i: "A" for i in IDS}
    labels = dict(base)
    origins = {i: "ai" for i in IDS}
    for i in IDS[17:]:                      # three correct flips
        labels[i], origins[i] = "B", "flip"
    labels[IDS[3]], origins[IDS[3]] = "B", "flip"   # one wrong flip
    labels[IDS[15]], origins[IDS[15]] = "B", "human"
    origins[IDS[16]] = "human_nolabel"      # a tie: paid, no label
    g = gain_split(labels, origins, base, truth, IDS)
    assert g["gain_from_flips"] == pytest.approx(2 / 20) and g["gain_from_humans"] == pytest.approx(1 / 20)
    total = sum(labels[i] == truth[i] for i in IDS) / 20 - sum(base[i] == truth[i] for i in IDS) / 20
    assert g["gain_from_flips"] + g["gain_from_humans"] == pytest.approx(total)
    c = human_counts(origins, IDS, n_train=40)
    assert c["human_count"] == 2 and c["human_no_label"] == 1 and c["human_pct"] == 5.0
    assert roi(g["gain_from_humans"], c["human_pct"]) == pytest.approx(1.0)  # 5 pts per 5 %
    assert roi(0.1, 0.0) is None


def test_eyes_off_check_counts_wrong_labels_in_the_top_left():
    order = [f"q{i:04d}" for i in range(2500)]
    labels = {i: "A" for i in order}
    truth = dict(labels)
    truth[order[1]] = "B"       # wrong inside the top 0.1 % (3 pairs of 2,500)
    truth[order[100]] = "B"     # wrong in the trusted head only
    chk = eyes_off_check(order, labels, truth, trusted_cut=1000)
    assert chk == {"top_left_n": 3, "top_left_wrong": 1, "trusted_head": 1000, "trusted_wrong": 2}
    assert eyes_off_check(order[:10], labels, None, 5)["top_left_n"] == 1


def test_random_flips_baseline_gets_rlthf_iteration0_flip_step():
    base = {i: "A" for i in IDS}
    truth = {i: ("B" if n % 4 == 0 else "A") for n, i in enumerate(IDS)}
    sets = baseline_label_sets(["ai_only", "random", "random_flips", "full_human"], shard_ids=IDS,
                               base_labels=base, human=SimulatedHuman(truth), items_by_id=items(),
                               human_levels=[0, 3, 6], flips0=[IDS[0], IDS[1]], seed=0)
    by = {(b.method, b.human_count): b for b in sets}
    assert set(by) == {("ai_only", 0), ("random", 3), ("random", 6), ("random_flips", 3),
                       ("random_flips", 6), ("full_human", 20)}
    rnd, rf = by[("random", 3)], by[("random_flips", 3)]
    picked = [i for i, o in rnd.origins.items() if o == "human"]
    assert len(picked) == 3 and [i for i, o in rf.origins.items() if o == "human"] == picked  # same picks
    for i in (IDS[0], IDS[1]):
        if i not in picked:                      # flipped unless a human answered it
            assert rf.labels[i] == "B" and rf.origins[i] == "flip"
    assert rf.flips == 2 and by[("full_human", 20)].labels == truth


def test_baseline_picks_without_an_answer_are_still_spend():
    """A recorded human who says "tie" on a pick: the pick keeps its AI label but counts as spend."""
    class TieOnFirst:
        name, simulated = "recorded-tie", False

        def request_labels(self, batch_id, items, ai, rationales=None):
            return {it.id: "B" for it in items[1:]}

    sets = baseline_label_sets(["random"], shard_ids=IDS, base_labels={i: "A" for i in IDS}, human=TieOnFirst(),
                               items_by_id=items(), human_levels=[4], flips0=[], seed=0)
    origins = sets[0].origins
    assert sorted(o for o in origins.values() if o != "ai") == ["human"] * 3 + ["human_nolabel"]
    assert human_counts(origins, IDS, n_train=20)["human_count"] == 4


def test_final_relabel_keeps_curated_and_scores_by_origin():
    train = [f"t{i}" for i in range(10)]
    shard = train[:6]
    truth = {i: "A" for i in train}
    diff = [-1.0] * 10                                      # the final RM says B everywhere: all wrong
    curated = {i: ("A", "ai") for i in shard}
    curated[shard[0]] = ("A", "flip")
    human = {shard[1]: "A"}
    rows = final_labels(train, diff, human, curated)
    assert [r.origin for r in rows[:3]] == ["curated_flip", "human", "curated_ai"]
    assert all(r.origin == "final_rm" and r.label == "B" for r in rows[6:])
    info = final_summary(rows, mode="curated_then_rm", from_iteration=2, truth=truth, shard_ids=shard,
                         curated_labels={i: v[0] for i, v in curated.items()}, human_answers=human)
    assert info.written_acc_shard == info.curated_acc == 1.0     # never worse than what was curated
    assert info.written_acc == pytest.approx(0.6) and info.written_acc_outside_shard == 0.0
    assert info.rm_only_acc == pytest.approx(0.1)                 # only the human answer is right
    assert info.by_origin["final_rm"].pairs == 4 and info.by_origin["final_rm"].acc == 0.0
    assert info.by_origin["human"].acc == 1.0
    paper = final_labels(train, diff, human, None)
    assert sum(r.origin == "final_rm" for r in paper) == 9
    with pytest.raises(ValueError, match="reward differences"):
        final_labels(train, diff[:3], human, None)


class CountingList(list):
    """A list that counts element visits (iteration and ``in``), to catch a per-pair rebuild."""

    visits = 0

    def __iter__(self):
        for x in super().__iter__():
            CountingList.visits += 1
            yield x

    def __contains__(self, x):
        CountingList.visits += len(self)
        return super().__contains__(x)


def test_final_relabel_scales_linearly():
    """The final relabel once rebuilt a set of the shard per pair (quadratic: 21 s at 28.8k pairs).

    Counted, not timed: on a shared 2-core machine a time ratio is noise; element visits are not.
    """
    def visits(n: int) -> int:
        train = CountingList(f"t{i}" for i in range(n))
        shard = CountingList(train[: n // 4])
        truth = {i: "A" for i in train}
        curated = {i: ("A", "ai") for i in shard}
        CountingList.visits = 0
        rows = final_labels(train, [0.5] * n, {}, curated)
        final_summary(rows, mode="curated_then_rm", from_iteration=0, truth=truth, shard_ids=shard,
                      curated_labels={i: "A" for i in shard}, human_answers={})
        return CountingList.visits

    small, big = visits(1_000), visits(8_000)
    # linear: 8×; rebuilding the shard set per pair would be 64×
    assert 0 < small and big / small < 10, (small, big)


def test_ledger_appends_and_never_asks_twice(tmp_path):
    ledger = HumanLedger(tmp_path / "labels.jsonl")
    truth = {i: "B" for i in IDS}
    human = SimulatedHuman(truth)
    wait = dict(poll_seconds=0.01, timeout_s=1.0, progress_every_s=60, how_to_answer="answer it")
    got = ask_humans(ledger, human, "iter00", IDS[:3], items(), {i: "A" for i in IDS}, {}, **wait)
    assert {i: r.label for i, r in got.items()} == {i: "B" for i in IDS[:3]}
    got = ask_humans(ledger, human, "iter01", IDS[:5], items(), {i: "A" for i in IDS}, {}, **wait)
    assert human.calls == 5 and len(got) == 5                      # only the two new pairs asked
    assert [r.batch for r in ledger.load().values()] == ["iter00"] * 3 + ["iter01"] * 2
    ledger.append([HumanLabelRow(id="x", label=None, batch="iter02", annotator="alice")])
    assert "x" in ledger.load() and "x" not in ledger.answers()


class SlowQueue:
    """A queue-like annotator that is answered one pair per poll, never finishing in time."""

    name, simulated = "queue", False

    def __init__(self, total):
        self.total, self.answered = total, 0

    def request_labels(self, batch_id, items, ai, rationales=None):
        self.answered = min(self.total - 1, self.answered + 1)
        return None

    def progress(self, batch_id):
        return self.answered, self.total


def test_wait_prints_answered_count_and_stops_with_how_to_continue(caplog):
    clock = [0.0]
    human = SlowQueue(total=4)
    with caplog.at_level("INFO", logger="rayalign.humans"):
        with pytest.raises(HumanLabelsPending) as err:
            wait_for_batch(human, "iter03", [], {}, None, poll_seconds=10, timeout_s=35, progress_every_s=60,
                           how_to_answer="label it: rayalign annotate serve --run-dir R",
                           clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    msg = str(err.value)
    assert "iter03" in msg and "3/4 answered" in msg and "rerun the same command" in msg
    assert "annotate serve --run-dir R" in msg and "wait_timeout_s" in msg
    lines = [r.getMessage() for r in caplog.records if "waiting for humans" in r.getMessage()]
    assert lines and "1/4 answered" in lines[0] and "3/4 answered" in lines[-1]
    assert len(lines) == len({ln.split(" answered")[0] for ln in lines})  # one line per change
