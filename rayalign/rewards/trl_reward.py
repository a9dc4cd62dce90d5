"""A reward model as a TRL reward function (``GRPOTrainer`` / ``RLOOTrainer`` ``reward_funcs``).

TRL calls ``f(prompts=..., completions=..., completion_ids=..., **columns) -> list[float]``.
:class:`RMRewardFunction` answers with the RM named by :class:`RewardSourceConfig`: a local RM
directory (either kind, :func:`rayalign.rewards.sources.load_reward_model`) or a running
``rayalign rm serve`` endpoint (:class:`rayalign.rewards.http_client.HttpRewardClient`).

It is built from the plain config and loads the RM on its first call, so it pickles cheaply
into Ray Train workers and each worker loads its own copy (or opens its own connection).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from pydantic import Field, model_validator

from rayalign.config import StrictModel, operational

log = logging.getLogger(__name__)


class RewardSourceConfig(StrictModel):
    """Where rewards come from: exactly one of ``model_dir`` (local RM) or ``url`` (HTTP)."""

    #: An RM directory: the embedding-head RM (rm.json + head.npy, e.g. runs/<rlthf>/final/rm)
    #: or a sequence-classification RM (e.g. runs/rm/model).
    model_dir: str | None = None
    #: Base URL of ``rayalign rm serve`` (e.g. http://127.0.0.1:8000/rm); POST {url}/score.
    url: str | None = None
    batch_size: int = operational(64, ge=1, description="items per RM forward pass / request")
    timeout_s: float = operational(60.0, gt=0, description="HTTP: seconds per request")
    max_retries: int = operational(4, ge=0, description="HTTP: retries of a failed request")
    backoff_s: float = operational(0.5, ge=0, description="HTTP: first retry delay (doubles)")
    threads: int | None = operational(None, ge=1, description="torch threads of a local RM")
    #: Reward of an empty completion (the RM endpoint refuses empty responses, and an empty
    #: answer is no answer). None = the lowest reward of the other completions in the batch.
    empty_reward: float | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "RewardSourceConfig":
        if bool(self.model_dir) == bool(self.url):
            raise ValueError("reward: set exactly one of model_dir (a local RM directory) "
                             "or url (a running `rayalign rm serve` endpoint)")
        return self


def make_reward_source(cfg: RewardSourceConfig):
    """The scorer ``cfg`` names (a local RM is loaded now; an HTTP client connects lazily)."""
    if cfg.url:
        from rayalign.rewards.http_client import HttpRewardClient

        return HttpRewardClient(cfg.url, batch_size=cfg.batch_size, timeout_s=cfg.timeout_s,
                                max_retries=cfg.max_retries, backoff_s=cfg.backoff_s)
    from rayalign.rewards.sources import load_reward_model

    return load_reward_model(cfg.model_dir, threads=cfg.threads)  # type: ignore[arg-type]


def as_text(x: Any, role_prefix: bool) -> str:
    """A TRL prompt/completion as the text the RM reads.

    Standard format: the string itself. Conversational format (a list of messages): prompts
    are laid out as HH dialogue (``\\n\\nHuman: ...\\n\\nAssistant:``), which is how the RMs here
    were trained; a completion is its assistant message's content.
    """
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(m, dict) for m in x):
        if not role_prefix:
            return "".join(str(m.get("content", "")) for m in x)
        parts = [f"\n\n{'Human' if m.get('role') == 'user' else 'Assistant'}: {m.get('content', '')}"
                 for m in x if m.get("role") != "system"]
        return "".join(parts) + "\n\nAssistant:"
    raise TypeError(f"reward function: cannot read a {type(x).__name__} as text")


class RMRewardFunction:
    """TRL reward function backed by a reward model (see module docstring)."""

    def __init__(self, cfg: RewardSourceConfig | dict[str, Any]):
        self.cfg = cfg if isinstance(cfg, RewardSourceConfig) else RewardSourceConfig(**cfg)
        self.__name__ = "rm"  # TRL's metric name: rewards/rm/mean
        self._source: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_source"] = None  # each process loads its own RM / opens its own connection
        return state

    @property
    def source(self):
        if self._source is None:
            self._source = make_reward_source(self.cfg)
        return self._source

    def score_texts(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Rewards of plain-text (prompt, completion) pairs; empties get ``empty_reward``."""
        keep = [i for i, c in enumerate(completions) if c.strip()]
        rewards = np.full(len(completions), np.nan, dtype=np.float64)
        if keep:
            rewards[keep] = self.source.score([prompts[i] for i in keep],
                                              [completions[i] for i in keep],
                                              batch_size=self.cfg.batch_size)
        empty = np.isnan(rewards)
        if empty.any():
            fill = self.cfg.empty_reward
            if fill is None:  # never better than a real answer; all-empty: all equal anyway
                fill = float(rewards[keep].min()) if keep else 0.0
            rewards[empty] = fill
        return [float(r) for r in rewards]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        return self.score_texts([as_text(p, True) for p in prompts],
                                [as_text(c, False) for c in completions])
