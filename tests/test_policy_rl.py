"""Online RL against a reward model: reward sources, the TRL adapter, GRPO/RLOO on Ray Train.

Tiny offline models built here (random-weight Llama policy and RM), so the real TRL / Ray
Train / Ray Serve paths run in seconds to a minute each.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ray_cli_helpers import free_port

from rayalign.models.tiny import build_tiny_causal_lm, build_tiny_reward_model
from rayalign.policy.rl_config import RLJobConfig, RLTrainConfig
from rayalign.rewards.http_client import HttpRewardClient, RewardEndpointError
from rayalign.rewards.trl_reward import RewardSourceConfig, RMRewardFunction
from rayalign.training.config import TrainScaling

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"\n\nHuman: tell me something about the number {i}.\n\nAssistant:" for i in range(16)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("rl_tiny") / "lm")


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    return build_tiny_reward_model(tmp_path_factory.mktemp("rl_tiny") / "rm")


def _rl_cfg(**kw) -> RLTrainConfig:
    base = dict(max_steps=2, effective_batch_size=8, per_device_batch_size=8, num_generations=4,
                max_completion_length=8, learning_rate=1e-3, checkpoint_every_steps=1,
                scaling=TrainScaling(num_workers=1, max_failures=0))
    base.update(kw)
    return RLTrainConfig(**base)


# --- a loopback stub of `rayalign rm serve`'s POST /score (same request/response) ---------

class _StubRM:
    """Scores with a real local RM; answers 503 once ``fail_after`` requests were served."""

    def __init__(self, rm_dir: Path):
        from rayalign.rewards.sources import load_reward_model

        self.scorer = load_reward_model(rm_dir)
        self.lock = threading.Lock()
        self.served = 0
        self.fail_after: int | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    if self.path != "/rm/score":
                        code, out = 404, {"detail": "not found"}
                    elif stub.fail_after is not None and stub.served >= stub.fail_after:
                        code, out = 503, {"detail": "replica restarting"}
                    else:
                        items = body["items"]
                        r = stub.scorer.score([i["prompt"] for i in items], [i["response"] for i in items])
                        stub.served += 1
                        code, out = 200, {"rewards": [float(x) for x in r]}
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub_rm(tiny_rm):
    s = _StubRM(tiny_rm)
    yield s
    s.close()


# --- configs --------------------------------------------------------------------------------

def test_reward_source_needs_exactly_one_of_model_dir_and_url():
    with pytest.raises(ValueError, match="exactly one"):
        RewardSourceConfig()
    with pytest.raises(ValueError, match="exactly one"):
        RewardSourceConfig(model_dir="x", url="http://127.0.0.1:1/rm")


def test_rl_config_checks_whole_groups_and_vllm_needs_gpu():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        RLTrainConfig(effective_batch_size=10, num_generations=4)
    with pytest.raises(ValueError, match="use_gpu"):
        RLTrainConfig(use_vllm=True)


@pytest.mark.parametrize("name", ["rl_cpu.yaml", "rl_gpu.yaml"])
def test_shipped_rl_configs_validate(name):
    from rayalign.config import load_config

    cfg = load_config(RLJobConfig, ROOT / "jobs" / "configs" / name)
    assert cfg.train.beta > 0 and cfg.train.num_generations >= 2
    assert (cfg.train.use_vllm and cfg.reward.url) if name == "rl_gpu.yaml" else cfg.reward.model_dir


# --- reward sources -------------------------------------------------------------------------

def test_http_client_scores_in_batches_like_the_local_rm(stub_rm, tiny_rm):
    from rayalign.rewards.sources import load_reward_model

    responses = [f"answer number {i}" for i in range(10)]
    client = HttpRewardClient(stub_rm.url, batch_size=4, backoff_s=0.01)
    got = client.score(PROMPTS[:10], responses)
    want = load_reward_model(tiny_rm).score(PROMPTS[:10], responses)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert stub_rm.served == 3  # 10 items, 4 per request


def test_http_client_retries_then_fails_with_the_url_never_a_zero(stub_rm):
    stub_rm.fail_after = 0
    client = HttpRewardClient(stub_rm.url, max_retries=2, backoff_s=0.01)
    with pytest.raises(RewardEndpointError) as e:
        client.score(PROMPTS[:2], ["a", "b"])
    assert stub_rm.url in str(e.value) and "HTTP 503" in str(e.value) and "3 attempts" in str(e.value)
    assert "rayalign rm serve" in str(e.value)
    # A wrong route is the caller's error: no retries, the status in the message.
    with pytest.raises(RewardEndpointError, match="HTTP 404"):
        HttpRewardClient(stub_rm.url + "/nope", max_retries=5, backoff_s=5).score(["p"], ["r"])


def test_http_client_unreachable_endpoint_is_a_clear_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/rm"
    with pytest.raises(RewardEndpointError, match=f"127.0.0.1:{port}/rm/score failed: ConnectError"):
        HttpRewardClient(url, max_retries=1, backoff_s=0.01, timeout_s=2).score(["p"], ["r"])


def test_trl_reward_function_reads_both_formats_and_floors_empty_answers(tiny_rm):
    fn = RMRewardFunction({"model_dir": str(tiny_rm)})
    assert fn.__name__ == "rm"
    texts = ["a kind answer", "", "another answer", "   "]
    got = fn(prompts=PROMPTS[:4], completions=texts, completion_ids=None, trainer_state=None)
    ref = fn.source.score([PROMPTS[0], PROMPTS[2]], [texts[0], texts[2]])
    assert got[0] == pytest.approx(ref[0], abs=1e-6) and got[2] == pytest.approx(ref[1], abs=1e-6)
    assert got[1] == got[3] == pytest.approx(min(ref), abs=1e-6)
    # Conversational TRL rows are laid out as the HH text the RM was trained on.
    conv = fn(prompts=[[{"role": "user", "content": "tell me something about the number 0."}]],
              completions=[[{"role": "assistant", "content": "a kind answer"}]])
    assert conv[0] == pytest.approx(got[0], abs=1e-6)
    assert json.loads(json.dumps(fn.cfg.model_dump()))  # plain config: pickles into workers
    import pickle

    assert pickle.loads(pickle.dumps(fn))._source is None


def test_embedding_head_rm_scores_fresh_text_as_the_rlthf_backend_does(tmp_path):
    """The RL scorer and the training-time backend give the same rewards (shared features)."""
    from rayalign.data.schema import PairwiseItem
    from rayalign.models.encoders import SentenceEncoder
    from rayalign.rewards.embedding_head import (EmbeddingHeadBackend, EmbeddingHeadConfig,
                                                 response_text)
    from rayalign.rewards.sources import EmbeddingHeadRM, load_reward_model, rm_kind

    rm_dir = tmp_path / "rm"
    rm_dir.mkdir()
    head = np.random.default_rng(0).normal(size=768)
    np.save(rm_dir / "head.npy", head)
    (rm_dir / "rm.json").write_text(json.dumps({"backend": "embedding_head", "encoder": "minilm", "dim": 768}))
    assert rm_kind(rm_dir) == "embedding_head"
    scorer = load_reward_model(rm_dir)
    assert isinstance(scorer, EmbeddingHeadRM)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    responses = ["Sure, here is a friendly answer.", "No.", "I will not help with that."]
    got = scorer.score(prompts, responses)

    backend = EmbeddingHeadBackend(EmbeddingHeadConfig(), tmp_path / "cache")
    enc = SentenceEncoder("minilm")
    texts = list(dict.fromkeys(backend.prompt_texts(prompts) + [response_text(r) for r in responses]))
    from rayalign.rewards.embedding_head import text_key

    backend.store.add([text_key(t) for t in texts], enc.encode(texts))
    items = [PairwiseItem(id=str(i), prompt=p, response_a=r, response_b=r)
             for i, (p, r) in enumerate(zip(prompts, responses))]
    want, _ = backend.rewards(head, items)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert len(set(np.round(got, 4))) == 3


def test_reward_dir_errors_name_the_directory(tmp_path):
    from rayalign.errors import UserError
    from rayalign.rewards.sources import rm_kind

    with pytest.raises(FileNotFoundError, match="not found"):
        rm_kind(tmp_path / "missing")
    with pytest.raises(UserError, match="neither rm.json"):
        rm_kind(tmp_path)
    (tmp_path / "rm.json").write_text(json.dumps({"backend": "finetune"}))
    with pytest.raises(UserError, match="'finetune' cannot score"):
        rm_kind(tmp_path)


# --- GRPO / RLOO under Ray Train ------------------------------------------------------------

def _steps(model_dir: Path) -> list[dict]:
    from rayalign.policy.rl import step_metrics

    return step_metrics(model_dir)


@pytest.mark.slow
def test_grpo_with_a_local_rm_logs_reward_kl_length_and_changes_the_policy(ray_local, tiny_lm, tiny_rm, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.policy.rl import RL_META, run_rl

    out = run_rl(PROMPTS, tiny_lm, tmp_path / "rl", _rl_cfg(),
                 RewardSourceConfig(model_dir=str(tiny_rm)))
    rows = _steps(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert np.isfinite(r["reward"]) and r["reward_std"] > 0 and 0 < r["completion_length"] <= 8
    assert rows[0]["kl"] == 0.0  # step 1: the policy is still the reference
    meta = json.loads((out / RL_META).read_text())
    assert meta["algorithm"] == "grpo" and meta["metrics"]["global_step"] == 2
    before = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # Finished: reused, never retrained.
    assert run_rl(PROMPTS, tiny_lm, tmp_path / "rl", _rl_cfg(), RewardSourceConfig(model_dir=str(tiny_rm))) == out


@pytest.mark.slow
def test_rloo_with_lora_runs_and_merges(ray_local, tiny_lm, tiny_rm, tmp_path):
    from rayalign.policy.rl import RL_META, run_rl
    from rayalign.training.config import LoraSettings

    out = run_rl(PROMPTS, tiny_lm, tmp_path / "rloo",
                 _rl_cfg(algorithm="rloo", lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                 RewardSourceConfig(model_dir=str(tiny_rm)))
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / RL_META).read_text())["algorithm"] == "rloo"
    assert len(_steps(out)) == 2


@pytest.mark.slow
def test_rm_endpoint_failing_mid_run_is_a_clear_error_and_the_rerun_resumes(
        ray_local, tiny_lm, stub_rm, tmp_path):
    from rayalign.errors import user_message
    from rayalign.policy.rl import RL_META, run_rl

    reward = RewardSourceConfig(url=stub_rm.url, max_retries=1, backoff_s=0.05)
    cfg = _rl_cfg(max_steps=4)
    stub_rm.fail_after = 2  # one request per step: steps 1-2 scored, step 3 gets 503s
    with pytest.raises(Exception) as e:
        run_rl(PROMPTS, tiny_lm, tmp_path / "rl", cfg, reward)
    msg = user_message(e.value) or str(e.value)
    assert stub_rm.url in msg and "HTTP 503" in msg, msg[-2000:]
    assert not (tmp_path / "rl" / "model").exists()

    stub_rm.fail_after = None  # the endpoint is back
    out = run_rl(PROMPTS, tiny_lm, tmp_path / "rl", cfg, reward)
    m = json.loads((out / RL_META).read_text())["metrics"]
    assert m["resumed_from_step"] == 2 and m["global_step"] == 4
    assert [r["step"] for r in _steps(out)] == [1, 2, 3, 4]  # history kept across the resume


@pytest.mark.slow
def test_killed_rl_worker_resumes_from_its_checkpoint(ray_local, tiny_lm, tiny_rm, tmp_path):
    from rayalign.policy.rl import RL_META, run_rl

    cfg = _rl_cfg(max_steps=3, scaling=TrainScaling(num_workers=1, max_failures=1))
    out = run_rl(PROMPTS, tiny_lm, tmp_path / "rl", cfg, RewardSourceConfig(model_dir=str(tiny_rm)),
                 _fail_at_step=2)
    m = json.loads((out / RL_META).read_text())["metrics"]
    assert m["resumed_from_step"] == 2 and m["global_step"] == 3


@pytest.mark.slow
def test_grpo_against_a_real_rm_serve_endpoint(ray_local, tiny_lm, tiny_rm, tmp_path):
    from rayalign.policy.rl import run_rl
    from rayalign.serve.reward_app import RMServeConfig, start_reward_server, stop_reward_server

    port = free_port()
    serve_cfg = RMServeConfig(model_dir=str(tiny_rm), port=port, app_name="rl-test-rm")
    url = start_reward_server(serve_cfg)
    try:
        out = run_rl(PROMPTS, tiny_lm, tmp_path / "rl", _rl_cfg(), RewardSourceConfig(url=url))
        rows = _steps(out)
        assert len(rows) == 2 and all(np.isfinite(r["reward"]) for r in rows)
    finally:
        stop_reward_server(serve_cfg)


@pytest.mark.slow
def test_rl_cli_as_a_user_runs_it(tiny_lm, tiny_rm, tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    cfg = tmp_path / "rl.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(tiny_lm), "prompts": {"path": str(prompts), "limit": 12, "eval_prompts": 4},
        "reward": {"model_dir": str(tiny_rm)}, "run_dir": str(tmp_path / "run"),
        "train": {"max_steps": 2, "effective_batch_size": 8, "per_device_batch_size": 8,
                  "num_generations": 4, "max_completion_length": 8, "learning_rate": 1e-3,
                  "checkpoint_every_steps": 1}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run([sys.executable, "-m", "rayalign.cli", "rl", "--config", str(cfg)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["heldout_reward_before"] is not None
    run = tmp_path / "run"
    for f in ("report.md", "rl_curves.png", "rl_metrics.jsonl", "heldout_before.json",
              "heldout_after.json", "rl_summary.json"):
        assert (run / f).is_file(), f
    report = (run / "report.md").read_text()
    assert "Held-out prompts" in report and "rl_curves.png" in report
    assert len((run / "rl_metrics.jsonl").read_text().splitlines()) == 2
    # A bad reward dir is one clear line, not a traceback.
    bad = subprocess.run([sys.executable, "-m", "rayalign.cli", "rl", "--config", str(cfg),
                          "--run-dir", str(tmp_path / "run2"), "--set", f"reward.model_dir={tmp_path}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "is not a reward model directory" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_rm_serve_scores_an_embedding_head_rm_like_the_local_scorer(ray_local, tmp_path):
    """`rayalign rm serve` loads the RLTHF embedding-head RM too (rewards.sources)."""
    from rayalign.rewards.sources import load_reward_model
    from rayalign.serve.reward_app import RMServeConfig, start_reward_server, stop_reward_server

    rm_dir = tmp_path / "rm"
    rm_dir.mkdir()
    np.save(rm_dir / "head.npy", np.random.default_rng(1).normal(size=768))
    (rm_dir / "rm.json").write_text(json.dumps({"backend": "embedding_head", "encoder": "minilm", "dim": 768}))
    port = free_port()
    cfg = RMServeConfig(model_dir=str(rm_dir), port=port, app_name="rl-test-ehead")
    url = start_reward_server(cfg)
    try:
        responses = ["Sure, happy to help.", "Go away.", "Here is how to stay safe."]
        got = HttpRewardClient(url).score(PROMPTS[:3], responses)
        want = load_reward_model(rm_dir).score(PROMPTS[:3], responses)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    finally:
        stop_reward_server(cfg)
