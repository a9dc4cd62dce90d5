"""A Hugging Face sequence-classification reward model as ``score(prompts, responses)``.

The one place that turns texts into rewards for the ``lora`` RM kind (and any TRL
``RewardTrainer`` output): the same :func:`rayalign.rewards.rm_dir.encode` as training, batches
in token-length order. ``rewards.sources.load_reward_model`` picks it (or the embedding-head
scorer) for a directory; Ray Data scoring and Ray Serve's RM deployment go through that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.models.batching import DEFAULT_MAX_BATCH_TOKENS, token_budget_batches


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

    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32,
              max_batch_tokens: int | None = 4 * DEFAULT_MAX_BATCH_TOKENS) -> np.ndarray:
        """Reward of each (prompt, response), in order.

        Rows go through in batches of about equal token length, each at most ``batch_size``
        rows and ``max_batch_tokens`` padded tokens (None: rows only), so padding stays near
        zero (issues 16, 17). Rewards come back in input order.
        """
        import torch

        from rayalign.rewards.rm_dir import encode

        if len(prompts) != len(responses):
            raise ValueError("score: prompts and responses differ in length")
        out = np.zeros(len(prompts), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        all_ids = [encode(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        lengths = [len(x) for x in all_ids]
        for rows in token_budget_batches(lengths, batch_size, max_batch_tokens or sum(lengths) + 1):
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
