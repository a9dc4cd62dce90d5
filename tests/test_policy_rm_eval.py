"""RM-based policy evaluation: best-of-N expectation, sequence log-probs, KL and win rate."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import os
from pathlib import Path

import numpy as np
import pytest

from rayalign.models.tiny import build_tiny_causal_lm, build_tiny_reward_model
from rayalign.policy.rm_eval import best_of_n_curve, expected_best_of_n

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Tell me a joke.",
           "Write a short poem about the sea."]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("rm_eval_models")
    return (build_tiny_causal_lm(d / "lm"), build_tiny_causal_lm(d / "lm2", seed=1),
            build_tiny_reward_model(d / "rm"))


def test_expected_best_of_n_is_the_mean_max_over_all_subsets():
    pool = [0.3, -1.2, 2.0, 0.7, 0.7, 1.1, -0.4, 5.0]
    for n in (1, 2, 3, 4, 8):
        brute = np.mean([max(c) for c in itertools.combinations(pool, n)])
        assert expected_best_of_n(pool, n) == pytest.approx(brute, rel=1e-12)
    assert expected_best_of_n([1, 2, 3, 4], 2) == pytest.approx(20 / 6)
    assert expected_best_of_n([None, 1.0, 3.0], 2) == 3.0  # unscored candidates left out
    curve = best_of_n_curve([[0, 1, 2, 3], [4, 4, 4, 4]], ns=(1, 2, 4))
    assert curve == {1: pytest.approx(2.75), 2: pytest.approx((20 / 6 - 1 + 4) / 2), 4: 3.5}
    with pytest.raises(ValueError, match="fewer than 4"):
        best_of_n_curve([[1, 2, 3]], ns=(1, 4))


@pytest.mark.slow
def test_sequence_logprobs_match_the_transformers_loss(ray_local, models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rayalign.policy.rm_eval import response_token_ids, sequence_logprobs

    lm = models[0]
    tok = AutoTokenizer.from_pretrained(lm)
    enc = [response_token_ids(tok, p, r, stopped) for p, r, stopped in
           [("Say hi.", "hello there friend", True), ("Count.", "one two three four five", False)]]
    got = sequence_logprobs(str(lm), [e[0] for e in enc], [e[1] for e in enc])
    model = AutoModelForCausalLM.from_pretrained(lm).eval()
    for (ids, start), lp in zip(enc, got):
        labels = torch.tensor([[-100] * start + ids[start:]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels).loss  # mean NLL
        assert lp == pytest.approx(-float(loss) * (len(ids) - start), rel=1e-4)
    assert enc[0][0][-1] == tok.eos_token_id and enc[1][0][-1] != tok.eos_token_id


@pytest.mark.slow
def test_policy_against_itself_wins_half_with_zero_kl_and_another_has_positive_kl(ray_local, models):
    from rayalign.engines.base import SamplingParams
    from rayalign.policy.rm_eval import evaluate_policy
    from rayalign.rewards.seq_cls_scorer import RewardScorer

    lm, lm2, rm = models
    # Greedy: identical models give identical answers whatever the batching. (Sampled answers
    # depend on how Ray Data groups prompts into batches: hf_local seeds once per batch.)
    greedy = SamplingParams(max_tokens=12, temperature=0.0)
    same = evaluate_policy(PROMPTS, str(lm), str(lm), rm, params=greedy)
    assert [r["before"] for r in same.rows] == [r["after"] for r in same.rows]
    assert same.win_rate_after == 0.5 and same.ties == 4
    assert same.kl_after_to_reference == 0.0
    assert same.reward_after == same.reward_before
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=3)
    other = evaluate_policy(PROMPTS, str(lm), str(lm2), rm, samples=2, params=params)
    # Two unrelated random models: the after-policy's own samples are far likelier under it.
    assert other.kl_after_to_reference > 1.0
    rows = other.rows
    fresh = RewardScorer(rm).score([r["prompt"] for r in rows], [r["after"] for r in rows])
    np.testing.assert_allclose([r["reward_after"] for r in rows], fresh, rtol=1e-4, atol=1e-5)
    wins = sum(r["reward_after"] > r["reward_before"] for r in rows)
    ties = sum(r["reward_after"] == r["reward_before"] for r in rows)
    assert other.win_rate_after == pytest.approx((wins + ties / 2) / len(rows))


@pytest.mark.slow
def test_eval_policy_cli(models, tmp_path):
    lm, _, rm = models
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = subprocess.run(
        [sys.executable, "-m", "rayalign.cli", "eval", "policy", "--before", str(lm), "--after", str(lm),
         "--rm", str(rm), "--prompts", str(prompts), "--offset", "1", "--limit", "3",
         "--max-tokens", "8", "--temperature", "0", "--out", str(tmp_path / "eval")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads((tmp_path / "eval" / "policy_eval.json").read_text())["rows"][0]
    assert row["prompts"] == 3 and row["win_rate_after"] == 0.5 and row["kl_after_to_reference"] == 0.0
    assert "win_rate_after" in out.stdout
