"""Batch scoring with a trained reward model: Ray Data ``map_batches`` over an actor pool.

Each actor loads the RM once (the expensive part) and scores batches; Ray Data streams the
pairs through the pool, so the same call scores 100 pairs on a laptop or a corpus on a
GPU cluster (``num_gpus`` per actor). :class:`RewardScorer` is the one place that turns
(prompt, response) texts into rewards; Ray Serve's RM deployment uses it too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rayalign.data.schema import PairwiseItem

log = logging.getLogger(__name__)


class RewardScorer:
    """A loaded reward model: texts in, scalar rewards out (no gradients, padded batches)."""

    def __init__(self, rm_dir: str | os.PathLike, max_length: int | None = None,
                 device: str | None = None, threads: int | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rayalign.rewards.rm_dir import rm_metadata

        if threads:
            torch.set_num_threads(threads)
        self.rm_dir = Path(rm_dir)
        meta = rm_metadata(self.rm_dir)
        self.max_length = int(max_length or meta.get("max_length") or 512)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.rm_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(self.rm_dir)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 32) -> np.ndarray:
        """Reward of each (prompt, response), in order."""
        import torch

        from rayalign.rewards.rm_dir import encode

        if len(prompts) != len(responses):
            raise ValueError("score: prompts and responses differ in length")
        out = np.zeros(len(prompts), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        all_ids = [encode(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        # Batches of similar length: each pads to its longest row (issue 17: unsorted batches
        # computed ~3.5x the real tokens for the encoder). Rewards go back to input order.
        order = sorted(range(len(all_ids)), key=lambda i: len(all_ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids = [all_ids[i] for i in rows]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):  # right padding: the model reads the last real token
                input_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
                mask[i, :len(x)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits
            out[rows] = logits[:, 0].float().cpu().numpy()
        return out


class ResponseScorer(Protocol):
    """What the batch-scoring stages need of a reward model: texts in, one reward each out.

    ``RewardScorer`` (HF sequence-classification RM) and ``EmbeddingHeadScorer`` (the RLTHF
    embedding-head RM) implement it; so will ``rayalign.rewards.sources.load_reward_model``.
    """

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...


class EmbeddingHeadScorer:
    """An RLTHF ``embedding_head`` RM directory (``rm.json`` + ``head.npy``) as a scorer.

    r = head · [e(response), e(prompt) ⊙ e(response)], the features
    ``rewards.embedding_head.EmbeddingHeadBackend`` trains on (same cuts of prompt and
    response), encoded here directly instead of through the backend's on-disk cache.
    """

    def __init__(self, rm_dir: str | os.PathLike, threads: int | None = None):
        import json

        from rayalign.models.encoders import SentenceEncoder

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.rm_dir = Path(rm_dir)
        meta = json.loads((self.rm_dir / "rm.json").read_text())
        self.head = np.load(self.rm_dir / "head.npy").astype(np.float64)
        self.encoder = SentenceEncoder(meta.get("encoder", "minilm"))
        if self.head.size != 2 * self.encoder.dim:
            raise ValueError(f"{self.rm_dir / 'head.npy'}: {self.head.size} weights, but encoder "
                             f"{meta.get('encoder')!r} gives {2 * self.encoder.dim} features")

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        from rayalign.rewards.embedding_head import MAX_CHARS, prompt_text

        if len(prompts) != len(responses):
            raise ValueError("score: prompts and responses differ in length")
        uniq = list(dict.fromkeys(prompts))  # N candidates share one prompt: encode it once
        ep = dict(zip(uniq, self.encoder.encode(self.encoder.keep_end([prompt_text(p) for p in uniq]))))
        er = self.encoder.encode([r[:MAX_CHARS] for r in responses])
        epr = np.stack([ep[p] for p in prompts]) if prompts else np.zeros_like(er)
        feats = np.concatenate([er, epr * er], axis=1).astype(np.float64)
        return (feats @ self.head).astype(np.float32)


def load_scorer(rm_dir: str | os.PathLike, threads: int | None = None) -> ResponseScorer:
    """The reward model in ``rm_dir``, whatever its kind (the one place that decides).

    An ``rm.json`` with ``"backend": "embedding_head"`` is the RLTHF RM; anything else is an
    HF sequence-classification RM. (Once ``rayalign.rewards.sources.load_reward_model``
    exists this body becomes a call to it.)
    """
    import json

    meta_path = Path(rm_dir) / "rm.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("backend") == "embedding_head":
        return EmbeddingHeadScorer(rm_dir, threads=threads)
    return RewardScorer(rm_dir, threads=threads)


class _PairScorer:
    """Ray Data actor: one scorer per actor, scores both responses of each pair."""

    def __init__(self, rm_dir: str, batch_size: int, threads: int | None):
        self.scorer = RewardScorer(rm_dir, threads=threads)
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
    """Ray Data actor: loads the RM once (``load_scorer``), scores (prompt, response) rows."""

    def __init__(self, rm_dir: str, batch_size: int, threads: int | None):
        self.scorer = load_scorer(rm_dir, threads=threads)

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
