"""AI labels for the RLTHF loop: simulated, replayed from a file, or a real LLM judge.

Whatever the source — the labeller or one of its extra judges — the result is a list of
``Judgment`` rows persisted in the run directory (``data/ai_judgments.jsonl``, and
``data/extra_judgments/<name>.jsonl`` per extra judge), each recording which response was
shown as A (``shown_a``) and every order's verdict; a rerun only asks for the pairs that
have no row yet.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Sequence

from rayalign.data.schema import Judgment, Label, PairwiseItem, response_key
# The recorded-judgment parser is shared with ``judge.kind: replay`` of ``rayalign label``.
from rayalign.feedback.replay import load_replay
from rayalign.feedback.simulated import SimulatedLabeller
from rayalign.feedback.config import JudgeConfig
from rayalign.rlthf.config import JudgeSource, LabellerConfig
from rayalign.runs import read_jsonl, write_jsonl

log = logging.getLogger("rayalign.rlthf")

__all__ = ["collect_ai_labels", "collect_all_judges", "get_ai_labels", "label_with_judge", "load_replay"]


def label_with_judge(judge_cfg: JudgeConfig, items: Sequence[PairwiseItem], cache_path: Path) -> list[Judgment]:
    """A real LLM judge through the Ray Data labelling pipeline (cached, fault tolerant)."""
    from rayalign.feedback.pipeline import label_pairs

    result = label_pairs(list(items), judge_cfg, cache_path=cache_path)
    judgments = getattr(result, "judgments", result)
    return list(judgments)


def get_ai_labels(cfg: JudgeSource, items: Sequence[PairwiseItem], truth: dict[str, Label] | None,
                  cache_path: Path, *, known_ids: set[str] | None = None, require_all: bool = True) -> list[Judgment]:
    """One judgment per item, in order. ``known_ids``/``require_all``: see ``load_replay``."""
    if not items:
        return []
    if cfg.kind == "simulated":
        if truth is None:
            raise ValueError("the simulated labeller needs ground-truth labels")
        out = SimulatedLabeller(cfg.simulated).label(items, truth)
    elif cfg.kind == "replay":
        out = load_replay(cfg.replay_path, items, known_ids=known_ids, require_all=require_all)  # type: ignore[arg-type]
    else:
        assert cfg.judge is not None  # LabellerConfig refuses kind judge without one
        out = label_with_judge(cfg.judge, items, cache_path)
    if [j.item_id for j in out] != [it.id for it in items]:
        raise RuntimeError(f"the {cfg.kind} labeller returned judgments out of order or incomplete")
    return [j.model_copy(update={"shown_a": response_key(it.response_a)}) for j, it in zip(out, items)]


def collect_ai_labels(path: Path, shard_items: Sequence[PairwiseItem], cfg: JudgeSource,
                      truth: dict[str, Label] | None, cache_path: Path, labeller_fn=get_ai_labels,
                      *, loop_started: bool) -> tuple[dict[str, Judgment], int]:
    """Judgments for the shard, persisted in ``path``; returns them and how many were asked now.

    Retry policy: a failed judgment (timeout, garbage) is asked again on a rerun; answered
    ones (ties included) never are, and the judge's own cache serves any repeat for free.
    Once iterations have built on the labels (``loop_started``), failures stay failed:
    changing labels under finished iterations would make their numbers meaningless.
    """
    have = {r["item_id"]: Judgment.model_validate(r) for r in read_jsonl(path)} if path.exists() else {}
    todo = [it for it in shard_items if it.id not in have or have[it.id].error]
    retry = [it for it in todo if it.id in have]
    if retry and loop_started:
        log.warning("%d AI judgments failed; not retried because iterations already built on these "
                    "labels (rerun into a new --run-dir to retry them, cached answers are free)", len(retry))
        todo = [it for it in todo if it.id not in have]
    elif retry:
        log.info("retrying %d failed AI judgments", len(retry))
    if todo:
        log.info("AI labelling %d pairs with %s (%s)", len(todo), cfg.display_name("the labeller"), cfg.kind)
        for j in labeller_fn(cfg, todo, truth, cache_path):
            have[j.item_id] = j
        write_jsonl(path, [have[it.id] for it in shard_items if it.id in have])
    return have, len(todo)


def collect_all_judges(data_dir: Path, shard_items: Sequence[PairwiseItem], cfg: LabellerConfig,
                       truth: dict[str, Label] | None, cache_path: Path, *, known_ids: set[str] | None,
                       loop_started: bool, labeller_fn=None) -> tuple[dict[str, Judgment], list[dict[str, Judgment]], int]:
    """The labeller's judgments (``ai_judgments.jsonl``) and each extra judge's
    (``extra_judgments/<name>.jsonl``) under ``data_dir``, and how many were asked now.

    An extra judge may cover only some pairs (its other pairs are abstentions, not errors).
    """
    primary, asked = collect_ai_labels(data_dir / "ai_judgments.jsonl", shard_items, cfg, truth, cache_path,
                                       labeller_fn or partial(get_ai_labels, known_ids=known_ids),
                                       loop_started=loop_started)
    extras = []
    for name, src in zip(cfg.extra_names(), cfg.extra_judges):
        got, n = collect_ai_labels(data_dir / "extra_judgments" / f"{name}.jsonl", shard_items, src, truth,
                                   cache_path, partial(get_ai_labels, known_ids=known_ids, require_all=False),
                                   loop_started=loop_started)
        extras.append(got)
        asked += n
    return primary, extras, asked
