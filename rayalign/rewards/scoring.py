"""Batch scoring with a trained reward model: Ray Data ``map_batches`` over an actor pool.

Each actor loads the RM once (the expensive part) and scores batches; Ray Data streams the
pairs through the pool, so the same call scores 100 pairs on a laptop or a corpus on a
GPU cluster (``num_gpus`` per actor). Each actor loads either kind of RM directory through
``rewards.sources.load_reward_model``, the same loader as RL and Ray Serve's RM deployment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.data.schema import PairwiseItem

log = logging.getLogger(__name__)


class _PairScorer:
    """Ray Data actor: one scorer per actor, scores both responses of each pair."""

    def __init__(self, rm_dir: str, batch_size: int, threads: int | None):
        from rayalign.rewards.sources import load_reward_model

        self.scorer = load_reward_model(rm_dir, threads=threads)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts = [str(p) for p in batch["prompt"]]
        both = self.scorer.score(prompts * 2,
                                 [str(a) for a in batch["response_a"]]
                                 + [str(b) for b in batch["response_b"]],
                                 batch_size=self.batch_size)
        n = len(prompts)
        return {"idx": batch["idx"], "reward_a": both[:n], "reward_b": both[n:]}


class _ResponseScorerActor:
    """Ray Data actor: loads the RM once (either kind, ``sources.load_reward_model``), scores
    (prompt, response) rows."""

    def __init__(self, rm_dir: str, batch_size: int, threads: int | None):
        from rayalign.rewards.sources import load_reward_model

        self.scorer = load_reward_model(rm_dir, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rewards = self.scorer.score([str(p) for p in batch["prompt"]],
                                    [str(r) for r in batch["response"]])
        return {"idx": batch["idx"], "reward": np.asarray(rewards, dtype=np.float32)}


def map_actor_pool(rows: list[dict], actor_cls: type, model_dir: str, batch_size: int,
                   num_actors: int, num_gpus_per_actor: float):
    """Stream ``rows`` through a pool of ``actor_cls(model_dir, batch_size, threads)`` actors;
    yields the output batches (numpy) as they come back, in no particular order.

    Shared by every "load a model once per actor, score rows" stage (pairs, responses,
    policy log-probs): the CPU split (free CPUs over the actors, used as torch threads) and
    the pool set-up are decided once here.
    """
    import ray
    from ray.data import ActorPoolStrategy

    from rayalign.ray_utils import cluster_cpus, cpu_share, init_ray

    init_ray()
    threads = int(os.environ.get("RAYALIGN_SCORE_THREADS", "0")) or None
    cpus = None
    if not num_gpus_per_actor:  # CPU scoring: the free CPUs split over the actors, as threads
        cpus = cpu_share(num_actors, *cluster_cpus())
        threads = threads or cpus
    ds = ray.data.from_items(rows).map_batches(
        actor_cls, fn_constructor_args=(model_dir, batch_size, threads),
        batch_size=batch_size, compute=ActorPoolStrategy(size=num_actors),
        num_gpus=num_gpus_per_actor or None, num_cpus=cpus, batch_format="numpy")
    return ds.iter_batches(batch_size=None, batch_format="numpy")


def _checked_rm_dir(rm_dir: str | os.PathLike) -> str:
    path = str(Path(rm_dir).resolve())
    if not Path(path).is_dir():
        raise FileNotFoundError(f"reward model directory not found: {path}")
    return path


def score_pairs(rm_dir: str | os.PathLike, items: Sequence[PairwiseItem], batch_size: int = 32,
                num_actors: int = 1, num_gpus_per_actor: float = 0.0) -> np.ndarray:
    """Rewards ``(reward_a, reward_b)`` for every item, shape ``(len(items), 2)``, in order."""
    if not items:
        return np.zeros((0, 2), dtype=np.float32)
    rm_dir = _checked_rm_dir(rm_dir)
    rows = [{"idx": i, "prompt": it.prompt, "response_a": it.response_a,
             "response_b": it.response_b} for i, it in enumerate(items)]
    # Length order, so each Ray Data batch holds pairs of similar length (less padding).
    rows.sort(key=lambda r: len(r["prompt"]) + max(len(r["response_a"]), len(r["response_b"])))
    out = np.full((len(items), 2), np.nan, dtype=np.float32)
    for batch in map_actor_pool(rows, _PairScorer, rm_dir, batch_size, num_actors,
                                num_gpus_per_actor):
        out[batch["idx"], 0] = batch["reward_a"]
        out[batch["idx"], 1] = batch["reward_b"]
    if np.isnan(out).any():
        missing = int(np.isnan(out[:, 0]).sum())
        raise RuntimeError(f"score_pairs: {missing} of {len(items)} pairs came back unscored")
    return out


def score_responses(rm_dir: str | os.PathLike, prompts: Sequence[str], responses: Sequence[str],
                    batch_size: int = 32, num_actors: int = 1,
                    num_gpus_per_actor: float = 0.0) -> np.ndarray:
    """Reward of every (prompt, response), in order: the per-response batch-scoring stage.

    Best-of-N and policy evaluation score many responses to few prompts; each row is one
    response, and the RM is loaded once per actor of the pool (not per batch).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"score_responses: {len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        return np.zeros(0, dtype=np.float32)
    rm_dir = _checked_rm_dir(rm_dir)
    rows = [{"idx": i, "prompt": p, "response": r}
            for i, (p, r) in enumerate(zip(prompts, responses))]
    rows.sort(key=lambda r: len(r["prompt"]) + len(r["response"]))
    out = np.full(len(rows), np.nan, dtype=np.float32)
    for batch in map_actor_pool(rows, _ResponseScorerActor, rm_dir, batch_size, num_actors,
                                num_gpus_per_actor):
        out[batch["idx"]] = batch["reward"]
    if np.isnan(out).any():
        raise RuntimeError(f"score_responses: {int(np.isnan(out).sum())} of {len(rows)} "
                           "responses came back unscored")
    return out
