"""End to end: OpenAICompatEngine -> Ray Serve OpenAI-compatible app -> local HF model."""

from __future__ import annotations

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_openai_engine_talks_to_serve_app(ray_local, tmp_path):
    from rayalign.engines.base import GenerationRequest, SamplingParams
    from rayalign.engines.config import EngineConfig
    from rayalign.engines.hf_local import HFLocalEngine
    from rayalign.engines.openai_compat import OpenAICompatEngine
    from rayalign.models.tiny import build_tiny_causal_lm
    from rayalign.serve.llm_app import start_llm_server, stop_llm_server

    model = str(build_tiny_causal_lm(tmp_path / "lm"))
    url = start_llm_server(model, port=_free_port(), num_cpus=0.5, batch_size=4)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/llm/v1")
    try:
        eng = OpenAICompatEngine(EngineConfig(model="tiny", base_urls=[url], timeout_s=60,
                                              concurrency_per_endpoint=4))
        params = SamplingParams(max_tokens=6, temperature=0.0)
        reqs = [GenerationRequest(id=str(i), messages=[{"role": "user", "content": f"hello {i}"}],
                                  params=params) for i in range(6)]
        res = eng.generate(reqs)
        eng.close()
        assert all(r.error is None and r.texts[0] for r in res), [r.error for r in res]
        # the server's greedy answers equal the local engine's answers for the same model
        local = HFLocalEngine(EngineConfig(kind="hf_local", model=model)).generate(reqs)
        assert [r.texts for r in res] == [r.texts for r in local]
    finally:
        stop_llm_server()
