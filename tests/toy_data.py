"""Test-only data and probes: a separable toy preference set and LM log-prob margins."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rayalign.data.schema import PreferencePair

_TOY_WORDS = ("the sun water bread oven dough friend letter city river music poem apple "
              "dog cat morning evening rain wind book table garden tree road house light").split()


def toy_preference_pairs(n: int, seed: int = 0, marker: str = "wonderful"):
    """A separable toy preference set: every chosen response contains ``marker``, no
    rejected one does; otherwise both are random words of similar length. A reward model
    that learns anything should rank held-out pairs from this set almost perfectly."""
    import random

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = f"Human: tell me about the {rng.choice(_TOY_WORDS)} {i}. Assistant:"
        k = rng.randint(4, 8)
        words = [rng.choice(_TOY_WORDS) for _ in range(k)]
        chosen = words[:]
        chosen.insert(rng.randint(0, k), marker)
        rejected = [rng.choice(_TOY_WORDS) for _ in range(k + 1)]
        pairs.append(PreferencePair(prompt=prompt, chosen=" " + " ".join(chosen),
                                    rejected=" " + " ".join(rejected), source="toy"))
    return pairs


def completion_logprobs(model_dir: str | Path, prompts: Sequence[str],
                        completions: Sequence[str]) -> np.ndarray:
    """Sum of log p(completion | prompt) under a causal LM, one value per example.

    What DPO moves: the chosen-minus-rejected difference of these (the implicit reward
    margin, up to the reference term). Used by tests and evaluation.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = np.zeros(len(prompts), dtype=np.float64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        p_ids = tok(p)["input_ids"]
        c_ids = tok(p + c)["input_ids"][len(p_ids):] or tok(c)["input_ids"]
        ids = torch.tensor([p_ids + c_ids])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        targets = ids[0, 1:]
        lp = logp[torch.arange(len(targets)), targets]
        out[i] = float(lp[len(p_ids) - 1:].sum())
    return out


def preference_margins(model_dir: str | Path, pairs: Sequence[PreferencePair]) -> np.ndarray:
    """log p(chosen | prompt) - log p(rejected | prompt) for each pair."""
    prompts = [p.prompt for p in pairs]
    return (completion_logprobs(model_dir, prompts, [p.chosen for p in pairs])
            - completion_logprobs(model_dir, prompts, [p.rejected for p in pairs]))
