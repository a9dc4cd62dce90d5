"""The records that flow through rayalign.

Two shapes of preference data exist in this field and both are needed:

* ``PreferencePair`` — a *labelled* pair (prompt, chosen, rejected), the shape TRL's
  RewardTrainer and DPOTrainer consume.
* ``PairwiseItem`` — an *unlabelled-or-relabelled* pair with neutral names
  (response_a, response_b) and a label saying which one wins. RLTHF needs this shape
  because a pair's label changes over the loop (AI label, flip, human answer) while the
  responses stay put; "chosen" would lie about a pair whose label is being questioned.

Labels are the strings ``"A"`` or ``"B"`` (``"tie"`` where a judge abstains).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Label = Literal["A", "B"]
JudgeLabel = Literal["A", "B", "tie"]


def other_label(label: str) -> Label:
    """The other side: "B" for "A", "A" for "B" (a flip, or the same pair seen swapped)."""
    return "B" if label == "A" else "A"


def stable_id(*parts: str, n: int = 16) -> str:
    """A content hash: the same text gives the same id on every machine and run."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:n]


def response_key(text: str) -> str:
    """The content key of one response: what ``Judgment.shown_a`` records.

    WHY: a pair's id does not say which response a judge saw first, so a recorded "A" means
    nothing once the pair is shown in another order. The key of the A text does.
    """
    return stable_id("response", text)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    id: str = ""
    source: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class PreferencePair(_Record):
    """A labelled preference: ``chosen`` is preferred over ``rejected`` for ``prompt``."""

    prompt: str
    chosen: str
    rejected: str

    @field_validator("chosen", "rejected")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ValueError("must be a non-empty string")
        return v

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = stable_id(self.prompt, self.chosen, self.rejected)

    def to_pairwise(self, a_is_chosen: bool) -> "PairwiseItem":
        """Present the pair in a fixed A/B order; the true label travels in ``label``."""
        a, b = (self.chosen, self.rejected) if a_is_chosen else (self.rejected, self.chosen)
        return PairwiseItem(
            id=self.id, source=self.source, meta=dict(self.meta), prompt=self.prompt,
            response_a=a, response_b=b, label="A" if a_is_chosen else "B",
        )


class PairwiseItem(_Record):
    """Two responses to one prompt in a fixed order, with an optional winner label."""

    prompt: str
    response_a: str
    response_b: str
    label: Label | None = None

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = stable_id(self.prompt, self.response_a, self.response_b)

    def to_preference(self, label: Label | None = None) -> PreferencePair:
        """The labelled form; ``label`` overrides the item's own (e.g. an AI or RM label)."""
        lab = label or self.label
        if lab not in ("A", "B"):
            raise ValueError(f"pair {self.id!r} has no A/B label to turn into chosen/rejected")
        chosen, rejected = (
            (self.response_a, self.response_b) if lab == "A" else (self.response_b, self.response_a)
        )
        return PreferencePair(
            id=self.id, source=self.source, meta=dict(self.meta), prompt=self.prompt,
            chosen=chosen, rejected=rejected,
        )


class PromptRecord(_Record):
    """A prompt to generate from (self-reward, AlpacaEval)."""

    prompt: str
    reference: str | None = None


#: ``PairwiseItem.meta`` key: ``response_key`` of the data file's ``response_a``. Loaders of
#: files that name their responses A/B but whose pairs are shown in a seeded order (votes,
#: PandaLM) set it, so a recorded verdict that says "A" of the file still finds its response.
FILE_A_KEY = "file_response_a"

#: ``OrderVerdict.winner`` of a verdict that prefers neither response.
TIE = "tie"


class OrderVerdict(BaseModel):
    """One verdict given in one presentation order, in no A/B frame at all.

    WHY frame-free: a judge asked twice (responses swapped) can contradict itself, and that
    contradiction is the cheapest sign that its label is a guess (RLTHF targeting). Keyed by
    ``response_key`` values, the verdict means the same whichever order the pair is shown in
    later, so it never needs swapping.
    """

    model_config = ConfigDict(extra="forbid")

    #: ``response_key`` of the response the judge saw first.
    shown_first: str
    #: ``response_key`` of the preferred response, ``"tie"``, or None (no usable verdict).
    winner: str | None = None
    #: The judge's probability for its verdict (from log-probabilities), where known.
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)

    def label_in(self, item: "PairwiseItem") -> "JudgeLabel | None":
        """This verdict as "A"/"B"/"tie" in ``item``'s order (None: no verdict, or for other texts)."""
        if self.winner == TIE:
            return "tie"
        if self.winner == response_key(item.response_a):
            return "A"
        if self.winner == response_key(item.response_b):
            return "B"
        return None

    def first_in(self, item: "PairwiseItem") -> Label | None:
        """Which of ``item``'s responses was shown first ("A"/"B"; None: neither matches)."""
        if self.shown_first == response_key(item.response_a):
            return "A"
        if self.shown_first == response_key(item.response_b):
            return "B"
        return None


def order_consensus(labels: list["JudgeLabel | None"]) -> "JudgeLabel | None":
    """One label from per-order labels: the shared decisive label, else "tie" (a tie in any
    order, or the orders contradict each other), None when no order gave a verdict."""
    given = [lab for lab in labels if lab is not None]
    if not given:
        return None
    return given[0] if len(set(given)) == 1 else "tie"


class Judgment(BaseModel):
    """One judge verdict on one pairwise item; failures are rows too, never dropped."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    judge: str
    label: JudgeLabel | None = None
    score_a: float | None = None
    score_b: float | None = None
    rationale: str = ""
    raw: str = ""
    error: str | None = None
    simulated: bool = False
    #: ``response_key`` of the response shown as A when this verdict was given (None: not
    #: recorded, e.g. an old file). Replays use it to map "A"/"B" onto the current order.
    shown_a: str | None = None
    #: Every verdict behind ``label``, one per presentation order asked (empty in files
    #: written before they were kept). ``label`` is their ``order_consensus``.
    order_verdicts: list[OrderVerdict] = Field(default_factory=list)


class RankedAnswer(_Record):
    """One answer to a prompt with its human rank among sibling answers (0 = best).

    WHY its own record: ranked data (OASST) is not yet a preference; pairs are built from it
    (``rayalign.data.loaders.oasst_preference_pairs``) and the ranks stay available for
    listwise uses.
    """

    prompt: str
    response: str
    rank: float


class ResponseRecord(_Record):
    """One generator's response to a prompt (e.g. an AlpacaEval model output).

    ``id`` is the *prompt's* stable id so outputs of different generators join on it.
    """

    prompt: str
    response: str
    generator: str = ""
