"""vLLM backends (optional extra ``rayalign[gpu]``; GPU nodes only).

Two ways to use vLLM, and when to pick which:

* ``VLLMEngine`` — an in-process ``vllm.LLM`` behind our ``Engine`` interface. This is what
  the labelling pipeline uses when ``kind: vllm``: each Ray Data actor (one per GPU,
  ``num_gpus: 1`` in the judge config) holds one ``LLM`` and our judges, parsers, retries on
  parse failures and the judgment cache work unchanged. ``vllm.LLM.chat`` applies the
  model's chat template and batches internally (continuous batching), so one call per
  Ray Data batch is enough.
* ``build_vllm_processor`` — Ray's own ``ray.data.llm`` processor (``vLLMEngineProcessorConfig``
  + ``build_processor``; alpha in Ray 2.60 and renamed from ``build_llm_processor``). It
  owns the whole stage (chat template, tokenisation, engine actors, detokenisation) and
  overlaps batches inside each engine actor, so for *plain generation at scale* (sampling
  candidates for the self-reward loop over a large prompt set) it is the better tool and we
  do not rebuild it. We do not use it for judging because a judge needs our prompt
  rendering, parsing with retries and caching per record between the model calls.

Neither is exercised by the CPU test suite (vLLM is not installed there); tests skip.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from rayalign.engines.base import GenerationRequest, GenerationResult, SamplingParams
from rayalign.engines.config import EngineConfig

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _require_vllm() -> None:
    if not vllm_available():
        raise ImportError("the vllm engine needs the optional extra: pip install 'rayalign[gpu]' "
                          "(on a GPU node, after installing the matching CUDA torch)")


def _model_path(spec: str) -> str:
    try:
        from rayalign.models.registry import resolve_model
    except ImportError:
        return spec
    return resolve_model(spec).path


class VLLMEngine:
    def __init__(self, cfg: EngineConfig):
        _require_vllm()
        import vllm

        self.cfg = cfg
        kwargs: dict[str, Any] = {"model": _model_path(cfg.model), "trust_remote_code": False}
        if cfg.dtype != "auto":
            kwargs["dtype"] = cfg.dtype
        kwargs["max_model_len"] = cfg.engine_kwargs.get("max_model_len", cfg.max_input_tokens + cfg.params.max_tokens)
        kwargs.update(cfg.engine_kwargs)
        self.llm = vllm.LLM(**kwargs)
        self._vllm = vllm

    @property
    def spec(self) -> str:
        return self.cfg.spec()

    def _sampling(self, p: SamplingParams) -> Any:
        return self._vllm.SamplingParams(n=p.n, temperature=p.temperature, top_p=p.top_p,
                                         max_tokens=p.max_tokens, seed=p.seed, stop=p.stop)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        prefill = [r.messages[-1]["role"] == "assistant" for r in requests]
        if any(prefill) and not all(prefill):  # vLLM takes one flag per call: split the batch
            a = [r for r, p in zip(requests, prefill) if p]
            b = [r for r, p in zip(requests, prefill) if not p]
            by_id = {x.id: x for x in self.generate(a) + self.generate(b)}
            return [by_id[r.id] for r in requests]
        try:
            outs = self.llm.chat([r.messages for r in requests],
                                 sampling_params=[self._sampling(r.params) for r in requests],
                                 use_tqdm=False, add_generation_prompt=not prefill[0],
                                 continue_final_message=prefill[0])
        except Exception as err:  # one bad batch: rows with errors, not a crashed job
            log.warning("vllm batch of %d failed: %r", len(requests), err)
            return [GenerationResult(id=r.id, error=f"vllm failed: {err!r}") for r in requests]
        return [GenerationResult(id=r.id, texts=[c.text for c in o.outputs],
                                 finish_reasons=[str(c.finish_reason or "") for c in o.outputs])
                for r, o in zip(requests, outs)]


def build_vllm_processor(cfg: EngineConfig, concurrency: int = 1, batch_size: int = 64,
                         system_prompt: str | None = None) -> Any:
    """A ``ray.data.llm`` processor for plain generation: ``processor(ds)`` where ``ds`` has a
    ``prompt`` column; the output has ``prompt`` and ``generated_text`` columns."""
    _require_vllm()
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    p = cfg.params
    config = vLLMEngineProcessorConfig(
        model_source=_model_path(cfg.model), engine_kwargs=dict(cfg.engine_kwargs),
        concurrency=concurrency, batch_size=batch_size)

    def pre(row: dict) -> dict:
        msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        msgs.append({"role": "user", "content": row["prompt"]})
        return dict(messages=msgs, sampling_params=dict(
            n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, seed=p.seed))

    def post(row: dict) -> dict:
        return dict(prompt=row["prompt"], generated_text=row["generated_text"])

    return build_processor(config, preprocess=pre, postprocess=post)
