"""Forward-pass batches by token budget, for encoders and reward models.

WHY: every batch pads to its longest row. Grouping rows of about the same token length and
capping the padded tokens per pass (not just the rows) keeps padding near zero and keeps long
rows out of batches whose activations fall out of cache: on 2 CPU cores MiniLM ran 1.31x
faster than fixed batches of 64 (issue 16, benchmarks/embedding_speed.py).
"""

from __future__ import annotations

from typing import Sequence

#: Padded tokens per forward pass; 1-2k was fastest on 2 CPU cores for MiniLM (issue 16).
#: On a GPU, raise it (e.g. 32768): there large batches are what keeps the device busy.
DEFAULT_MAX_BATCH_TOKENS = 2048


def token_budget_batches(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped shortest first; each group has <= ``max_rows`` rows and, padded to its
    longest member, <= ``max_tokens`` tokens (a single longer text still gets its own group)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= max_rows or (len(current) + 1) * lengths[i] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
