"""How the RLTHF loop asks people for labels, whoever the people are.

The driver hands a batch of selected pairs to a ``HumanAnnotator`` and either gets every
label back at once (a simulated human, an import) or ``None`` meaning "not finished yet";
it then persists its state and polls again later, so a real annotation round can take days
and survive restarts of either side.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rayalign.data.schema import Label, PairwiseItem


@runtime_checkable
class HumanAnnotator(Protocol):
    #: shown in every output; "simulated-human" for the simulation.
    name: str
    simulated: bool

    def request_labels(
        self,
        batch_id: str,
        items: list[PairwiseItem],
        ai_labels: dict[str, Label],
        rationales: dict[str, str] | None = None,
    ) -> dict[str, Label] | None:
        """Labels for every item of the batch, or None while the batch is incomplete.

        Calling again with the same ``batch_id`` must not enqueue the items twice.
        Items a person skips or marks a tie are left out of the returned mapping.
        """
        ...
