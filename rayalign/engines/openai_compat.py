"""Any OpenAI-compatible chat server (OpenAI, vLLM, TGI, llama.cpp, our Ray Serve app).

What this module adds on top of the official ``openai`` client, and what it leaves to it:

* Retries: left to the client. ``AsyncOpenAI(max_retries=n)`` already retries 408/409/429/
  5xx, timeouts and connection errors with exponential backoff (0.5 s * 2^k, capped at 8 s,
  minus up to 25 % jitter) and sleeps for the server's ``Retry-After`` / ``retry-after-ms``
  when that is at most 120 s (openai 3.x ``_calculate_retry_timeout``). We only configure it.
* Bounded concurrency per endpoint (an ``asyncio.Semaphore`` each) and spreading over
  several base URLs (least-loaded, round-robin on ties), plus one fail-over attempt on each
  other endpoint when the client has given up on the first.
* Failure as data: a request that still fails is a ``GenerationResult`` with ``error`` set.
* A sync ``generate()`` that works anywhere, including inside Ray actors and inside code
  that already runs an event loop: the engine owns a private event loop in a daemon thread,
  so its HTTP connections are reused across calls.
* The API key is read from the env var named in the config and handed to the client only;
  it is never logged, printed, put in an error message or written to disk.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import urlparse

import httpx2
import openai

from rayalign.engines.base import GenerationRequest, GenerationResult
from rayalign.engines.config import EngineConfig

log = logging.getLogger(__name__)

#: Key used for servers on this machine that accept any key (vLLM, our Serve app, tests).
LOCAL_DUMMY_KEY = "EMPTY"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

# Counts HTTP attempts of the request whose task is running (the httpx request hook sees the
# same context as the task that awaits the client call).
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "rayalign_openai_attempts", default=None)


def _is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in _LOCAL_HOSTS


def read_api_key(cfg: EngineConfig) -> str:
    """The key from ``cfg.api_key_env``; a dummy for local servers; a clear error otherwise."""
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if all(_is_local(u) for u in cfg.base_urls):
        return LOCAL_DUMMY_KEY
    raise ValueError(
        f"environment variable {cfg.api_key_env} is not set; it must hold the API key for "
        f"{', '.join(cfg.base_urls)} (set api_key_env in the engine config to use another name)")


class _LoopThread:
    """A private asyncio loop in a daemon thread: sync callers submit coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rayalign-openai-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAICompatEngine.generate() called from its own event loop; "
                               "use `await engine.agenerate(...)` there")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


class _Endpoint:
    def __init__(self, url: str, client: openai.AsyncOpenAI, limit: int):
        self.url = url
        self.client = client
        self.sem = asyncio.Semaphore(limit)
        self.assigned = 0  # waiting + in flight: what "least loaded" compares


async def _count_attempt(_request: Any) -> None:
    box = _ATTEMPTS.get()
    if box is not None:
        box[0] += 1


def _refused(err: BaseException) -> BaseException | None:
    """The ``ConnectionError`` (refused, reset...) under ``err``, if any.

    The aiohttp transport reports a refused connection as ``ConnectTimeout`` and the client
    then as ``APITimeoutError``: a closed port must read "connection error", not "timeout".
    """
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _short(err: BaseException) -> str:
    """A one-line error description without response bodies that could be long."""
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code} ({type(err).__name__})"
    refused = _refused(err)
    if refused is not None:
        return f"connection error ({type(refused).__name__})"
    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return f"connection error ({err.__cause__.__class__.__name__ if err.__cause__ else 'unknown'})"
    return f"{type(err).__name__}: {str(err)[:200]}"


def _worth_failover(err: BaseException) -> bool:
    """Another endpoint may succeed where this one was overloaded, down or slow."""
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


class OpenAICompatEngine:
    """``Engine`` over one or more OpenAI-compatible ``/v1/chat/completions`` endpoints."""

    def __init__(self, cfg: EngineConfig):
        if cfg.kind != "openai":
            raise ValueError(f"OpenAICompatEngine needs kind 'openai', got {cfg.kind!r}")
        self.cfg = cfg
        self._key = read_api_key(cfg)  # fail early, in the constructor, on a missing key
        self._loop: _LoopThread | None = None
        self._endpoints: list[_Endpoint] = []
        self._rr = itertools.count()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatEngine(model={self.cfg.model!r}, endpoints={self.cfg.base_urls!r})"

    @property
    def spec(self) -> str:
        return self.cfg.spec()

    # -- lifecycle --------------------------------------------------------------------
    def _make_client(self, url: str) -> openai.AsyncOpenAI:
        timeout = httpx2.Timeout(self.cfg.timeout_s, connect=min(10.0, self.cfg.timeout_s))
        limits = httpx2.Limits(max_connections=self.cfg.concurrency_per_endpoint + 8,
                               max_keepalive_connections=self.cfg.concurrency_per_endpoint + 8)
        kwargs = dict(timeout=timeout, limits=limits, event_hooks={"request": [_count_attempt]})
        http: Any
        if self.cfg.http_client == "aiohttp":
            try:
                http = openai.DefaultAioHttpClient(**kwargs)
            except RuntimeError:  # aiohttp extra missing: the default transport works too
                http = openai.DefaultAsyncHttpxClient(**kwargs)
        else:
            http = openai.DefaultAsyncHttpxClient(**kwargs)
        return openai.AsyncOpenAI(base_url=url, api_key=self._key, timeout=timeout,
                                  max_retries=self.cfg.max_retries, http_client=http)

    def _ensure_started(self) -> _LoopThread:
        with self._lock:
            if self._loop is None:
                loop = _LoopThread()

                async def _setup() -> list[_Endpoint]:
                    return [_Endpoint(u, self._make_client(u), self.cfg.concurrency_per_endpoint)
                            for u in self.cfg.base_urls]

                self._endpoints = asyncio.run_coroutine_threadsafe(_setup(), loop.loop).result()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Close connections and stop the private loop (also done at garbage collection)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def _close() -> None:
            for ep in self._endpoints:
                try:
                    await ep.client.close()
                except Exception:  # closing is best effort
                    pass

        try:
            asyncio.run_coroutine_threadsafe(_close(), loop.loop).result(timeout=10)
        finally:
            loop.stop()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- generation ---------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; per-request failures come back as ``error`` rows."""
        if not requests:
            return []
        loop = self._ensure_started()
        return loop.run(self._generate_all(requests))

    async def agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Async form for callers that run their own loop (the work runs on the engine's loop)."""
        loop = self._ensure_started()
        fut = asyncio.run_coroutine_threadsafe(self._generate_all(requests), loop.loop)
        return await asyncio.wrap_future(fut)

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        results = await asyncio.gather(*(self._one(r) for r in requests), return_exceptions=True)
        out = []
        for req, res in zip(requests, results):
            if isinstance(res, BaseException):  # a bug, not a server fault: still a row
                res = GenerationResult(id=req.id, error=self._scrub(f"internal error: {res!r}"))
            out.append(res)
        return out

    def _order(self) -> list[_Endpoint]:
        """Least-loaded endpoint first (round-robin among equals), the others as fail-over."""
        start = next(self._rr) % len(self._endpoints)
        rotated = self._endpoints[start:] + self._endpoints[:start]
        return sorted(rotated, key=lambda e: e.assigned)  # stable: ties keep rotation

    def _scrub(self, text: str) -> str:
        if self._key and self._key != LOCAL_DUMMY_KEY and self._key in text:
            text = text.replace(self._key, "***")
        return text

    def _kwargs(self, req: GenerationRequest) -> dict[str, Any]:
        p = req.params
        kw: dict[str, Any] = dict(model=self.cfg.model, messages=req.messages,
                                  max_tokens=p.max_tokens, temperature=p.temperature,
                                  top_p=p.top_p, n=p.n)
        if p.seed is not None:
            kw["seed"] = p.seed
        if p.stop:
            kw["stop"] = p.stop
        return kw

    async def _one(self, req: GenerationRequest) -> GenerationResult:
        box = [0]
        _ATTEMPTS.set(box)  # gather() runs each coroutine in its own task/context copy
        t0 = time.monotonic()
        errors: list[str] = []
        order = self._order()
        if not self.cfg.failover:
            order = order[:1]
        for ep in order:
            ep.assigned += 1
            try:
                async with ep.sem:
                    # The client's generic ``post`` (its documented way to call any endpoint)
                    # keeps its auth, retries and Retry-After handling but skips the typed
                    # request transform and response model construction, which cost ~1.5 ms
                    # of CPU per request and capped throughput at a few hundred in flight.
                    resp = await ep.client.post("/chat/completions", body=self._kwargs(req),
                                                cast_to=httpx2.Response)
                    data = resp.json()
                choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
                if not choices:
                    raise ValueError("response has no choices")
                return GenerationResult(
                    id=req.id,
                    texts=[(c.get("message") or {}).get("content") or "" for c in choices],
                    finish_reasons=[str(c.get("finish_reason") or "") for c in choices],
                    latency_s=time.monotonic() - t0,
                    attempts=max(box[0], 1),
                )
            except Exception as err:  # every failure becomes a row, never an exception
                errors.append(f"{ep.url}: {_short(err)}")
                log.debug("request %s failed on %s: %s", req.id, ep.url, _short(err))
                if not _worth_failover(err):
                    break
            finally:
                ep.assigned -= 1
        return GenerationResult(id=req.id, error=self._scrub("; ".join(errors)),
                                latency_s=time.monotonic() - t0, attempts=max(box[0], 1))
