"""The reward model on Ray Serve: same numbers as offline scoring, batching, 4xx on bad input."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from rayalign.models.tiny import build_tiny_reward_model
from rayalign.serve.reward_app import RMServeConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rm_server(ray_local, tmp_path_factory):
    from ray import serve

    from rayalign.serve.reward_app import start_reward_server

    rm_dir = build_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm")
    cfg = RMServeConfig(model_dir=str(rm_dir), port=_free_port(), max_items_per_request=8,
                        max_text_chars=200, max_batch_size=16, max_length=64)
    url = start_reward_server(cfg)
    yield url, rm_dir
    serve.shutdown()


def test_config_defaults_are_loopback():
    cfg = RMServeConfig(model_dir="x")
    assert cfg.host == "127.0.0.1" and cfg.autoscaling is None
    with pytest.raises(Exception):
        RMServeConfig(model_dir="x", replicas=2)  # unknown field


def test_scores_match_offline_scoring_and_pairs_are_consistent(rm_server):
    from rayalign.rewards.seq_cls_scorer import RewardScorer

    url, rm_dir = rm_server
    items = [{"prompt": "Human: hi. Assistant:", "response": f" hello number {i}"} for i in range(5)]
    r = httpx.post(f"{url}/score", json={"items": items}, timeout=60)
    assert r.status_code == 200, r.text
    served = np.array(r.json()["rewards"])
    offline = RewardScorer(rm_dir, max_length=64).score(
        [i["prompt"] for i in items], [i["response"] for i in items])
    assert served.shape == (5,) and np.allclose(served, offline, atol=1e-4)
    assert len(set(np.round(served, 6))) > 1  # different texts, different rewards

    pair = {"prompt": items[0]["prompt"], "response_a": items[0]["response"],
            "response_b": items[1]["response"]}
    res = httpx.post(f"{url}/score_pairs", json={"pairs": [pair]}, timeout=60).json()["results"][0]
    assert np.isclose(res["reward_a"], served[0], atol=1e-4)
    assert np.isclose(res["margin"], served[0] - served[1], atol=1e-4)
    assert res["preferred"] == ("A" if served[0] > served[1] else "B")
    assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"


def test_concurrent_requests_are_all_answered(rm_server):
    url, _ = rm_server

    def call(i):
        body = {"items": [{"prompt": "Q:", "response": f" answer {i} {j}"} for j in range(3)]}
        return httpx.post(f"{url}/score", json=body, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(16)))
    assert all(r.status_code == 200 and len(r.json()["rewards"]) == 3 for r in responses)


@pytest.mark.parametrize("body,status,fragment", [
    ({"items": []}, 422, "at least 1"),
    ({"items": [{"prompt": "p", "response": 3}]}, 422, "string"),
    ({"items": [{"prompt": "p"}]}, 422, "response"),
    ({"itemz": [{"prompt": "p", "response": "r"}]}, 422, "items"),
    ({"items": [{"prompt": "p", "response": "r"}] * 9}, 413, "too many items"),
    ({"items": [{"prompt": "p", "response": "x" * 201}]}, 413, "items[0].response: text too long"),
    ({"items": [{"prompt": "p", "response": "   "}]}, 422, "response is empty"),
])
def test_bad_requests_get_4xx_with_a_message(rm_server, body, status, fragment):
    url, _ = rm_server
    r = httpx.post(f"{url}/score", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_bad_pair_request(rm_server):
    url, _ = rm_server
    r = httpx.post(f"{url}/score_pairs", json={"pairs": [{"prompt": "p", "response_a": "a"}]},
                   timeout=30)
    assert r.status_code == 422 and "response_b" in r.text
    r = httpx.post(f"{url}/score_pairs", content=b"not json",
                   headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("raw", [b'{"items": [{"prompt": NaN, "response": "r"}]}',
                                 b'{"items": [{"prompt": "p", "response": Infinity}]}',
                                 b'{"items": -Infinity}'])
def test_nan_and_infinity_literals_are_422_not_500(rm_server, raw):
    url, _ = rm_server
    r = httpx.post(f"{url}/score", content=raw, headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "body"


def test_no_public_openapi_or_docs(rm_server):
    url, _ = rm_server
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 404, path
