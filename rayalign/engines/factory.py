"""``build_engine``: an ``EngineConfig`` -> the backend it names.

Kept out of ``engines/config.py`` so the config module imports no backend and no backend
imports the factory: each backend module depends on the config alone.
"""

from __future__ import annotations

from rayalign.engines.base import Engine
from rayalign.engines.config import EngineConfig


def build_engine(cfg: EngineConfig) -> Engine:
    """Instantiate the backend named by ``cfg.kind`` (imports are lazy: torch/vllm are heavy)."""
    if cfg.kind == "openai":
        from rayalign.engines.openai_compat import OpenAICompatEngine

        return OpenAICompatEngine(cfg)
    if cfg.kind == "hf_local":
        from rayalign.engines.hf_local import HFLocalEngine

        return HFLocalEngine(cfg)
    if cfg.kind == "vllm":
        from rayalign.engines.vllm_engine import VLLMEngine

        return VLLMEngine(cfg)
    raise ValueError(f"unknown engine kind {cfg.kind!r}")
