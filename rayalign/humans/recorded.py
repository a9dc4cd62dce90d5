"""A RECORDED human: answers from the real human votes a data set carries (PandaLM, votes JSONL).

Not a simulation: every answer is a vote a person actually gave, recorded with the data
(``rayalign.data.votes`` keeps them in ``PairwiseItem.meta["votes"]`` as ``"chosen"``,
``"rejected"`` or ``"tie"``, relative to the pair, so they hold in any A/B order).

Two modes:

* ``majority`` — the human majority (the data's ground truth): an ideal annotation team.
* ``single_annotator`` — one annotator's vote, drawn per pair from a seeded hash of
  (seed, pair id): a realistic single person, who may disagree with the majority or say
  "tie". A tie is no A/B answer: the pair is left out of the returned mapping, and the
  RLTHF loop records it as seen but unlabelled (the budget was spent).
"""

from __future__ import annotations

from typing import Literal

from rayalign.data.schema import Label, PairwiseItem, other_label
from rayalign.data.splits import seeded_hash

RecordedMode = Literal["majority", "single_annotator"]


class RecordedHuman:
    """Answers each pair from its recorded votes; ``calls`` counts the labels handed out."""

    simulated = False

    def __init__(self, mode: RecordedMode = "majority", seed: int = 0):
        if mode not in ("majority", "single_annotator"):
            raise ValueError(f"recorded human mode must be 'majority' or 'single_annotator', got {mode!r}")
        self.mode = mode
        self.seed = seed
        self.name = f"recorded-human({mode})"
        self.calls = 0

    def vote(self, item: PairwiseItem) -> Label | None:
        """This human's answer for ``item`` in its current A/B order (None: a tie)."""
        votes = item.meta.get("votes")
        if not isinstance(votes, list) or not votes or item.label not in ("A", "B"):
            raise ValueError(f"pair {item.id!r} carries no recorded human votes (meta['votes'] and a "
                             "majority label): a recorded human needs data with votes "
                             "(data.kind: pandalm or votes)")
        if self.mode == "majority":
            return item.label  # the loader's label is the human majority
        v = votes[seeded_hash(self.seed, item.id, "annotator") % len(votes)]
        if v not in ("chosen", "rejected", "tie"):
            raise ValueError(f"pair {item.id!r}: recorded vote {v!r} is not chosen, rejected or tie")
        return None if v == "tie" else (item.label if v == "chosen" else other_label(item.label))

    def request_labels(self, batch_id: str, items: list[PairwiseItem], ai_labels: dict[str, Label],
                       rationales: dict[str, str] | None = None) -> dict[str, Label]:
        out: dict[str, Label] = {}
        for it in items:
            lab = self.vote(it)
            if lab is not None:
                out[it.id] = lab
        self.calls += len(items)
        return out
