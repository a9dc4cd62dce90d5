"""One way to turn a reward-model directory into ``score(prompts, responses) -> rewards``.

rayalign writes two kinds of RM directory:

* a Hugging Face sequence-classification model (``config.json``; the ``lora`` backend under
  Ray Train, or any TRL ``RewardTrainer`` output) -> :class:`rayalign.rewards.seq_cls_scorer.RewardScorer`;
* the embedding-head RM (``rm.json`` with ``"backend": "embedding_head"`` + ``head.npy``: a frozen
  sentence encoder and a linear Bradley-Terry head; what the RLTHF loop writes to
  ``runs/<name>/final/rm``) -> :class:`EmbeddingHeadRM`.

:func:`load_reward_model` tells them apart, so RL, best-of-N and ``rayalign rm serve`` score
fresh (prompt, response) texts the same way whichever kind the user has. The embedding-head
features come from ``rewards.embedding_head`` itself (prompt cut, response cut, feature map),
never a copy, so a completion scored here gets the reward the RLTHF loop would give it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rayalign.errors import UserError

log = logging.getLogger(__name__)


class RewardSource(Protocol):
    """Anything that scores (prompt, response) texts: a local RM or an HTTP client."""

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 32) -> np.ndarray: ...


class EmbeddingHeadRM:
    """The embedding-head RM as a scorer: encode in this process, features, dot the head.

    Encoding runs in-process (one ``SentenceEncoder``), not through Ray Data: an RL step
    scores a few dozen completions, where an actor pool costs more than it saves.
    """

    def __init__(self, rm_dir: str | os.PathLike, threads: int | None = None):
        from rayalign.models.encoders import SentenceEncoder
        from rayalign.rewards.embedding_head import EmbeddingHeadBackend, EmbeddingHeadConfig

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.rm_dir = Path(rm_dir)
        meta = json.loads((self.rm_dir / "rm.json").read_text())
        self.encoder_spec = str(meta.get("encoder") or "minilm")
        # The backend lends its prompt cut (left-cut with the encoder's tokenizer) and loader.
        self._backend = EmbeddingHeadBackend(EmbeddingHeadConfig(encoder=self.encoder_spec),
                                             cache_dir=self.rm_dir)
        self.head = np.asarray(self._backend.load(self.rm_dir), dtype=np.float64)
        dim = meta.get("dim")
        if dim is not None and int(dim) != self.head.size:
            raise UserError(f"{self.rm_dir}: rm.json says dim={dim} but head.npy has "
                            f"{self.head.size} weights; the directory is inconsistent")
        self.encoder = SentenceEncoder(self.encoder_spec)

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 32) -> np.ndarray:
        """Reward of each (prompt, response), in order (float32)."""
        from rayalign.rewards.embedding_head import pair_features, response_text

        if len(prompts) != len(responses):
            raise ValueError("score: prompts and responses differ in length")
        if not prompts:
            return np.zeros(0, dtype=np.float32)
        # Each distinct prompt is encoded once (GRPO sends every prompt num_generations times).
        uniq = list(dict.fromkeys(prompts))
        pe = self.encoder.encode(self._backend.prompt_texts(uniq), batch_size=batch_size)
        row = {p: i for i, p in enumerate(uniq)}
        ep = pe[[row[p] for p in prompts]]
        er = self.encoder.encode([response_text(r) for r in responses], batch_size=batch_size)
        feats = pair_features(ep, er).astype(np.float64)
        if feats.shape[1] != self.head.size:
            raise UserError(f"{self.rm_dir}: head.npy has {self.head.size} weights but encoder "
                            f"{self.encoder_spec!r} gives {feats.shape[1]} features")
        return (feats @ self.head).astype(np.float32)


def rm_kind(rm_dir: str | os.PathLike) -> str:
    """``"embedding_head"``, ``"hf"`` (sequence classifier), or a ``UserError`` saying why not."""
    d = Path(rm_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"reward model directory not found: {d}")
    meta = d / "rm.json"
    if meta.is_file():
        backend = json.loads(meta.read_text()).get("backend")
        if backend == "embedding_head":
            if not (d / "head.npy").is_file():
                raise UserError(f"{d}: rm.json names the embedding_head backend but head.npy is missing")
            return "embedding_head"
        raise UserError(
            f"{d}: an RM of backend {backend!r} cannot score new texts outside the RLTHF loop "
            "(it reads cached encoder states); use an embedding_head or a lora RM directory")
    if (d / "config.json").is_file():
        return "hf"
    raise UserError(f"{d} is not a reward model directory: it holds neither rm.json "
                    "(embedding-head RM) nor config.json (sequence-classification RM)")


def load_reward_model(rm_dir: str | os.PathLike, max_length: int | None = None,
                      device: str | None = None, threads: int | None = None) -> RewardSource:
    """A scorer for either kind of RM directory (see the module docstring)."""
    kind = rm_kind(rm_dir)
    log.info("loading %s reward model from %s", kind, rm_dir)
    if kind == "embedding_head":
        return EmbeddingHeadRM(rm_dir, threads=threads)
    from rayalign.rewards.seq_cls_scorer import RewardScorer

    return RewardScorer(rm_dir, max_length=max_length, device=device, threads=threads)
