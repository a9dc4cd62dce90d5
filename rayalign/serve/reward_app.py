"""The reward model as a Ray Serve deployment: JSON in, rewards out.

Endpoints (under the route prefix, default ``/rm``):

* ``POST /score``  ``{"items": [{"prompt": str, "response": str}, ...]}``
  -> ``{"rewards": [float, ...]}``
* ``POST /score_pairs`` ``{"pairs": [{"prompt", "response_a", "response_b"}, ...]}``
  -> ``{"results": [{"reward_a", "reward_b", "margin", "preferred"}, ...]}``
* ``GET /health`` -> model directory and limits.

Every (prompt, response) of every concurrent request goes through one ``@serve.batch``
queue, so the model sees full batches under load whatever the request sizes. Requests are
validated by pydantic before touching the model: wrong types, empty lists, too many items
or too-long texts get a 4xx with a message naming the field, never a 500. Binds
127.0.0.1 unless told otherwise. Replicas and autoscaling come from :class:`RMServeConfig`.
"""

# No `from __future__ import annotations`: FastAPI must see real classes in the
# endpoint signatures inside the Serve deployment, not strings.

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from rayalign.config import StrictModel

log = logging.getLogger(__name__)


class Autoscaling(StrictModel):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: float = Field(default=8.0, gt=0)


class RMServeConfig(StrictModel):
    """How the RM is served (``rayalign rm serve --config`` or flags)."""

    model_dir: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    route_prefix: str = "/rm"
    app_name: str = "reward-model"
    num_replicas: int = Field(default=1, ge=1)
    autoscaling: Autoscaling | None = None  # when set, replaces num_replicas
    num_cpus_per_replica: float = Field(default=1.0, ge=0)
    num_gpus_per_replica: float = Field(default=0.0, ge=0)
    max_batch_size: int = Field(default=32, ge=1)
    # Requests one replica accepts at once; must exceed max_batch_size / items-per-request
    # or batches never fill (Ray Serve's default is 5).
    max_ongoing_requests: int = Field(default=64, ge=1)
    # 0 = score what is queued at once: while one batch runs, new requests queue up and form
    # the next batch anyway. Measured (benchmarks/serve_rm.py --batch-wait, README "Hot-path
    # round"): 0 beat 0.01 s at 1 client (p50 26 vs 55 ms) and at 16 (50 vs 31 req/s).
    batch_wait_timeout_s: float = Field(default=0.0, ge=0)
    max_items_per_request: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=20_000, ge=1)
    max_length: int | None = Field(default=None, ge=8, description="tokens; default: the RM's")


# --- request / response schemas -----------------------------------------------------------

class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreItem(_Req):
    prompt: StrictStr
    response: StrictStr


class ScoreRequest(_Req):
    items: list[ScoreItem] = Field(min_length=1)


class PairItem(_Req):
    prompt: StrictStr
    response_a: StrictStr
    response_b: StrictStr


class PairRequest(_Req):
    pairs: list[PairItem] = Field(min_length=1)


def check_limits(texts: list[tuple[str, str, str]], n_items: int, cfg: dict[str, Any]) -> None:
    """Size limits from the config (not static, so not in the pydantic schema).

    ``texts`` holds (field path, text, kind) with kind "prompt" or "response"; raises
    ``HTTPException`` 413 (too many / too long) or 422 (empty response) naming the field.
    """
    from fastapi import HTTPException

    if n_items > cfg["max_items_per_request"]:
        raise HTTPException(status_code=413, detail=(
            f"too many items: {n_items} > max_items_per_request={cfg['max_items_per_request']}"))
    for path, text, kind in texts:
        if len(text) > cfg["max_text_chars"]:
            raise HTTPException(status_code=413, detail=(
                f"{path}: text too long ({len(text)} chars > max_text_chars={cfg['max_text_chars']})"))
        if kind == "response" and not text.strip():
            raise HTTPException(status_code=422, detail=f"{path}: response is empty")


def build_fastapi_app():
    """The FastAPI app: no docs/OpenAPI routes, and validation errors that are always JSON.

    FastAPI echoes each rejected value in a 422 body; a ``NaN``/``Infinity`` literal (which
    Python's JSON parser accepts) cannot be encoded back, so the default handler turned a
    client error into a 500. Our handler echoes no values, only where and why.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title="rayalign reward model", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    return app


def build_deployment(cfg: RMServeConfig):
    """The bound Serve application for ``cfg`` (ready for ``serve.run``)."""
    from ray import serve

    app = build_fastapi_app()
    limits = cfg.model_dump()

    @serve.deployment(
        name="RewardModel",
        ray_actor_options={"num_cpus": cfg.num_cpus_per_replica,
                           "num_gpus": cfg.num_gpus_per_replica},
        max_ongoing_requests=cfg.max_ongoing_requests,
        **({"autoscaling_config": cfg.autoscaling.model_dump()} if cfg.autoscaling
           else {"num_replicas": cfg.num_replicas}),
    )
    @serve.ingress(app)
    class RewardModelServer:
        def __init__(self, model_dir: str, max_length: int | None, batch: dict[str, Any]):
            from rayalign.rewards.sources import load_reward_model

            # Either kind of RM dir: sequence classifier or embedding head (rewards/sources.py).
            self.scorer = load_reward_model(model_dir, max_length=max_length)
            self.model_dir = model_dir
            self._score_batch.set_max_batch_size(batch["max_batch_size"])
            self._score_batch.set_batch_wait_timeout_s(batch["batch_wait_timeout_s"])

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
        async def _score_batch(self, items: list[tuple[str, str]]) -> list[float]:
            # One forward pass for everything queued across requests.
            rewards = await asyncio.to_thread(
                self.scorer.score, [p for p, _ in items], [r for _, r in items], len(items))
            return [float(x) for x in rewards]

        async def _score_many(self, pairs: list[tuple[str, str]]) -> list[float]:
            return list(await asyncio.gather(*(self._score_batch(x) for x in pairs)))

        @app.get("/health")
        async def health(self) -> dict[str, Any]:
            return {"status": "ok", "model_dir": self.model_dir,
                    "max_items_per_request": limits["max_items_per_request"],
                    "max_text_chars": limits["max_text_chars"]}

        @app.post("/score")
        async def score(self, req: ScoreRequest) -> dict[str, Any]:
            check_limits(
                [(f"items[{i}].{f}", getattr(it, f), f) for i, it in enumerate(req.items)
                 for f in ("prompt", "response")], len(req.items), limits)
            rewards = await self._score_many([(it.prompt, it.response) for it in req.items])
            return {"rewards": rewards}

        @app.post("/score_pairs")
        async def score_pairs(self, req: PairRequest) -> dict[str, Any]:
            check_limits(
                [(f"pairs[{i}].{f}", getattr(it, f), "prompt" if f == "prompt" else "response")
                 for i, it in enumerate(req.pairs) for f in ("prompt", "response_a", "response_b")],
                len(req.pairs), limits)
            flat = [(it.prompt, r) for it in req.pairs for r in (it.response_a, it.response_b)]
            rewards = await self._score_many(flat)
            results = []
            for i in range(len(req.pairs)):
                a, b = rewards[2 * i], rewards[2 * i + 1]
                results.append({"reward_a": a, "reward_b": b, "margin": a - b,
                                "preferred": "A" if a > b else ("B" if b > a else "tie")})
            return {"results": results}

    return RewardModelServer.bind(
        str(Path(cfg.model_dir).resolve()), cfg.max_length,
        {"max_batch_size": cfg.max_batch_size, "batch_wait_timeout_s": cfg.batch_wait_timeout_s})


def start_reward_server(cfg: RMServeConfig, ray_cfg=None) -> str:
    """Start (or replace) the RM application; return its base URL. Does not block.

    Joins a running Serve proxy only when it listens on ``cfg.host`` (the URL then carries
    the proxy's real port); another host raises ``ProxyHostMismatch`` (``rayalign.serve.common``).
    """
    from ray import serve

    from rayalign.ray_utils import init_ray
    from rayalign.serve.common import connect_url, ensure_proxy

    from rayalign.rewards.sources import rm_kind

    rm_kind(cfg.model_dir)  # a clear error here, not in a replica's constructor
    init_ray(ray_cfg)
    bound = ensure_proxy(cfg.host, cfg.port)
    serve.run(build_deployment(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix)
    return f"{connect_url(*bound)}{cfg.route_prefix.rstrip('/')}"


def stop_reward_server(cfg: RMServeConfig) -> None:
    from ray import serve

    serve.delete(cfg.app_name)


def app_builder(args: dict[str, Any]):
    """Ray Serve application builder (``import_path: rayalign.serve.reward_app:app_builder``):
    ``args`` are :class:`RMServeConfig` fields, validated like any config."""
    from rayalign.config import validate_config

    cfg = validate_config(RMServeConfig, dict(args), "serve application args")
    return build_deployment(cfg)
