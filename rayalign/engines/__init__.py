"""Text generation backends behind one interface (``rayalign.engines.base.Engine``).

* ``config.EngineConfig`` / ``config.build_engine(cfg)`` — pick a backend by ``kind``.
* ``openai_compat.OpenAICompatEngine`` — any OpenAI-compatible server(s), async, bounded.
* ``hf_local.HFLocalEngine`` — transformers ``generate`` on CPU/GPU.
* ``vllm_engine.VLLMEngine`` / ``build_vllm_processor`` — optional GPU extra.

Nothing heavy is imported here: torch / vllm load only with the backend that needs them.
"""
