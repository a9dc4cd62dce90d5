"""A SIMULATED human annotator: replays ground-truth labels, optionally with its own errors.

Benchmarks need "humans" that answer instantly and reproducibly; real people go through
the annotation queue instead. Both implement ``HumanAnnotator``.
"""

from __future__ import annotations

import hashlib

from rayalign.data.schema import Label, PairwiseItem, other_label


class SimulatedHuman:
    """Answers from ``truth``; with ``error_rate`` > 0 it answers wrong on a seeded subset."""

    simulated = True

    def __init__(self, truth: dict[str, Label], error_rate: float = 0.0, seed: int = 0):
        if not 0.0 <= error_rate < 0.5:
            raise ValueError("simulated human error_rate must be in [0, 0.5)")
        self.truth = truth
        self.error_rate = error_rate
        self.seed = seed
        self.name = f"simulated-human(error_rate={error_rate})"
        self.calls = 0  # labels handed out, so tests can prove nothing is asked twice

    def _wrong(self, item_id: str) -> bool:
        h = hashlib.sha256(f"human:{self.seed}:{item_id}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < self.error_rate

    def request_labels(self, batch_id: str, items: list[PairwiseItem],
                       ai_labels: dict[str, Label], rationales: dict[str, str] | None = None,
                       ) -> dict[str, Label]:
        out: dict[str, Label] = {}
        for it in items:
            t = self.truth[it.id]
            out[it.id] = other_label(t) if self._wrong(it.id) else t
        self.calls += len(out)
        return out
