"""An OpenAI-compatible ``/v1/chat/completions`` endpoint over a local HF model, on Ray Serve.

WHY: the real HTTP judge path (``OpenAICompatEngine`` -> server -> model) must run offline
end to end, on a laptop, with the same client code that talks to OpenAI or a vLLM fleet.
Serve gives replicas, autoscaling and request batching (``@serve.batch`` groups concurrent
requests into one batched ``generate``), so we write only the OpenAI request/response shape.

Binds 127.0.0.1 by default. No API key is checked: it is a local development server; put
it behind a gateway before exposing it.
"""


import asyncio
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from rayalign.engines.base import GenerationRequest, GenerationResult, SamplingParams
from rayalign.engines.config import EngineConfig

log = logging.getLogger(__name__)
APP_NAME = "rayalign-llm"

app = FastAPI(title="rayalign local LLM (OpenAI-compatible)", docs_url=None, redoc_url=None)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


class ChatCompletionRequest(BaseModel):
    """The subset of the OpenAI chat request that a local HF model can honour."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64)
@serve.ingress(app)
class LLMServer:
    def __init__(self, engine_cfg_json: str, max_batch_size: int = 8, batch_wait_s: float = 0.02):
        from rayalign.engines.hf_local import HFLocalEngine

        self.cfg = EngineConfig.model_validate_json(engine_cfg_json)
        self.engine = HFLocalEngine(self.cfg)
        self.served_name = self.cfg.model
        self._generate_batch.set_max_batch_size(max_batch_size)
        self._generate_batch.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _generate_batch(self, reqs: list[GenerationRequest]) -> list[GenerationResult]:
        # Off the replica's event loop: generate() is blocking CPU/GPU work.
        return await asyncio.get_running_loop().run_in_executor(None, self.engine.generate, reqs)

    @app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.served_name, "object": "model",
                                            "owned_by": "rayalign"}]}

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatCompletionRequest) -> dict[str, Any]:
        if body.stream:
            raise HTTPException(status_code=400, detail="stream=true is not supported by this server")
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        params = SamplingParams(max_tokens=body.max_completion_tokens or body.max_tokens or 256,
                                temperature=body.temperature, top_p=body.top_p, n=body.n,
                                seed=body.seed, stop=stop)
        req = GenerationRequest(id=uuid.uuid4().hex, params=params,
                                messages=[{"role": m.role, "content": m.content} for m in body.messages])
        res: GenerationResult = await self._generate_batch(req)
        if res.error:
            raise HTTPException(status_code=500, detail=res.error)
        return {
            "id": f"chatcmpl-{req.id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": [{"index": i, "finish_reason": (res.finish_reasons[i] if i < len(res.finish_reasons) else "stop"),
                         "message": {"role": "assistant", "content": t}} for i, t in enumerate(res.texts)],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


def start_llm_server(model: str, host: str = "127.0.0.1", port: int = 8400, route_prefix: str = "/llm",
                     device: str = "cpu", batch_size: int = 8, num_replicas: int = 1,
                     num_cpus: float = 1, num_gpus: float = 0) -> str:
    """Deploy the endpoint on the current Ray cluster; returns its OpenAI base URL (``.../v1``).

    Serve's HTTP proxy is shared by all apps of a cluster: if Serve already runs, this app
    joins it (the ``route_prefix`` keeps apps apart) when it listens on the requested host,
    and refuses with ``ProxyHostMismatch`` when it listens on another one.
    """
    from rayalign.ray_utils import init_ray
    from rayalign.serve.common import connect_url, ensure_proxy

    init_ray()
    bound = ensure_proxy(host, port)
    cfg = EngineConfig(kind="hf_local", model=model, device=device, batch_size=batch_size)
    dep = LLMServer.options(num_replicas=num_replicas,
                            ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus})
    serve.run(dep.bind(cfg.model_dump_json(), max_batch_size=batch_size), name=APP_NAME,
              route_prefix=route_prefix, blocking=False)
    prefix = "" if route_prefix == "/" else route_prefix.rstrip("/")
    return f"{connect_url(*bound)}{prefix}/v1"


def stop_llm_server() -> None:
    serve.delete(APP_NAME)
