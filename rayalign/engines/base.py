"""One interface for "generate text for a batch of chats", whatever serves the model.

Backends (``openai_compat``, ``hf_local``, ``vllm``) implement ``Engine``; judges, the
labelling pipeline and the self-reward loop only ever see this interface, so a laptop
run and a cluster of vLLM servers differ by config alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[Message]
    params: SamplingParams = Field(default_factory=SamplingParams)


class GenerationResult(BaseModel):
    """Outputs for one request. A failed request is a result with ``error`` set, not an exception."""

    model_config = ConfigDict(extra="forbid")

    id: str
    texts: list[str] = Field(default_factory=list)
    error: str | None = None
    latency_s: float | None = None
    attempts: int = 1
    #: Per text: "stop", "length" (cut at max_tokens: a parser must expect a truncated
    #: answer) or whatever the backend reports; empty where the backend does not say.
    finish_reasons: list[str] = Field(default_factory=list)


@runtime_checkable
class Engine(Protocol):
    """A text generator. ``spec`` names it in caches (model + endpoint kind, never a key)."""

    @property
    def spec(self) -> str: ...

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in the same order as ``requests``; never raises for a per-request failure."""
        ...


class OptionLogprobs(BaseModel):
    """Log-probabilities of the first token of each option, as the model's next token.

    ``logprobs[i]`` belongs to ``options[i]`` of the call; ``error`` is set (and ``logprobs``
    empty) when the request failed. WHY the first token only: multiple-choice labels such as
    "A"/"B" are single tokens after a prefill like "(", which is what the CAI feedback
    model's normalised option probabilities need (one forward pass, no sampling).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    logprobs: list[float] = Field(default_factory=list)
    error: str | None = None


@runtime_checkable
class OptionScorer(Protocol):
    """An engine that can also return next-token log-probs of given options (optional API)."""

    def option_logprobs(self, requests: list[GenerationRequest],
                        options: list[str]) -> list[OptionLogprobs]:
        """One row per request, in order; never raises for a per-request failure."""
        ...
