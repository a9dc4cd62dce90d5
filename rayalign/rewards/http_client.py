"""Client of a running ``rayalign rm serve`` endpoint (``POST {url}/score``).

Used where the RM lives elsewhere (a GPU replica, a shared Serve app) and a process only needs
rewards: RL workers, best-of-N. Batched (``max_items_per_request`` of the server, 256 by
default, is never exceeded), every request has a timeout, and transient failures (connection
refused, timeouts, 5xx, 429) are retried with exponential backoff. When the retries run out the
caller gets a :class:`RewardEndpointError` naming the URL and what to do — never a reward of 0,
which an RL trainer would happily optimise against.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from rayalign.errors import UserError

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the server is overloaded or restarting, not the request wrong.
RETRY_STATUS = {429, 500, 502, 503, 504}


class RewardEndpointError(UserError):
    """The reward endpoint could not score a batch (down, timing out, or refusing the request)."""


class HttpRewardClient:
    """``score(prompts, responses)`` over HTTP; same contract as a local RM scorer."""

    def __init__(self, url: str, batch_size: int = 64, timeout_s: float = 60.0,
                 max_retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 8.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"reward.url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # connections do not travel between processes
        return state

    @property
    def client(self):
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s)
        return self._client

    def _fail(self, why: str) -> RewardEndpointError:
        return RewardEndpointError(
            f"reward endpoint {self.url}/score failed: {why}. Check that `rayalign rm serve "
            f"--model-dir <rm>` is running and reachable at {self.url} (or set reward.url / "
            "reward.model_dir in the config); the run keeps its checkpoints, rerun to resume")

    def _post(self, items: list[dict[str, str]]) -> list[float]:
        """One request, retried on transient failures; rewards in order."""
        import httpx

        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                log.warning("reward endpoint %s: %s; retry %d/%d in %.1fs", self.url, last,
                            attempt, self.max_retries, delay)
                time.sleep(delay)
            try:
                resp = self.client.post(f"{self.url}/score", json={"items": items})
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout_s:g}s"
                continue
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:  # the request itself is wrong: retrying cannot help
                raise self._fail(f"HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                rewards = resp.json()["rewards"]
            except (ValueError, KeyError, TypeError):
                raise self._fail(f"the answer is not {{\"rewards\": [...]}}: {resp.text[:200]!r}") from None
            if not isinstance(rewards, list) or len(rewards) != len(items):
                raise self._fail(f"{len(items)} items sent, {len(rewards) if isinstance(rewards, list) else 'no'} "
                                 "rewards back")
            out = [float(r) for r in rewards]
            if not all(np.isfinite(out)):
                raise self._fail("the endpoint returned a non-finite reward")
            return out
        raise self._fail(f"{last} (after {self.max_retries + 1} attempts)")

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int | None = None) -> np.ndarray:
        """Rewards of every (prompt, response), in order, ``batch_size`` items per request."""
        if len(prompts) != len(responses):
            raise ValueError("score: prompts and responses differ in length")
        bs = batch_size or self.batch_size
        out: list[float] = []
        for s in range(0, len(prompts), bs):
            out += self._post([{"prompt": p, "response": r}
                               for p, r in zip(prompts[s:s + bs], responses[s:s + bs])])
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
