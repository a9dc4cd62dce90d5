"""The RLTHF loop end to end on real HH-RLHF pairs (bundled slice), local Ray, MiniLM RM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayalign.config import ConfigError, load_config, validate_config
from rayalign.rlthf.config import RLTHFConfig
from rayalign.rlthf.driver import RLTHFLoop
from rayalign.rlthf.labelling import get_ai_labels
from rayalign.runs import read_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embed_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


def small_config(embed_cache: Path, **over) -> RLTHFConfig:
    data = {
        "name": "t", "seed": 0,
        "data": {"path": "bundled:hh_rlhf_harmless", "limit": 300, "test_fraction": 0.2},
        "labeller": {"kind": "simulated", "simulated": {"target_agreement": 0.75, "errors": "length"}},
        "ground_truth": {"mode": "cleaned", "folds": 3},
        "reward_model": {"embedding_head": {"cache_dir": str(embed_cache), "num_actors": 1}},
        "iterations": 2, "human_budget_pct": 5.0,
        "baselines": ["ai_only", "random", "random_flips", "full_human"],
    }
    data.update(over)
    return validate_config(RLTHFConfig, data)


class CountingLabeller:
    def __init__(self):
        self.asked = 0

    def __call__(self, cfg, items, truth, cache_path):
        self.asked += len(items)
        return get_ai_labels(cfg, items, truth, cache_path)


def test_loop_end_to_end(ray_local, tmp_path, embed_cache):
    cfg = small_config(embed_cache)
    summary = RLTHFLoop(cfg, tmp_path / "run").run_loop()
    run = tmp_path / "run"
    iters = summary["iterations"]
    assert [r["iteration"] for r in iters] == [0, 1, 2]
    assert summary["ground_truth"].startswith("cleaned")
    assert summary["simulated_labeller"] and summary["simulated_human"]
    shard = 240  # 300 pairs, 20% test
    budget = round(0.05 * shard)
    assert [r["human_count"] for r in iters] == [0, budget, 2 * budget]
    # the AI labels start near the simulated labeller's target agreement
    assert 0.65 < iters[0]["curated_acc"] < 0.85
    # every human answer is the (simulated, error-free) ground truth
    gt = json.loads((run / "data" / "ground_truth.json").read_text())["labels"]
    ledger = read_jsonl(run / "humans" / "labels.jsonl")
    assert len(ledger) == 2 * budget and all(r["simulated"] for r in ledger)
    assert all(r["label"] == gt[r["id"]] for r in ledger)
    # flips are accounted for and scored against ground truth
    assert iters[0]["flips"] >= iters[0]["flips_correct"] >= 0
    # per-iteration artefacts
    for k in range(3):
        d = run / "iterations" / f"iter_{k:02d}"
        margins = read_jsonl(d / "margins.jsonl")
        assert len(margins) == shard
        assert all(a["margin"] >= b["margin"] for a, b in zip(margins, margins[1:]))
        curve = json.loads((d / "curve.json").read_text())
        assert curve["n"] == shard
    # baselines at RLTHF's human levels
    methods = sorted({(b["method"], b["human_count"]) for b in summary["baselines"]})
    assert ("ai_only", 0) in methods and ("full_human", shard) in methods
    assert ("random", budget) in methods and ("random", 2 * budget) in methods
    full = [b for b in summary["baselines"] if b["method"] == "full_human"][0]
    assert full["curated_acc"] == 1.0
    # the final RM relabels the whole train split in TRL format, human answers kept
    trl = read_jsonl(run / "final" / "relabelled_trl.jsonl")
    assert len(trl) == shard and set(trl[0]) == {"id", "prompt", "chosen", "rejected"}
    relab = {r["id"]: r for r in read_jsonl(run / "final" / "relabelled.jsonl")}
    assert all(relab[r["id"]]["label"] == r["label"] for r in ledger)
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    # honest accounting: the curated gain splits exactly into flips (free) and human answers (paid)
    for r in iters:
        gain = r["curated_acc"] - iters[0]["curated_acc"]
        assert r["gain_from_flips"] + r["gain_from_humans"] == pytest.approx(gain, abs=1e-9)
        assert r["top_left_n"] == 1 and r["top_left_wrong"] in (0, 1) and r["trusted_wrong"] is not None
    assert iters[0]["gain_from_flips"] == iters[0]["gain_from_humans"] == 0
    # Random + the same flip step as RLTHF's iteration 0, at RLTHF's human levels
    rf = sorted((b for b in summary["baselines"] if b["method"] == "random_flips"), key=lambda b: b["human_count"])
    assert [b["human_count"] for b in rf] == [budget, 2 * budget]
    assert all(b["flips"] == iters[0]["flip_candidates"] for b in rf)
    # the DPO corpus is never worse than the curated labels it keeps, and is scored by origin
    fin = summary["final"]
    assert fin["labels"] == "curated_then_rm" and fin["pairs"] == shard
    assert fin["written_acc_shard"] == pytest.approx(fin["curated_acc"]) == pytest.approx(iters[-1]["curated_acc"])
    assert sum(o["pairs"] for o in fin["by_origin"].values()) == shard
    assert fin["by_origin"]["human"]["acc"] == 1.0
    from rayalign.reports.rlthf_report import write_report  # the CLI writes it after the loop

    assert write_report(run).is_file() and "Eyes-off check" in (run / "report.md").read_text()


def test_rlthf_without_flips_and_eyes_off_spot_check(ray_local, tmp_path, embed_cache):
    """``apply_flips: false`` (the ablation): no label is flipped, all gain is paid for; the
    people's spot check of the curve's top is paid from the same budget."""
    cfg = small_config(embed_cache, iterations=1, apply_flips=False, eyes_off_spot_check=2, baselines=[],
                       final_relabel=False)
    summary = RLTHFLoop(cfg, tmp_path / "run").run_loop()
    r0, r1 = summary["iterations"]
    assert r0["flips"] == 0 and r0["flip_candidates"] >= 0 and not r0["apply_flips"]
    assert r0["spot_check"] == 2 and r0["spot_check_disagree"] is not None
    assert r0["human_batch"] + r0["human_batch_no_label"] == 12       # spot check inside the budget
    assert r1["gain_from_flips"] == 0 and r1["human_count"] == 12
    sel = json.loads((tmp_path / "run" / "iterations" / "iter_00" / "selection.json").read_text())
    assert len(sel["spot_check"]) == 2 and not sel["flips_applied"]
    margins = read_jsonl(tmp_path / "run" / "iterations" / "iter_00" / "margins.jsonl")
    assert [m["id"] for m in margins[:2]] == sel["spot_check"]        # the very top of the curve


def test_resume_after_crash_never_asks_twice(ray_local, tmp_path, embed_cache):
    from rayalign.humans.simulated import SimulatedHuman

    cfg = small_config(embed_cache, baselines=[], final_relabel=False)
    gt_holder = {}

    class CrashingHuman:
        name, simulated = "crashing-simulated-human", True

        def __init__(self):
            self.calls = 0

        def request_labels(self, batch_id, items, ai_labels, rationales=None):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("simulated crash while waiting for humans")
            return {it.id: gt_holder["gt"][it.id] for it in items}

    labeller = CountingLabeller()
    loop = RLTHFLoop(cfg, tmp_path / "run", human=CrashingHuman(), labeller_fn=labeller)
    gt_holder["gt"] = loop.prepare().labels  # ground truth for the fake human, before run_loop
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.run_loop()
    asked_first = labeller.asked
    assert asked_first == 240
    ledger_before = read_jsonl(tmp_path / "run" / "humans" / "labels.jsonl")
    assert len(ledger_before) == 12  # first batch paid for, second never answered

    human2 = SimulatedHuman(gt_holder["gt"])
    labeller2 = CountingLabeller()
    summary = RLTHFLoop(cfg, tmp_path / "run", human=human2, labeller_fn=labeller2).run_loop()
    assert labeller2.asked == 0                     # AI labels reloaded, not re-requested
    assert human2.calls == 12                       # only the unanswered second batch
    ledger = read_jsonl(tmp_path / "run" / "humans" / "labels.jsonl")
    assert len(ledger) == len({r["id"] for r in ledger}) == 24
    assert [r["human_count"] for r in summary["iterations"]] == [0, 12, 24]


def test_a_rerun_after_a_crash_reuses_the_persisted_error_model(ray_local, tmp_path, embed_cache, monkeypatch):
    """The error model is fitted and written before the batch is drawn; a rerun after a crash
    at the human step reads it back (a refit would be refused here) and asks the same pairs."""
    import rayalign.rlthf.driver as driver

    cfg = small_config(embed_cache, baselines=[], final_relabel=False)
    truth: dict = {}

    class CrashingHuman:
        name, simulated = "crashing-simulated-human", True
        calls = 0

        def request_labels(self, batch_id, items, ai_labels, rationales=None):
            CrashingHuman.calls += 1
            if CrashingHuman.calls == 2:
                raise RuntimeError("simulated crash while waiting for humans")
            return {it.id: truth[it.id] for it in items}

    loop = RLTHFLoop(cfg, tmp_path / "run", human=CrashingHuman())
    truth.update(loop.prepare().labels)
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.run_loop()
    it1 = tmp_path / "run" / "iterations" / "iter_01"
    saved = json.loads((it1 / "error_model.json").read_text())
    assert saved["model"]["fitted"] and saved["model"]["n_labels"] > 0
    pending = json.loads((it1 / "pending_selection.json").read_text())

    def no_refit(*a, **k):
        raise AssertionError("the persisted error model should have been reused")
    monkeypatch.setattr(driver, "fit_error_model", no_refit)
    from rayalign.humans.simulated import SimulatedHuman

    summary = RLTHFLoop(cfg, tmp_path / "run", human=SimulatedHuman(truth)).run_loop()
    assert json.loads((it1 / "error_model.json").read_text()) == saved
    sel = json.loads((it1 / "selection.json").read_text())
    assert sel["human_batch"] == pending["selection"]["human_batch"] and sel["random_share"] == pending["random_share"]
    assert [r["human_count"] for r in summary["iterations"]] == [0, 12, 24]


@pytest.mark.parametrize("targeting", ["paper", "error_model"])
def test_flip_audit_spends_budget_and_gates_flips(ray_local, tmp_path, embed_cache, targeting):
    from rayalign.rlthf.targeting import wilson_lower

    over = {}
    if targeting == "error_model":  # the evidence that makes flip candidates: both orders, a second judge
        over["labeller"] = {"kind": "simulated", "simulated": {
            "target_agreement": 0.75, "errors": "length", "position_bias": 1.0, "both_orders": True},
            "extra_judges": [{"kind": "simulated", "simulated": {"target_agreement": 0.75, "seed": 9}}]}
    cfg = small_config(embed_cache, flip_audit=4, baselines=[], final_relabel=False, targeting=targeting, **over)
    summary = RLTHFLoop(cfg, tmp_path / "run").run_loop()
    rounds = summary["iterations"][:-1]
    audited = [r for r in rounds if r["flip_candidates"]]
    assert audited, "no round had flip candidates: the gate was not exercised"
    for r in rounds:
        assert r["human_batch"] + r["human_batch_no_label"] == 12   # the audit is paid from the same budget
        if r["flip_candidates"]:
            assert r["flip_audit"] == 4
            right = round(r["flip_audit_precision"] * 4)
            applied = r["flips"] == r["flip_candidates"]
            assert applied == (wilson_lower(right, 4, cfg.flip_confidence) > 0.5)
            assert applied == r["flip_gate"].startswith("applied")
        else:
            assert r["flip_audit"] == 0 and r["flips"] == 0


def test_loop_with_a_real_judge_over_http(ray_local, tmp_path, embed_cache):
    """labeller.kind: judge — the OpenAI-compatible path (a local fake server), cached on rerun."""
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        server.plan = ["garbage", "500"]  # the first requests fail; retried, nothing lost
        judge = {"kind": "openai", "model": "fake-judge", "base_urls": [server.base_url],
                 "api_key_env": "RAYALIGN_TEST_KEY", "both_orders": False, "concurrency": 1,
                 "max_retries": 2, "timeout_s": 10}
        cfg = small_config(embed_cache, iterations=1, baselines=[], final_relabel=False,
                           data={"path": "bundled:hh_rlhf_harmless", "limit": 60},
                           labeller={"kind": "judge", "judge": judge},
                           ground_truth={"mode": "raw"})
        summary = RLTHFLoop(cfg, tmp_path / "run").run_loop()
        judged = server.n_requests()
        assert judged >= 48                           # every shard pair was asked (plus retries)
        assert not summary["simulated_labeller"]
        rows = read_jsonl(tmp_path / "run" / "data" / "ai_judgments.jsonl")
        assert len(rows) == 48 and all(not r["simulated"] for r in rows)
        # the fake judge always answers "Response A"
        assert all(r["label"] == "A" for r in rows if r["error"] is None)
        # a second run on a new run dir sharing nothing re-asks; the same run dir asks nothing
        RLTHFLoop(cfg, tmp_path / "run").run_loop()
        assert server.n_requests() == judged


def test_resume_with_changed_config_is_refused(ray_local, tmp_path, embed_cache):
    cfg = small_config(embed_cache, iterations=1, baselines=[], final_relabel=False)
    RLTHFLoop(cfg, tmp_path / "run").run_loop()
    with pytest.raises(ValueError, match="different config"):
        RLTHFLoop(cfg.model_copy(update={"amplification": 2}), tmp_path / "run")


@pytest.mark.parametrize("override,field", [
    ("iterations=0", "iterations"),
    ("amplification=0", "amplification"),
    ("human_budget_pct=-1", "human_budget_pct"),
    ("data.shard_index=3", "data"),
    ("backoff_schedule=[0.6, 1.5]", "backoff_schedule"),
    ("labeller.kind=replay", "labeller"),
    ("labeller.simulated.target_agreement=0.3", "labeller.simulated.target_agreement"),
    ("itrations=3", "itrations"),
    ("labeller.judge={kind: openai, concurency: 3}", "concurency"),
    ("reward_model.lora={lerning_rate: 0.1}", "lerning_rate"),
])
def test_bad_config_values_rejected_naming_file_and_field(override, field):
    path = REPO / "jobs" / "configs" / "quickstart.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(RLTHFConfig, path, [override])
    assert str(path) in str(err.value) and field in str(err.value)


def test_quickstart_config_is_valid():
    cfg = load_config(RLTHFConfig, REPO / "jobs" / "configs" / "quickstart.yaml")
    assert cfg.labeller.kind == "simulated" and cfg.human.kind == "simulated"


@pytest.mark.slow
def test_loop_with_lora_reward_model_on_ray_train(ray_local, tmp_path):
    """The same loop with ``backend: lora`` (TRL RewardTrainer + PEFT under Ray Train), with
    2-fold cross-fitting: each iteration's RM and its two fold RMs train in one Ray Train run,
    and every iteration gets fold models of its own."""
    from rayalign.models.tiny import build_tiny_causal_lm

    base = build_tiny_causal_lm(tmp_path / "tiny")
    cfg = validate_config(RLTHFConfig, {
        "name": "lora", "data": {"path": "bundled:hh_rlhf_harmless", "limit": 60},
        "ground_truth": {"mode": "raw"}, "iterations": 1, "human_budget_pct": 10.0,
        "baselines": [], "cross_fit_folds": 2,
        "reward_model": {"backend": "lora", "lora": {
            "base_model": str(base), "num_epochs": 1, "effective_batch_size": 16,
            "per_device_batch_size": 8, "max_length": 64, "lora": {"r": 4, "alpha": 8}}},
    })
    summary = RLTHFLoop(cfg, tmp_path / "run").run_loop()
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    assert summary["iterations"][1]["human_count"] == 5
    assert (tmp_path / "run" / "final" / "rm").is_dir()
    assert len(read_jsonl(tmp_path / "run" / "final" / "relabelled_trl.jsonl")) == 48
    for k in (0, 1):
        meta = json.loads((tmp_path / "run" / "iterations" / f"iter_{k:02d}" / "rm" / "model"
                           / "rayalign_rm.json").read_text())
        assert meta["batched_fits"] == 3
        assert (tmp_path / "run" / "scratch" / f"crossfit_{k:02d}" / "fold_0" / "model").is_dir()


def _truth(cfg, run_path) -> dict:
    """Ground truth computed up front (``prepare``: data + ground truth, no loop), so test
    humans can answer from it; the loop run later on the same run dir reuses it."""
    return RLTHFLoop(cfg, run_path).prepare().labels


@pytest.mark.parametrize("targeting", ["error_model", "paper"])
def test_crash_after_humans_answered_reuses_the_fixed_selection(ray_local, tmp_path, embed_cache, monkeypatch,
                                                                 targeting):
    """Killed between writing the human ledger and finishing the iteration: the rerun uses
    the batch fixed before people were asked (no re-selection from a refit RM), so every
    label bought is used and nobody is asked again."""
    from rayalign.humans.simulated import SimulatedHuman
    import rayalign.rlthf.driver as loop_mod
    import rayalign.rlthf.rounds as drv

    cfg = small_config(embed_cache, baselines=[], final_relabel=False, targeting=targeting)
    truth = _truth(cfg, tmp_path / "run")
    loop = RLTHFLoop(cfg, tmp_path / "run", human=SimulatedHuman(truth))
    real_build = drv.build_training_set

    def crash(**kw):
        raise RuntimeError("simulated kill after the human step")

    monkeypatch.setattr(drv, "build_training_set", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        loop.run_loop()
    ledger = read_jsonl(tmp_path / "run" / "humans" / "labels.jsonl")
    assert len(ledger) == 12 and (tmp_path / "run" / "iterations" / "iter_00" / "pending_selection.json").exists()

    monkeypatch.setattr(drv, "build_training_set", real_build)
    planner = "plan_error_round" if targeting == "error_model" else "plan_round"
    real_plan, calls = getattr(loop_mod, planner), []
    monkeypatch.setattr(loop_mod, planner, lambda *a, **k: calls.append(1) or real_plan(*a, **k))
    human2 = SimulatedHuman(truth)
    summary = RLTHFLoop(cfg, tmp_path / "run", human=human2).run_loop()
    assert len(calls) == 1                 # iteration 0 reused its saved selection; only iteration 1 selected
    assert human2.calls == 12              # only iteration 1's batch was asked
    used = read_jsonl(tmp_path / "run" / "iterations" / "iter_00" / "human_labels.jsonl")
    assert {r["id"] for r in used} == {r["id"] for r in ledger}
    assert [r["human_count"] for r in summary["iterations"]] == [0, 12, 24]


def test_ties_and_skips_are_spend_and_never_asked_again(ray_local, tmp_path, embed_cache):
    """A person who answers tie/skip on some pairs: those count as human spend, keep their AI
    label, are recorded in the ledger without a label, and are never selected again."""
    cfg = small_config(embed_cache, baselines=[], final_relabel=True, iterations=3)
    truth = _truth(cfg, tmp_path / "run")
    seen: list[str] = []

    class HalfTieHuman:
        name, simulated = "half-tie-simulated-human", True

        def request_labels(self, batch_id, items, ai_labels, rationales=None):
            seen.extend(it.id for it in items)
            return {it.id: truth[it.id] for n, it in enumerate(items) if n % 2 == 0}

    summary = RLTHFLoop(cfg, tmp_path / "run", human=HalfTieHuman()).run_loop()
    assert len(seen) == len(set(seen)) == 36      # 3 batches of 12, no pair shown twice
    ledger = read_jsonl(tmp_path / "run" / "humans" / "labels.jsonl")
    assert len(ledger) == 36 and sum(r["label"] is None for r in ledger) == 18
    iters = summary["iterations"]
    assert [r["human_count"] for r in iters] == [0, 12, 24, 36]
    assert [r["human_no_label"] for r in iters] == [0, 6, 12, 18]
    relab = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "final" / "relabelled.jsonl")}
    no_label = [r["id"] for r in ledger if r["label"] is None]
    assert all(relab[i]["origin"] != "human" for i in no_label)
    assert all(relab[r["id"]]["label"] == r["label"] for r in ledger if r["label"] is not None)


def test_failed_ai_judgments_are_retried_on_rerun(ray_local, tmp_path, embed_cache, monkeypatch):
    """A judge that timed out on some pairs: a rerun (before the loop built on the labels)
    asks again for exactly those pairs and no others."""
    from rayalign.data.schema import Judgment

    cfg = small_config(embed_cache, baselines=[], final_relabel=False, iterations=1)

    def flaky(cfg_, items, truth, cache_path):
        out = get_ai_labels(cfg_, items, truth, cache_path)
        return [Judgment(item_id=j.item_id, judge=j.judge, error="simulated timeout") if n < 10 else j
                for n, j in enumerate(out)]

    def crash(self, k, state):
        raise RuntimeError("simulated kill before iteration 0")

    monkeypatch.setattr(RLTHFLoop, "_iteration", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        RLTHFLoop(cfg, tmp_path / "run", labeller_fn=flaky).run_loop()
    rows = read_jsonl(tmp_path / "run" / "data" / "ai_judgments.jsonl")
    assert sum(1 for r in rows if r.get("error")) == 10
    monkeypatch.undo()
    labeller = CountingLabeller()
    RLTHFLoop(cfg, tmp_path / "run", labeller_fn=labeller).run_loop()
    assert labeller.asked == 10
    rows = read_jsonl(tmp_path / "run" / "data" / "ai_judgments.jsonl")
    assert not any(r.get("error") for r in rows) and len(rows) == 240


def test_queue_human_pauses_resumes_and_never_enqueues_twice(ray_local, tmp_path, embed_cache):
    """Real people through the annotation queue: the loop stops (resumably) at an unfinished
    batch, a rerun after people answered goes on to the next batch, and no pair is ever
    enqueued twice (one answer per item per annotator, including a tie)."""
    from rayalign.humans.queue import AnnotationQueue
    from rayalign.humans.ledger import HumanLabelsPending

    cfg = small_config(embed_cache, baselines=[], final_relabel=False,
                       human={"kind": "queue", "poll_seconds": 0.05, "wait_timeout_s": 0.2})
    run = tmp_path / "run"
    truth = _truth(cfg, run)   # the test's "people" know the answers
    with pytest.raises(HumanLabelsPending, match="iter00"):
        RLTHFLoop(cfg, run).run_loop()
    queue = AnnotationQueue(run / "humans" / "queue.sqlite")
    assert queue.batches() == ["iter00"]
    first = queue.items("iter00", with_ai=False)
    assert len(first) == 12
    for n, it in enumerate(first):
        queue.submit(it["id"], "iter00", "tie" if n == 0 else truth[it["id"]], annotator="alice")

    with pytest.raises(HumanLabelsPending, match="iter01"):
        RLTHFLoop(cfg, run).run_loop()
    assert queue.batches() == ["iter00", "iter01"]
    second = queue.items("iter01", with_ai=False)
    ids = [it["id"] for it in first + second]
    assert len(ids) == len(set(ids)) == 24           # iteration 1 asked about new pairs only
    for it in second:
        queue.submit(it["id"], "iter01", truth[it["id"]], annotator="bob")

    summary = RLTHFLoop(cfg, run).run_loop()
    assert queue.batches() == ["iter00", "iter01"]   # nothing enqueued again on the last rerun
    assert [r["human_count"] for r in summary["iterations"]] == [0, 12, 24]
    assert summary["iterations"][1]["human_no_label"] == 1   # alice's tie is spend, not a label
    ledger = read_jsonl(run / "humans" / "labels.jsonl")
    assert len(ledger) == 24 and sum(r["label"] is None for r in ledger) == 1
    assert all(r["label"] == truth[r["id"]] for r in ledger if r["label"] is not None)
