"""Best-of-N with a reward model: selection, ties, resume, and the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayalign.data.schema import PromptRecord
from rayalign.models.tiny import build_tiny_causal_lm, build_tiny_reward_model
from rayalign.policy.best_of_n import BestOfNJobConfig, BestOfNStats, load_prompts, select

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Tell me a joke.",
           "Write a short poem about the sea.", "Say good morning."]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bon_models")
    return build_tiny_causal_lm(d / "lm"), build_tiny_reward_model(d / "rm")


def _cfg(lm: Path, rm: Path, prompts: Path, **kw) -> BestOfNJobConfig:
    base = dict(input=str(prompts), rm=str(rm), n=4, engine={
        "kind": "hf_local", "model": str(lm), "batch_size": 8,
        "params": {"max_tokens": 10, "temperature": 1.0, "seed": 0}})
    base.update(kw)
    return BestOfNJobConfig.model_validate(base)


def _prompts_file(tmp_path: Path, prompts=PROMPTS) -> Path:
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "prompt": t}) + "\n" for i, t in enumerate(prompts)))
    return p


def _sel(rewards: dict[str, list], texts: dict[str, list[str]]):
    prompts = [PromptRecord(id=k, prompt=f"prompt {k}") for k in rewards]
    cands = {k: {"prompt_id": k, "prompt": f"prompt {k}", "texts": texts[k]} for k in rewards}
    stats = BestOfNStats()
    sft, pairs, recs = select(prompts, cands, rewards, "rm:test", stats)
    return sft, pairs, recs, stats


def test_select_takes_the_highest_reward_and_pairs_it_with_the_lowest():
    sft, pairs, recs, stats = _sel({"a": [0.1, 2.5, -1.0, 0.3]}, {"a": ["w", "x", "y", "z"]})
    assert sft[0]["completion"] == "x" and sft[0]["reward"] == 2.5
    assert (pairs[0].chosen, pairs[0].rejected) == ("x", "y")
    assert pairs[0].meta["score_chosen"] == 2.5 and pairs[0].meta["score_rejected"] == -1.0
    assert recs[0]["best"] == 1 and recs[0]["worst"] == 2 and recs[0]["pair_id"] == pairs[0].id
    assert stats.mean_best_reward == 2.5


def test_all_equal_rewards_give_no_pair_and_are_counted():
    sft, pairs, recs, stats = _sel(
        {"tie": [1.0, 1.0, 1.0], "one": [None, 0.5, None], "same": [0.0, 3.0], "ok": [0.0, 1.0]},
        {"tie": ["a", "b", "c"], "one": ["", "b", ""], "same": ["t", "t"], "ok": ["a", "b"]})
    assert [p.meta["prompt_id"] for p in pairs] == ["ok"]
    assert (stats.skipped_tie, stats.skipped_unscored, stats.skipped_identical) == (1, 1, 1)
    assert stats.empty_candidates == 2
    tie = next(r for r in recs if r["prompt_id"] == "tie")
    assert tie["pair_id"] is None and tie["tied_best"] == 3
    # Every prompt with a scored candidate still gives its best as SFT data.
    assert [s["prompt_id"] for s in sft] == ["tie", "one", "same", "ok"]


def test_load_prompts_reads_jsonl_and_preference_files(tmp_path):
    p = _prompts_file(tmp_path, PROMPTS + [PROMPTS[0]])
    recs = load_prompts(p)
    assert [r.prompt for r in recs] == PROMPTS  # the repeated prompt is kept once
    from rayalign.data.bundled import bundled_path

    hh = load_prompts(bundled_path("hh_rlhf_harmless"), limit=3)
    assert len(hh) == 3 and all(r.prompt.rstrip().endswith("Assistant:") for r in hh)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match="row 1: field prompt"):
        load_prompts(bad)


def test_best_of_n_picks_the_best_scored_candidate_and_resumes(ray_local, models, tmp_path):
    from rayalign.policy.best_of_n import run_best_of_n
    from rayalign.rewards.seq_cls_scorer import RewardScorer
    from rayalign.runs import read_jsonl

    lm, rm = models
    cfg = _cfg(lm, rm, _prompts_file(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    stats = run_best_of_n(cfg, run)
    assert stats.generated_now == 5 and stats.generation_errors == 0
    sel = read_jsonl(run / "selection.jsonl")
    assert len(sel) == 5 and all(len(r["texts"]) == 4 for r in sel)
    # The rewards recorded are the RM's, and the kept candidate is the argmax of them.
    scorer = RewardScorer(rm)
    sft = {r["prompt_id"]: r for r in read_jsonl(run / "sft.jsonl")}
    for r in sel:
        ok = [k for k, t in enumerate(r["texts"]) if t.strip()]
        fresh = scorer.score([r["prompt"]] * len(ok), [r["texts"][k] for k in ok])
        np.testing.assert_allclose([r["rewards"][k] for k in ok], fresh, rtol=1e-4, atol=1e-5)
        best = ok[int(np.argmax(fresh))]
        assert r["best"] == best
        assert sft[r["prompt_id"]]["completion"] == r["texts"][best]
    pairs = read_jsonl(run / "pairs.jsonl")
    assert len(pairs) == stats.pairs and stats.pairs + stats.skipped_tie + stats.skipped_unscored \
        + stats.skipped_identical == 5
    for p in pairs:
        assert p["meta"]["score_chosen"] > p["meta"]["score_rejected"]
    # The pairs load as preference data (what `rayalign dpo` and the RM trainer read).
    from rayalign.data.loaders import load_any

    assert len(load_any(run / "pairs.jsonl")) == len(pairs)

    # Rerun: nothing generated or scored again, same outputs.
    before = (run / "candidates.jsonl").read_text()
    again = run_best_of_n(cfg, run)
    assert (again.generated_now, again.scored_now) == (0, 0)
    assert (run / "candidates.jsonl").read_text() == before
    assert read_jsonl(run / "sft.jsonl") == list(sft.values())



@pytest.mark.slow
def test_a_killed_run_generates_and_scores_only_what_it_lacks(ray_local, models, tmp_path):
    from rayalign.policy.best_of_n import run_best_of_n
    from rayalign.runs import read_jsonl

    lm, rm = models
    cfg = _cfg(lm, rm, _prompts_file(tmp_path), chunk_size=3)
    run = tmp_path / "run"
    run.mkdir()
    full = run_best_of_n(cfg, run)
    assert full.generated_now == 5
    sel = read_jsonl(run / "selection.jsonl")
    # Killed after its first chunk, mid-way through writing the second one.
    lines = (run / "candidates.jsonl").read_text().splitlines(keepends=True)
    (run / "candidates.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    scores = (run / "scores.jsonl").read_text().splitlines(keepends=True)
    (run / "scores.jsonl").write_text("".join(scores[:3]))
    partial = run_best_of_n(cfg, run)
    assert partial.generated_now == 2
    assert partial.scored_now == sum(1 for r in read_jsonl(run / "selection.jsonl")[3:]
                                     for t in r["texts"] if t.strip())
    assert [r["prompt_id"] for r in read_jsonl(run / "selection.jsonl")] == [r["prompt_id"] for r in sel]


@pytest.mark.slow
def test_bon_cli_as_a_user_runs_it(models, tmp_path):
    lm, rm = models
    cfg = _cfg(lm, rm, _prompts_file(tmp_path, PROMPTS[:3]), n=3).model_dump(mode="json")
    cfg.pop("ray")
    (tmp_path / "bon.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rayalign.cli", "bon", "--config", str(tmp_path / "bon.yaml"),
           "--run-dir", str(tmp_path / "run"), "--set", "ray.num_cpus=2"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pairs.jsonl" in out.stdout
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["prompts"] == 3 and stats["sft_examples"] == 3
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["job"] == "bon" and man["status"] == "finished"
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "stats.json").read_text())["generated_now"] == 0
