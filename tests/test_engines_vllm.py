"""The vLLM engine is an optional GPU extra: without vllm it refuses clearly; with it, it runs."""

from __future__ import annotations

import pytest

from rayalign.engines.config import EngineConfig
from rayalign.engines.factory import build_engine
from rayalign.engines.vllm_engine import vllm_available


@pytest.mark.skipif(vllm_available(), reason="vllm is installed here")
def test_clear_error_without_vllm():
    with pytest.raises(ImportError, match=r"rayalign\[gpu\]"):
        build_engine(EngineConfig(kind="vllm", model="tiny-llama"))


@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (GPU-only optional extra)")
def test_vllm_generates_on_gpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    from rayalign.engines.base import GenerationRequest, SamplingParams
    from rayalign.models.tiny import build_tiny_causal_lm

    d = str(build_tiny_causal_lm(tmp_path / "lm"))
    eng = build_engine(EngineConfig(kind="vllm", model=d, engine_kwargs={"gpu_memory_utilization": 0.2}))
    res = eng.generate([GenerationRequest(id="0", messages=[{"role": "user", "content": "hi"}],
                                          params=SamplingParams(max_tokens=4))])
    assert res[0].error is None and res[0].texts
