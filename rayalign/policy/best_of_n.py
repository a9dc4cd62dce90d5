"""Best-of-N (rejection sampling) with a reward model: N candidates, RM scores, best kept.

The data step of iterative DPO / RAFT-style rejection-sampling fine-tuning:

1. ``generate`` — N candidates per prompt through the Ray Data generation fan-out
   (``feedback.pipeline.generate_candidates_with_stats``: one engine per actor).
2. ``score`` — every candidate scored by the RM as a Ray Data batch-scoring stage
   (``rewards.scoring.score_responses``: the RM loaded once per actor).
3. ``select`` — per prompt: the best candidate as an SFT example (TRL prompt/completion),
   best vs worst as a ``PreferencePair`` for ``rayalign dpo`` or the RM trainer
   (``self_reward.build_pairs``: all-equal rewards, fewer than two scored candidates or
   identical texts give *no pair*, and are counted).

Both paid steps persist per chunk of prompts into the run directory (``candidates.jsonl``,
``scores.jsonl``, append-only), so a killed or repeated run regenerates and rescores
nothing it already has: only prompts missing from those files are sent again.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import Field

from rayalign.config import RayConfig, StrictModel, operational
from rayalign.data.schema import PreferencePair, PromptRecord, stable_id
from rayalign.engines.config import EngineConfig
from rayalign.runs import append_jsonl, read_jsonl

log = logging.getLogger(__name__)


class BestOfNJobConfig(StrictModel):
    """``rayalign bon --config``: N candidates per prompt, RM-scored, best kept."""

    run_dir: str = operational("runs/bon")
    #: Prompts: JSONL with a ``prompt`` (or ``instruction``) field and optional ``id``, or any
    #: preference-data file ``rayalign data inspect`` reads (its distinct prompts are used),
    #: e.g. ``bundled:hh_rlhf_harmless``.
    input: str
    limit: int | None = Field(default=None, ge=1)
    engine: EngineConfig
    #: Candidates per prompt.
    n: int = Field(default=4, ge=1)
    system_prompt: str | None = None
    #: Reward model directory: an HF sequence-classification RM (``rayalign rm train``) or an
    #: RLTHF embedding-head RM (``rm.json`` + ``head.npy``).
    rm: str
    # -- operational: placement and batching ------------------------------------------
    concurrency: int = operational(1, ge=1)
    actor_batch_size: int = operational(8, ge=1)
    num_cpus: float | None = operational(None, ge=0)
    num_gpus: float = operational(0, ge=0)
    rm_actors: int = operational(1, ge=1)
    rm_batch_size: int = operational(32, ge=1)
    rm_num_gpus: float = operational(0, ge=0)
    #: Prompts per persisted chunk: the most a killed run can lose.
    chunk_size: int = operational(64, ge=1)
    ray: RayConfig = Field(default_factory=RayConfig)


# --------------------------------------------------------------------------- prompts


def load_prompts(path: str | os.PathLike, limit: int | None = None) -> list[PromptRecord]:
    """Prompts of ``path`` in file order, each with a stable id (its own, or a content hash).

    A JSONL row needs a non-empty ``prompt`` or ``instruction``; a preference-data file
    (HH, TRL, OASST ...) gives its distinct prompts. Repeated prompts are kept once.
    """
    from rayalign.data.pairs import resolve_path
    from rayalign.data.rows import iter_json_rows

    p = resolve_path(path)  # a path, or bundled:<name>
    if not p.is_file():
        raise FileNotFoundError(f"prompts file not found: {p}")
    out: dict[str, PromptRecord] = {}
    seen: set[str] = set()

    def add(rec_id: str, text: str) -> bool:
        if rec_id not in out and text not in seen:
            out[rec_id] = PromptRecord(id=rec_id, prompt=text)
            seen.add(text)
        return bool(limit and len(out) >= limit)

    rows: Iterable = ()
    if p.suffix == ".jsonl":
        first = next((obj for _, _, obj in iter_json_rows(p) if isinstance(obj, dict)), None)
        if first is not None and not {"chosen", "rejected", "answers"} & set(first):
            rows = iter_json_rows(p)
    if rows:
        for row, _line, obj in rows:
            if isinstance(obj, Exception):
                raise obj
            text = obj.get("prompt") or obj.get("instruction") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{p}: row {row}: field prompt: missing or empty")
            if add(str(obj.get("id") or stable_id("prompt", text)), text):
                break
    else:
        from rayalign.data.loaders import load_any

        for rec in load_any(p, skip_bad_rows=True):  # only prompts are read: a bad answer is no bad prompt
            if add(stable_id("prompt", rec.prompt), rec.prompt):
                break
    if not out:
        raise ValueError(f"{p}: no prompts")
    return list(out.values())


# --------------------------------------------------------------------------- persistence


def texts_key(texts: Sequence[str]) -> str:
    """Identity of one candidate set: a score row belongs to exactly these texts."""
    return stable_id("candidates", *texts)


# --------------------------------------------------------------------------- steps


@dataclass
class BestOfNStats:
    prompts: int = 0
    generated_now: int = 0          # prompts sent to the generation fan-out in this call
    generation_errors: int = 0      # prompts whose generation failed (retried on the next run)
    scored_now: int = 0             # candidates sent to the RM in this call
    candidates: int = 0
    empty_candidates: int = 0       # empty texts: not scored, never chosen
    sft_examples: int = 0
    pairs: int = 0
    skipped_tie: int = 0            # every candidate got the same reward
    skipped_unscored: int = 0       # fewer than two non-empty candidates
    skipped_identical: int = 0      # best and worst texts identical
    mean_reward: float | None = None
    mean_best_reward: float | None = None
    generate_s: float = 0.0
    score_s: float = 0.0
    rm: str = ""
    generator: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def generate_missing(cfg: BestOfNJobConfig, prompts: Sequence[PromptRecord], path: Path,
                     stats: BestOfNStats) -> dict[str, dict]:
    """Candidates of every prompt: those in ``path`` as they are, the rest generated now.

    Each chunk is appended to ``path`` when it comes back; failed prompts are not written
    (counted in ``stats.generation_errors``) so the next run retries them.
    """
    from rayalign.feedback.pipeline import generate_candidates_with_stats

    have = {r["prompt_id"]: r for r in read_jsonl(path, missing_ok=True)}
    todo = [p for p in prompts if p.id not in have]
    t0 = time.monotonic()
    for start in range(0, len(todo), cfg.chunk_size):
        chunk = todo[start:start + cfg.chunk_size]
        cands, _ = generate_candidates_with_stats(
            chunk, cfg.engine, n=cfg.n, concurrency=cfg.concurrency,
            batch_size=cfg.actor_batch_size, system_prompt=cfg.system_prompt,
            num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
        ok = [c.model_dump() for c in cands if c.texts and not c.error]
        stats.generation_errors += len(cands) - len(ok)
        stats.generated_now += len(chunk)
        append_jsonl(path, ok)
        have.update({r["prompt_id"]: r for r in ok})
        log.info("best-of-n: generated %d/%d prompts", start + len(chunk), len(todo))
    stats.generate_s = time.monotonic() - t0
    return have


def score_missing(cfg: BestOfNJobConfig, cands: Sequence[dict], path: Path,
                  stats: BestOfNStats) -> dict[str, list[float | None]]:
    """Reward of every candidate (``None`` for an empty text); only unscored sets go to the RM."""
    from rayalign.rewards.scoring import score_responses

    have = {r["key"]: r["rewards"] for r in read_jsonl(path, missing_ok=True)}
    todo = [c for c in cands if texts_key(c["texts"]) not in have]
    t0 = time.monotonic()
    for start in range(0, len(todo), cfg.chunk_size):
        chunk = todo[start:start + cfg.chunk_size]
        flat = [(i, k) for i, c in enumerate(chunk) for k, t in enumerate(c["texts"]) if t.strip()]
        rewards = score_responses(
            cfg.rm, [chunk[i]["prompt"] for i, _ in flat], [chunk[i]["texts"][k] for i, k in flat],
            batch_size=cfg.rm_batch_size, num_actors=cfg.rm_actors,
            num_gpus_per_actor=cfg.rm_num_gpus)
        per: list[list[float | None]] = [[None] * len(c["texts"]) for c in chunk]
        for (i, k), r in zip(flat, rewards):
            per[i][k] = float(r)
        rows = [{"prompt_id": c["prompt_id"], "key": texts_key(c["texts"]), "rewards": per[i]}
                for i, c in enumerate(chunk)]
        append_jsonl(path, rows)
        have.update({r["key"]: r["rewards"] for r in rows})
        stats.scored_now += len(flat)
    stats.score_s = time.monotonic() - t0
    return {c["prompt_id"]: have[texts_key(c["texts"])] for c in cands}


def select(prompts: Sequence[PromptRecord], cands: dict[str, dict],
           rewards: dict[str, list[float | None]], rm_name: str, stats: BestOfNStats,
           ) -> tuple[list[dict], list[PreferencePair], list[dict]]:
    """(SFT examples, DPO pairs, one selection record per prompt) in prompt order.

    The SFT example is the highest-reward non-empty candidate (the first of equal ones; the
    record says how many tied). The pair is best vs worst under ``self_reward.build_pairs``
    rules: no pair when all rewards are equal, when fewer than two candidates were scored,
    or when best and worst are the same text.
    """
    from rayalign.data.trl_format import trl_completion
    from rayalign.policy.self_reward import JudgedSet, build_pairs

    sft, records, judged = [], [], []
    all_r, best_r = [], []
    for p in prompts:
        c = cands.get(p.id)
        if c is None:
            continue
        rs = rewards[p.id]
        stats.candidates += len(rs)
        stats.empty_candidates += sum(r is None for r in rs)
        scored = [(k, r) for k, r in enumerate(rs) if r is not None]
        all_r += [r for _, r in scored]
        rec: dict[str, Any] = {"prompt_id": p.id, "prompt": p.prompt, "texts": c["texts"],
                               "rewards": rs, "best": None, "worst": None}
        if scored:
            hi = max(r for _, r in scored)
            lo = min(r for _, r in scored)
            b = next(k for k, r in scored if r == hi)
            rec.update(best=b, worst=next(k for k, r in scored if r == lo),
                       tied_best=sum(r == hi for _, r in scored))
            best_r.append(hi)
            sft.append({"prompt": p.prompt, "completion": trl_completion(p.prompt, c["texts"][b]),
                        "prompt_id": p.id, "reward": hi, "n_candidates": len(rs),
                        "tied_best": rec["tied_best"], "rm": rm_name})
        records.append(rec)
        judged.append(JudgedSet(prompt_id=p.id, prompt=p.prompt, texts=list(c["texts"]),
                                scores=list(rs), judge=rm_name))
    pairs, pstats = build_pairs(judged, recipe="best-of-n")
    by_prompt = {pair.meta["prompt_id"]: pair for pair in pairs}
    for rec in records:
        pair = by_prompt.get(rec["prompt_id"])
        rec["pair_id"] = pair.id if pair else None
    stats.sft_examples = len(sft)
    stats.pairs = len(pairs)
    stats.skipped_tie = pstats.skipped_tie
    stats.skipped_unscored = pstats.skipped_unparseable
    stats.skipped_identical = pstats.skipped_identical
    stats.mean_reward = float(sum(all_r) / len(all_r)) if all_r else None
    stats.mean_best_reward = float(sum(best_r) / len(best_r)) if best_r else None
    return sft, pairs, records


def run_best_of_n(cfg: BestOfNJobConfig, run_dir: str | os.PathLike) -> BestOfNStats:
    """The whole job in ``run_dir`` (an open ``RunDir``'s path): resumable at every chunk.

    Writes ``candidates.jsonl`` and ``scores.jsonl`` (the paid work), then ``sft.jsonl``
    (TRL prompt/completion), ``pairs.jsonl`` (``PreferencePair`` rows), ``selection.jsonl``
    (every prompt's candidates, rewards, best/worst index, pair id) and ``stats.json``.
    """
    from rayalign.ray_utils import init_ray
    from rayalign.runs import atomic_write_json, write_jsonl

    run_dir = Path(run_dir)
    prompts = load_prompts(cfg.input, cfg.limit)
    stats = BestOfNStats(prompts=len(prompts), rm=str(cfg.rm), generator=cfg.engine.spec())
    init_ray(cfg.ray)
    cands = generate_missing(cfg, prompts, run_dir / "candidates.jsonl", stats)
    present = [cands[p.id] for p in prompts if p.id in cands]
    rewards = score_missing(cfg, present, run_dir / "scores.jsonl", stats)
    sft, pairs, records = select(prompts, cands, rewards, f"rm:{Path(cfg.rm).name}", stats)
    write_jsonl(run_dir / "sft.jsonl", sft)
    write_jsonl(run_dir / "pairs.jsonl", pairs)
    write_jsonl(run_dir / "selection.jsonl", records)
    atomic_write_json(run_dir / "stats.json", stats.as_dict())
    return stats
