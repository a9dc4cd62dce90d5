"""Engine config: which backend serves the model, and how hard we may push it.

One model for all backends (``kind`` selects) so a job config can switch from a laptop
(``hf_local``) to a fleet of vLLM/OpenAI-compatible servers (``openai``) by changing a
couple of lines. Fields a backend does not use are ignored by it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rayalign.config import StrictModel, operational
from rayalign.engines.base import SamplingParams


class EngineConfig(StrictModel):
    """Fields made with ``operational(...)`` change speed or placement, never outputs."""

    kind: Literal["openai", "hf_local", "vllm"] = "openai"
    #: Model name sent to the server (openai) or a model spec / local dir (hf_local, vllm).
    model: str
    # -- openai-compatible servers ------------------------------------------------------
    #: One or more base URLs (e.g. several vLLM replicas); requests are spread over them.
    base_urls: list[str] = operational(default_factory=lambda: ["https://api.openai.com/v1"])
    #: Name of the environment variable that holds the API key (never the key itself).
    api_key_env: str = operational("OPENAI_API_KEY")
    #: In-flight requests allowed per base URL.
    concurrency_per_endpoint: int = operational(16, ge=1)
    #: Seconds one HTTP attempt may take before it counts as a timeout (and is retried).
    timeout_s: float = operational(60.0, gt=0)
    #: Retries per request done by the openai client (429/408/409/5xx/timeouts/connection
    #: errors, exponential backoff with jitter, Retry-After honoured up to 120 s).
    max_retries: int = operational(4, ge=0)
    #: After the client gave up on one endpoint, try the request once on each other endpoint.
    failover: bool = operational(True)
    #: HTTP transport under the openai client: aiohttp scales better at hundreds of
    #: concurrent requests; httpx is the client's default.
    http_client: Literal["aiohttp", "httpx"] = operational("aiohttp")
    # -- local backends -----------------------------------------------------------------
    device: str = operational("cpu")  # "cpu", "cuda", "cuda:1", "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = operational(8, ge=1)
    max_input_tokens: int = Field(default=2048, ge=16)
    #: vLLM only: extra kwargs for ``vllm.LLM`` (tensor_parallel_size, gpu_memory_utilization...).
    engine_kwargs: dict = Field(default_factory=dict)
    # -- defaults for every request -----------------------------------------------------
    params: SamplingParams = Field(default_factory=SamplingParams)

    @field_validator("base_urls")
    @classmethod
    def _non_empty_urls(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one base URL")
        return [u.rstrip("/") for u in v]

    def spec(self) -> str:
        """What identifies the model's outputs (for caches): backend + model, never URLs or keys."""
        return f"{self.kind}:{self.model}"
