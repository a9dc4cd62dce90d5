"""The labelling and generation fan-out on Ray Data.

``label_pairs``: pairs -> one ``Judgment`` per pair, in input order.
  1. Cache first, on the driver: a pair whose key (judge spec + content) is in the sqlite
     cache is never sent again; duplicate pairs in the input are sent once.
  2. The rest become a Ray Dataset and go through ``map_batches(JudgeActor,
     compute=ActorPoolStrategy(size=n))``: each actor builds the judge once (an HTTP client
     pool or a local model), re-checks the cache (another actor or an earlier attempt of the
     same batch may have finished it), and judges. The actor is async and each (pair, order)
     request flows on its own, committed to the cache when its answer parses — so a killed
     job resumes where it stopped and one slow request holds up nothing else.
  3. Errors are rows (``Judgment.error``) and are not cached: a rerun retries them.
  4. The driver checks that every input came back exactly once (raises otherwise).

Ray Data draws its own progress bars. In Ray 2.60 ``concurrency=`` on ``map_batches`` is
deprecated in favour of ``compute=ActorPoolStrategy(size=n)``, used here.

``generate_candidates``: prompts -> n candidate texts each, same shape of pipeline.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rayalign.data.schema import Judgment, PairwiseItem, PromptRecord, response_key
from rayalign.engines.base import GenerationRequest
from rayalign.engines.config import EngineConfig
from rayalign.engines.factory import build_engine
from rayalign.errors import JudgeFailed
from rayalign.feedback.cache import open_judgment_cache
from rayalign.feedback.config import JudgeConfig, build_judge
from rayalign.feedback.judges import pair_cache_key

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    #: Display name of the judge that produced the judgments (labelling only).
    judge: str = ""
    #: True when the labels come from a simulation (``judge.kind: simulated``, or replayed
    #: rows recorded by one): never to be mistaken for a real judge's verdicts.
    simulated: bool = False
    n_total: int = 0
    n_cached: int = 0
    n_duplicates: int = 0
    n_requested: int = 0
    n_ok: int = 0
    n_errors: int = 0
    n_ties: int = 0
    wall_s: float = 0.0
    #: Newly produced records per second of pipeline wall time (cache hits excluded).
    records_per_s: float = 0.0
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _judge_name(cfg: JudgeConfig, judgments: list[Judgment]) -> str:
    """The name the judge writes into its rows (the config's ``name``, else the commonest)."""
    if cfg.name:
        return cfg.name
    names = [j.judge for j in judgments if j.judge]
    if names:
        return max(dict.fromkeys(names), key=names.count)
    return f"{cfg.kind}:{cfg.model or cfg.template}"


def _why(judgments: list[Judgment]) -> str:
    """The commonest error, with its count: what a user needs to fix a failing judge."""
    errs = [j.error for j in judgments if j.error]
    if not errs:
        return "no errors"
    top = max(dict.fromkeys(errs), key=errs.count)
    return f"{errs.count(top)} x {top[:300]}"


def _error_kind(err: str) -> str:
    if err.startswith("parse error"):
        return "parse"
    if err.startswith("request failed"):
        return "request"
    return "other"


#: Ray Data tasks (blocks) one judge actor works on at once.
CALLS_PER_ACTOR = 4


class JudgeActor:
    """A Ray Data actor: builds the judge once, then judges batches of serialised pairs.

    ``__call__`` is async, so Ray Data runs several batches per actor at once; inside a
    batch every pair (and, for pairwise LLM judges, every (pair, order) request) flows on
    its own, so one request waiting out its timeout holds up nothing else. Each request is
    committed to the cache the moment it parsed, and each pair when its last order came in:
    a kill or Ctrl-C loses only what was in flight.
    """

    def __init__(self, judge_cfg_json: str, cache_path: str | None, shared_cache_path: str | None = None):
        from concurrent.futures import ThreadPoolExecutor

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.cfg = JudgeConfig.model_validate_json(judge_cfg_json)
        self.judge = build_judge(self.cfg)
        self.cache = open_judgment_cache(cache_path, shared_cache_path)
        #: Pairwise LLM judges are asked per (pair, order); remote (HTTP) engines get one
        #: thread per request, local models keep their batches (threads would fight for them).
        self.per_order = hasattr(self.judge, "orders") and hasattr(self.judge, "combine")
        self.per_request = self.per_order and self.cfg.kind == "openai"
        width = self.cfg.concurrency_per_endpoint * len(self.cfg.base_urls) if self.per_request else 1
        self.pool = ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="judge")

    def _ask(self, requests: list[tuple[str, PairwiseItem, str]]) -> list[Any]:
        """Ask (request key, pair, order) requests; commit each success at once."""
        outcomes = self.judge.ask([(it, o) for _, it, o in requests])
        if self.cache is not None:
            for (rkey, _, _), out in zip(requests, outcomes):
                if out.error is None:
                    self.cache.put_request(rkey, out.to_json())
        return outcomes

    async def _per_order(self, todo: list[tuple[str, PairwiseItem]]) -> list[Judgment]:
        import asyncio

        from rayalign.feedback.judges import Outcome, request_cache_key

        loop = asyncio.get_running_loop()
        orders = self.judge.orders
        rkeys = {(k, o): request_cache_key(k, o) for k, _ in todo for o in orders}
        stored = self.cache.get_requests(rkeys.values()) if self.cache is not None else {}
        outs: dict[tuple[str, str], Any] = {ko: Outcome.from_json(stored[rk])
                                              for ko, rk in rkeys.items() if rk in stored}
        missing = [(rkeys[(k, o)], k, it, o) for k, it in todo for o in orders if (k, o) not in outs]
        if self.per_request:
            futs = [loop.run_in_executor(self.pool, self._ask, [(rk, it, o)]) for rk, _, it, o in missing]
            got = [r[0] for r in await asyncio.gather(*futs)]
        else:
            got = await loop.run_in_executor(self.pool, self._ask,
                                             [(rk, it, o) for rk, _, it, o in missing])
        outs.update({(k, o): g for (_, k, _, o), g in zip(missing, got)})
        return [self.judge.combine(it, {o: outs[(k, o)] for o in orders}) for k, it in todo]

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        import asyncio

        keys = [str(k) for k in batch["key"]]
        items = [PairwiseItem.model_validate_json(s) for s in batch["item"]]
        done = self.cache.get_many(keys) if self.cache is not None else {}
        todo = [(k, it) for k, it in zip(keys, items) if k not in done]
        fresh: dict[str, Judgment] = {}
        if todo:
            try:
                if self.per_order:
                    got = await self._per_order(todo)
                else:
                    got = await asyncio.get_running_loop().run_in_executor(
                        self.pool, self.judge.judge, [it for _, it in todo])
                if len(got) != len(todo):
                    raise RuntimeError(f"judge returned {len(got)} judgments for {len(todo)} pairs")
            except Exception as err:  # a judge bug must not lose the batch: rows with errors
                got = [Judgment(item_id=it.id, judge=self.judge.name, error=f"judge failed: {err!r}")
                       for _, it in todo]
            fresh = {k: j for (k, _), j in zip(todo, got)}
            if self.cache is not None:
                self.cache.put_many((k, j) for k, j in fresh.items() if j.error is None)
        return {
            "key": keys,
            "judgment": [(done.get(k) or fresh[k]).model_dump_json() for k in keys],
            "from_cache": [k in done for k in keys],
        }


def label_pairs_with_stats(items: list[PairwiseItem], judge_cfg: JudgeConfig,
                           cache_path: str | os.PathLike | None = None,
                           concurrency: int | None = None,
                           batch_size: int | None = None) -> tuple[list[Judgment], PipelineStats]:
    """Judge every pair (cache first); returns judgments in input order and throughput stats."""
    t0 = time.monotonic()
    stats = PipelineStats(n_total=len(items))
    judge_cfg.preflight()  # a missing API key fails here, not in every actor
    spec = judge_cfg.cache_spec()
    keys = [pair_cache_key(spec, it) for it in items]
    from rayalign import cache as shared_cache

    # The cross-run cache (``rayalign.cache``) sits behind the run's own; both off when the
    # caller passes no cache path (a run that explicitly wants every answer fresh).
    shared = shared_cache.judgment_cache_path() if cache_path else None
    cache = open_judgment_cache(cache_path, shared)
    known: dict[str, Judgment] = cache.get_many(keys) if cache is not None else {}
    stats.n_cached = sum(1 for k in keys if k in known)

    todo_keys = list(dict.fromkeys(k for k in keys if k not in known))
    stats.n_duplicates = sum(1 for k in keys if k not in known) - len(todo_keys)
    stats.n_requested = len(todo_keys)
    if todo_keys:
        import ray

        from rayalign.ray_utils import init_ray

        init_ray()
        first = {}
        for k, it in zip(keys, items):
            first.setdefault(k, it)
        rows = [{"key": k, "item": first[k].model_dump_json()} for k in todo_keys]
        n_actors = max(1, min(concurrency or judge_cfg.concurrency, len(rows)))
        bs = batch_size or judge_cfg.actor_batch_size
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), n_actors * 8)))
        ds = ds.map_batches(
            JudgeActor,
            fn_constructor_kwargs={"judge_cfg_json": judge_cfg.model_dump_json(),
                                   "cache_path": str(cache_path) if cache_path else None,
                                   "shared_cache_path": str(shared) if shared else None},
            # Several blocks in flight per (async) actor: a block held up by one slow request
            # does not stop the actor from taking the next ones.
            compute=ray.data.ActorPoolStrategy(size=n_actors,
                                               max_tasks_in_flight_per_actor=CALLS_PER_ACTOR,
                                               max_concurrent_calls_per_actor=CALLS_PER_ACTOR),
            batch_size=bs,
            num_cpus=judge_cfg.actor_num_cpus(),
            num_gpus=judge_cfg.num_gpus or None,
        )
        out = ds.take_all()
        seen: dict[str, Judgment] = {}
        for row in out:
            k = row["key"]
            if k in seen:
                raise RuntimeError(f"labelling pipeline returned pair key {k[:12]} twice")
            seen[k] = Judgment.model_validate_json(row["judgment"])
        missing = [k for k in todo_keys if k not in seen]
        if missing:
            raise RuntimeError(f"labelling pipeline lost {len(missing)} of {len(todo_keys)} pairs "
                               f"(first key {missing[0][:12]})")
        known.update(seen)

    # Record which response was A, so a replay of these rows keeps its meaning in any order.
    judgments = [known[k].model_copy(update={"item_id": it.id, "shown_a": response_key(it.response_a)})
                 for k, it in zip(keys, items)]
    assert len(judgments) == len(items)
    stats.wall_s = time.monotonic() - t0
    stats.judge = _judge_name(judge_cfg, judgments)
    stats.simulated = judge_cfg.kind == "simulated" or any(j.simulated for j in judgments)
    for j in judgments:
        if j.error:
            stats.n_errors += 1
            kind = _error_kind(j.error)
            stats.errors_by_kind[kind] = stats.errors_by_kind.get(kind, 0) + 1
        else:
            stats.n_ok += 1
            stats.n_ties += j.label == "tie"
    stats.records_per_s = stats.n_requested / stats.wall_s if stats.wall_s > 0 else 0.0
    shared_cache.count("judgments", hits=stats.n_cached, misses=stats.n_requested)
    if shared:
        log.info("judgment cache %s: %d hits, %d misses", shared, stats.n_cached, stats.n_requested)
    if stats.n_errors and stats.n_ok == 0:
        raise JudgeFailed(f"the judge failed on all {stats.n_errors} pairs ({_why(judgments)}); "
                          "nothing was cached, fix the judge and rerun to label them")
    if stats.n_errors:
        log.warning("the judge failed on %d of %d pairs (%s); a rerun retries only those",
                    stats.n_errors, stats.n_total, _why(judgments))
    log.info("labelled %d pairs: %d from cache, %d judged, %d errors, %.1f pairs/s",
             stats.n_total, stats.n_cached, stats.n_requested, stats.n_errors, stats.records_per_s)
    return judgments, stats


def label_pairs(items: list[PairwiseItem], judge_cfg: JudgeConfig,
                cache_path: str | os.PathLike | None = None, concurrency: int | None = None,
                batch_size: int | None = None) -> list[Judgment]:
    """One Judgment per input pair, in input order (see ``label_pairs_with_stats``)."""
    return label_pairs_with_stats(items, judge_cfg, cache_path, concurrency, batch_size)[0]


# -- candidate generation -------------------------------------------------------------------
class Candidates(BaseModel):
    """The n sampled answers to one prompt (empty ``texts`` and ``error`` set on failure)."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: str
    prompt: str
    texts: list[str] = Field(default_factory=list)
    finish_reasons: list[str] = Field(default_factory=list)
    generator: str = ""
    error: str | None = None


class GenerateActor:
    """A Ray Data actor holding one engine; each row is one prompt, n samples per prompt."""

    def __init__(self, engine_cfg_json: str, n: int, system_prompt: str | None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.cfg = EngineConfig.model_validate_json(engine_cfg_json)
        self.engine = build_engine(self.cfg)
        self.n = n
        self.system_prompt = system_prompt

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        recs = [PromptRecord.model_validate_json(s) for s in batch["record"]]
        params = self.cfg.params.model_copy(update={"n": self.n})
        reqs = []
        for r in recs:
            msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
            msgs.append({"role": "user", "content": r.prompt})
            reqs.append(GenerationRequest(id=r.id, messages=msgs, params=params))
        try:
            results = self.engine.generate(reqs)
        except Exception as err:  # an engine bug still yields one row per prompt
            from rayalign.engines.base import GenerationResult

            results = [GenerationResult(id=r.id, error=f"engine failed: {err!r}") for r in reqs]
        by_id = {res.id: res for res in results}
        out = []
        for r in recs:
            res = by_id.get(r.id)
            out.append(Candidates(
                prompt_id=r.id, prompt=r.prompt, generator=self.engine.spec,
                texts=res.texts if res else [], finish_reasons=res.finish_reasons if res else [],
                error=(res.error if res else "engine returned no result")).model_dump_json())
        return {"prompt_id": [r.id for r in recs], "candidates": out}


def generate_candidates_with_stats(
        prompts: list[PromptRecord] | list[str], engine_cfg: EngineConfig, n: int = 1,
        concurrency: int = 1, batch_size: int = 16, system_prompt: str | None = None,
        num_cpus: float | None = None, num_gpus: float = 0) -> tuple[list[Candidates], PipelineStats]:
    """n candidates per prompt, in input order, with stats. Prompt ids must be unique."""
    import ray

    from rayalign.ray_utils import init_ray

    t0 = time.monotonic()
    recs = [p if isinstance(p, PromptRecord) else PromptRecord(prompt=p, id=f"p{i}")
            for i, p in enumerate(prompts)]
    recs = [r if r.id else r.model_copy(update={"id": f"p{i}"}) for i, r in enumerate(recs)]
    ids = [r.id for r in recs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"prompt ids must be unique; {dup!r} appears more than once")
    stats = PipelineStats(n_total=len(recs), n_requested=len(recs))
    if not recs:
        return [], stats
    init_ray()
    cpus = num_cpus if num_cpus is not None else (0.25 if engine_cfg.kind == "openai" else 1.0)
    ds = ray.data.from_items([{"record": r.model_dump_json()} for r in recs],
                             override_num_blocks=max(1, min(len(recs), concurrency * 4)))
    ds = ds.map_batches(
        GenerateActor,
        fn_constructor_kwargs={"engine_cfg_json": engine_cfg.model_dump_json(), "n": n,
                               "system_prompt": system_prompt},
        compute=ray.data.ActorPoolStrategy(size=max(1, min(concurrency, len(recs)))),
        batch_size=batch_size, num_cpus=cpus, num_gpus=num_gpus or None,
    )
    got = {row["prompt_id"]: Candidates.model_validate_json(row["candidates"]) for row in ds.take_all()}
    missing = [i for i in ids if i not in got]
    if missing:
        raise RuntimeError(f"generation pipeline lost {len(missing)} of {len(ids)} prompts (first {missing[0]!r})")
    out = [got[i] for i in ids]
    stats.wall_s = time.monotonic() - t0
    stats.n_errors = sum(1 for c in out if c.error)
    stats.n_ok = len(out) - stats.n_errors
    stats.records_per_s = len(out) / stats.wall_s if stats.wall_s > 0 else 0.0
    return out, stats


def generate_candidates(prompts: list[PromptRecord] | list[str], engine_cfg: EngineConfig,
                        n: int = 1, concurrency: int = 1, **kw: Any) -> list[Candidates]:
    """n candidate answers per prompt, in input order (see ``generate_candidates_with_stats``)."""
    return generate_candidates_with_stats(prompts, engine_cfg, n, concurrency, **kw)[0]
