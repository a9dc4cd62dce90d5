"""OpenAICompatEngine against the local fake server: retries, timeouts, spreading, no leaks."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

from rayalign.engines.base import Engine, GenerationRequest  # noqa: E402
from rayalign.engines.config import EngineConfig  # noqa: E402
from rayalign.engines.openai_compat import OpenAICompatEngine  # noqa: E402


def _reqs(n: int, tag: str = "q") -> list[GenerationRequest]:
    return [GenerationRequest(id=f"{tag}{i}", messages=[{"role": "user", "content": f"{tag} {i}"}])
            for i in range(n)]


def _engine(urls, **kw) -> OpenAICompatEngine:
    kw.setdefault("timeout_s", 0.5)
    kw.setdefault("max_retries", 3)
    return OpenAICompatEngine(EngineConfig(model="fake", base_urls=urls, **kw))


@pytest.fixture()
def server():
    with FakeOpenAIServer(hang_s=2.0) as srv:
        yield srv


def test_faults_are_retried_and_nothing_is_lost(server):
    server.plan = ["429", "500", "hang", "429", "500"]
    eng = _engine([server.base_url])
    assert isinstance(eng, Engine)
    t0 = time.monotonic()
    res = eng.generate(_reqs(12))
    eng.close()
    assert [r.id for r in res] == [f"q{i}" for i in range(12)]
    assert all(r.error is None and r.texts for r in res), [r.error for r in res if r.error]
    # 5 faulted attempts + 12 successes reached the server; retried ones report attempts > 1
    assert len(server.requests) == 17
    assert sum(r.attempts - 1 for r in res) == 5
    assert time.monotonic() - t0 < 10


def test_retry_after_is_honoured(server):
    server.retry_after = "0.6"
    server.plan = ["429"]
    eng = _engine([server.base_url])
    (res,) = eng.generate(_reqs(1))
    eng.close()
    assert res.error is None and res.attempts == 2
    gap = server.requests[1]["time"] - server.requests[0]["time"]
    assert gap >= 0.55, gap  # the client's own backoff would start at <= 0.5 s


def test_persistent_failure_becomes_an_error_row_not_an_exception(server):
    server.faults_for = {"bad": ["500"] * 10}
    eng = _engine([server.base_url], max_retries=2)
    res = eng.generate(_reqs(3, "ok") + _reqs(1, "bad"))
    eng.close()
    assert [r.error is None for r in res] == [True, True, True, False]
    assert "HTTP 500" in res[3].error and res[3].attempts == 3
    assert server.n_requests("bad") == 3


def test_spreads_over_endpoints_and_fails_over():
    with FakeOpenAIServer(latency=0.05) as s1, FakeOpenAIServer(latency=0.05) as s2:
        eng = _engine([s1.base_url, s2.base_url], concurrency_per_endpoint=4, max_retries=0)
        res = eng.generate(_reqs(40))
        assert all(r.error is None for r in res)
        assert 12 <= len(s1.requests) <= 28 and len(s1.requests) + len(s2.requests) == 40
        # endpoint 1 fails (and no client retries are allowed): requests fail over to 2
        s1.plan = ["500"] * 4
        res = eng.generate(_reqs(4, "f"))
        eng.close()
    assert all(r.error is None for r in res)
    assert s1.counts["500"] >= 1 and s2.n_requests("f ") == 4


def test_bounded_concurrency_per_endpoint():
    with FakeOpenAIServer(latency=0.2) as srv:
        eng = _engine([srv.base_url], concurrency_per_endpoint=4, timeout_s=5)
        t0 = time.monotonic()
        res = eng.generate(_reqs(16))
        wall = time.monotonic() - t0
        eng.close()
    assert all(r.error is None for r in res)
    assert wall >= 0.75  # 16 requests, 4 at a time, 0.2 s each -> >= 0.8 s
    starts = sorted(r["time"] for r in srv.requests)
    # never more than 4 requests arrived within one latency window
    assert max(sum(1 for t in starts if s <= t < s + 0.15) for s in starts) <= 4


def test_sync_generate_inside_running_loop_and_async_form(server):
    eng = _engine([server.base_url])

    async def inside():
        sync = eng.generate(_reqs(2))  # a sync call from inside a running loop still works
        asyn = await eng.agenerate(_reqs(2, "x"))
        return sync, asyn

    sync, asyn = asyncio.run(inside())
    eng.close()
    assert all(r.error is None for r in sync + asyn)


def test_api_key_from_env_never_logged(server, monkeypatch, caplog):
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("RAYALIGN_TEST_KEY", secret)
    server.faults_for = {"bad": ["500"] * 10}
    caplog.set_level(logging.DEBUG)
    eng = _engine([server.base_url], api_key_env="RAYALIGN_TEST_KEY", max_retries=1)
    res = eng.generate(_reqs(2) + _reqs(1, "bad"))
    text = repr(eng) + str(eng.cfg.model_dump()) + "".join(r.model_dump_json() for r in res)
    eng.close()
    assert server.requests[0]["auth"] == f"Bearer {secret}"  # the key was used...
    assert secret not in caplog.text and secret not in text  # ...and shown nowhere


def test_missing_key_for_remote_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        OpenAICompatEngine(EngineConfig(model="m", base_urls=["https://example.invalid/v1"],
                                        api_key_env="NO_SUCH_KEY_VAR"))


def test_closed_port_is_a_connection_error_not_a_timeout():
    """Issue 14 item 11: the aiohttp transport calls a refused connection a timeout."""
    import socket

    from rayalign.engines.base import GenerationRequest
    from rayalign.engines.config import EngineConfig
    from rayalign.engines.openai_compat import OpenAICompatEngine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for client in ("aiohttp", "httpx"):
        eng = OpenAICompatEngine(EngineConfig(model="m", base_urls=[f"http://127.0.0.1:{port}/v1"],
                                              max_retries=0, timeout_s=5, http_client=client))
        err = eng.generate([GenerationRequest(id="1", messages=[{"role": "user", "content": "x"}])])[0].error
        eng.close()
        assert "connection error (ConnectionRefusedError)" in err and "timeout" not in err, (client, err)
