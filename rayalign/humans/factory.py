"""Build the ``HumanAnnotator`` a config asks for (``human.kind``), in one place.

The RLTHF driver (and its baselines) call ``make_annotator`` instead of knowing each kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayalign.data.schema import Label
from rayalign.humans.base import HumanAnnotator


def make_annotator(human_cfg: Any, *, truth: dict[str, Label] | None, seed: int,
                   queue_path: str | Path | None = None) -> HumanAnnotator:
    """A human for ``human_cfg`` (an ``rlthf.config.HumanConfig``).

    ``simulated`` replays ``truth`` (ground truth) with the configured error rate;
    ``recorded`` answers from the real votes carried by each pair; ``queue`` asks people
    through the annotation queue at ``queue_path``.
    """
    if human_cfg.kind == "simulated":
        from rayalign.humans.simulated import SimulatedHuman

        if truth is None:
            raise ValueError("a simulated human needs ground-truth labels in the data")
        return SimulatedHuman(truth, human_cfg.error_rate, seed=seed)
    if human_cfg.kind == "recorded":
        from rayalign.humans.recorded import RecordedHuman

        return RecordedHuman(human_cfg.mode, seed=seed)
    if human_cfg.kind == "queue":
        from rayalign.humans.queue import AnnotationQueue, QueueAnnotator

        if queue_path is None:
            raise ValueError("a queue human needs the queue's path")
        return QueueAnnotator(AnnotationQueue(queue_path), name="annotation-queue")
    raise ValueError(f"unknown human.kind {human_cfg.kind!r}")
