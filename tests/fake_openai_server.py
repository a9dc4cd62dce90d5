"""A small OpenAI-compatible chat server for tests and benchmarks, with fault injection.

Runs aiohttp (installed with ray[serve]) on 127.0.0.1, port 0 (a free port), in a daemon
thread with its own event loop, so a test can start it in-process; ``python
tests/fake_openai_server.py --latency 0.5`` runs it as a separate process (the benchmark
does that so the server does not compete with the client for the GIL).

Faults, per request:
  "429"        -> HTTP 429 with ``Retry-After: <retry_after>``
  "500"        -> HTTP 500
  "hang"       -> sleeps ``hang_s`` (longer than the client's timeout) before answering
  "garbage"    -> 200 with text no parser can read
  "truncated"  -> 200 with the answer cut in the middle, finish_reason "length"
  "slow:<s>"   -> answers normally after <s> extra seconds
Faults are taken, in order, from ``plan`` (any request) and from ``faults_for[marker]``
(requests whose messages contain ``marker``), one fault per request; afterwards the request
is answered normally by ``answer(messages)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from typing import Callable

from aiohttp import web

Messages = list[dict]


def default_answer(messages: Messages) -> str:
    """A judge-shaped answer: prefers the response that appears first in the prompt text."""
    return "Rationale: the first response is more helpful.\nPreference: Response A"


class FakeOpenAIServer:
    def __init__(self, latency: float = 0.0, answer: Callable[[Messages], str] | str | None = None,
                 retry_after: str = "0.05", hang_s: float = 5.0, port: int = 0,
                 host: str = "127.0.0.1"):
        self.latency = latency
        self.answer = answer if answer is not None else default_answer
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.host = host
        self.port = port
        self.plan: list[str] = []
        self.faults_for: dict[str, list[str]] = {}
        #: One dict per request received: {"text", "fault", "auth", "time"}.
        self.requests: list[dict] = []
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- control ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def n_requests(self, marker: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if marker is None or marker in r["text"])

    def _take_fault(self, text: str) -> str | None:
        with self._lock:
            for marker, faults in self.faults_for.items():
                if marker in text and faults:
                    return faults.pop(0)
            if self.plan:
                return self.plan.pop(0)
        return None

    # -- HTTP -------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages") or []
        text = "\n".join(str(m.get("content", "")) for m in messages)
        fault = self._take_fault(text)
        with self._lock:
            self.requests.append({"text": text, "fault": fault, "time": time.time(),
                                  "auth": request.headers.get("Authorization", "")})
            self.counts[fault or "ok"] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "429":
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}},
                                     status=429, headers={"Retry-After": self.retry_after})
        if fault == "500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}},
                                     status=500)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        if fault and fault.startswith("slow:"):
            await asyncio.sleep(float(fault.split(":", 1)[1]))
        n = int(body.get("n") or 1)
        finish = "stop"
        if fault == "garbage":
            content = "lorem ipsum dolor sit amet }{ <<<>>> 42"
        else:
            content = self.answer(messages) if callable(self.answer) else str(self.answer)
            if fault == "truncated":
                content, finish = content[: max(1, len(content) // 3)], "length"
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": i, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}
                        for i in range(n)],
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(content.split()),
                      "total_tokens": len(text.split()) + len(content.split())},
        })

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port the OS picked

    def start(self) -> "FakeOpenAIServer":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-openai-server")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_site(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=5)
        self._loop = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()

    async def run() -> None:
        srv = FakeOpenAIServer(latency=args.latency, port=args.port)
        await srv._start_site()
        print(json.dumps({"port": srv.port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
