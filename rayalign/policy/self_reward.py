"""Self-reward: the policy writes new prompts, answers them N times and judges its answers.

Three plain steps, each a function of plain data so the driver can persist between them:

1. ``synthesize_prompts`` — few-shot prompt generation (Self-Instruct style): each request
   shows k random seed tasks and asks for one new task; outputs are cleaned, filtered
   (length, leftovers of the template) and de-duplicated against the seeds and each other.
2. ``sample_candidates`` — N answers per prompt (default 4), sampled with temperature.
3. ``score_candidates`` + ``build_pairs`` — every answer scored with the 5-point additive
   rubric by a ``RubricScorer`` (the policy itself here; a teacher in ``teacher.py``), then
   best vs worst per prompt. A prompt whose answers all tie, or with fewer than two
   parseable scores, gives no pair: it is skipped and *counted*, never silently dropped.

Every engine used here is a ``rayalign.engines.base.Engine``; nothing depends on where the
model runs (local transformers, vLLM, an OpenAI-compatible endpoint).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

from rayalign.data.schema import PreferencePair, PromptRecord, stable_id
from rayalign.engines.base import Engine, GenerationRequest, SamplingParams
from rayalign.policy.align_config import SYNTHESIS_PARAMS
from rayalign.policy.prompts import (
    parse_synthesized_prompt, prompt_synthesis_messages, response_messages,
)

# --------------------------------------------------------------------------- prompts


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


@dataclass
class SynthesisStats:
    requested: int = 0
    generated: int = 0
    kept: int = 0
    errors: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    template_echo: int = 0
    duplicate_of_seed: int = 0
    duplicate: int = 0
    rounds: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


_ECHO = re.compile(r"example tasks|write one new task|output only the task", re.IGNORECASE)


def synthesize_prompts(engine: Engine, seed_prompts: Sequence[str], n_new: int, *,
                       n_shots: int = 4, params: SamplingParams | None = None,
                       min_chars: int = 12, max_chars: int = 400, dedup_threshold: float = 0.7,
                       max_rounds: int = 4, seed: int = 0, id_prefix: str = "syn",
                       ) -> tuple[list[PromptRecord], SynthesisStats]:
    """Generate up to ``n_new`` new prompts from few-shot seed examples.

    A candidate is kept when it is between ``min_chars`` and ``max_chars`` long, does not
    echo the instruction, and its word-set Jaccard similarity to every seed and every kept
    prompt is below ``dedup_threshold`` (Self-Instruct filters near-copies the same way,
    with ROUGE-L; a word-set overlap is O(words) per comparison and good enough here).
    Rounds of requests continue until enough prompts are kept or ``max_rounds`` is spent.
    """
    if not seed_prompts:
        raise ValueError("prompt synthesis needs at least one seed prompt")
    params = params or SYNTHESIS_PARAMS.model_copy()
    rng = random.Random(seed)
    stats = SynthesisStats()
    seed_sets = [_words(s) for s in seed_prompts]
    kept: list[PromptRecord] = []
    kept_sets: list[set[str]] = []
    for rnd in range(max_rounds):
        need = n_new - len(kept)
        if need <= 0:
            break
        stats.rounds += 1
        # Ask for a margin over what is missing: some outputs will be filtered out.
        reqs = []
        for i in range(need + max(1, need // 2)):
            shots = rng.sample(list(seed_prompts), min(n_shots, len(seed_prompts)))
            p = params.model_copy(update={"seed": (params.seed or 0) + 1000 * rnd + i})
            reqs.append(GenerationRequest(id=f"{id_prefix}-r{rnd}-{i}",
                                          messages=prompt_synthesis_messages(shots), params=p))
        stats.requested += len(reqs)
        for res in engine.generate(reqs):
            if res.error or not res.texts:
                stats.errors += 1
                continue
            stats.generated += 1
            text = parse_synthesized_prompt(res.texts[0])
            if not text:
                stats.empty += 1
            elif len(text) < min_chars:
                stats.too_short += 1
            elif len(text) > max_chars:
                stats.too_long += 1
            elif _ECHO.search(text):
                stats.template_echo += 1
            else:
                ws = _words(text)
                if any(_jaccard(ws, s) >= dedup_threshold for s in seed_sets):
                    stats.duplicate_of_seed += 1
                elif any(_jaccard(ws, s) >= dedup_threshold for s in kept_sets):
                    stats.duplicate += 1
                elif len(kept) < n_new:
                    kept.append(PromptRecord(id=stable_id(text), prompt=text, source="synthesized",
                                             meta={"request": res.id}))
                    kept_sets.append(ws)
    stats.kept = len(kept)
    return kept, stats


# --------------------------------------------------------------------------- candidates


@dataclass
class CandidateSet:
    """N answers of one model to one prompt (failed generations recorded, not dropped)."""

    prompt_id: str
    prompt: str
    texts: list[str]
    generator: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def sample_candidates(engine: Engine, prompts: Sequence[PromptRecord], n: int = 4, *,
                      params: SamplingParams | None = None, max_answer_chars: int | None = 256,
                      ) -> list[CandidateSet]:
    """``n`` sampled answers per prompt, one request each with ``params.n = n``.

    An engine that returns fewer than ``n`` texts is topped up with single-sample requests
    (different seeds) so every prompt ends with ``n`` answers or recorded errors.
    """
    params = (params or SamplingParams(max_tokens=128, temperature=0.8, top_p=0.95))
    base = params.model_copy(update={"n": n})
    reqs = [GenerationRequest(id=p.id, messages=response_messages(p.prompt, max_answer_chars),
                              params=base) for p in prompts]
    sets = []
    for p, res in zip(prompts, engine.generate(reqs)):
        cs = CandidateSet(prompt_id=p.id, prompt=p.prompt, texts=list(res.texts[:n]),
                          generator=getattr(engine, "spec", ""))
        if res.error:
            cs.errors.append(res.error)
        sets.append(cs)
    short = [(i, n - len(cs.texts)) for i, cs in enumerate(sets) if len(cs.texts) < n]
    if short:
        top = []
        for i, missing in short:
            for k in range(missing):
                seed = (params.seed or 0) + 7919 * (k + 1)
                top.append((i, GenerationRequest(
                    id=f"{sets[i].prompt_id}-top{k}",
                    messages=response_messages(sets[i].prompt, max_answer_chars),
                    params=params.model_copy(update={"n": 1, "seed": seed}))))
        for (i, _), res in zip(top, engine.generate([r for _, r in top])):
            if res.texts:
                sets[i].texts.append(res.texts[0])
            else:
                sets[i].errors.append(res.error or "no text")
    return sets


# --------------------------------------------------------------------------- judging


@dataclass
class Score:
    score: float | None
    rationale: str = ""
    raw: str = ""
    error: str | None = None


class RubricScorer:
    """Scores (prompt, response) pairs with the 5-point additive rubric through any Engine.

    A thin adapter over ``feedback.judges.RubricJudge`` (its prompt, parser and
    parse-retries): it only turns its ``Judgment`` rows into ``Score`` values, keeping every
    failure as ``score=None`` with the raw text so callers can count them.
    ``parse_retries`` defaults to 0: with greedy decoding a re-ask returns the same text.
    """

    def __init__(self, engine: Engine, params: SamplingParams | None = None, name: str = "",
                 parse_retries: int = 0):
        from rayalign.feedback.judges import RubricJudge

        self.engine = engine
        self.params = params or SamplingParams(max_tokens=160, temperature=0.0)
        self.judge = RubricJudge(engine, params=self.params, parse_retries=parse_retries,
                                 name=name or None)
        self.name = self.judge.name

    @classmethod
    def from_judge(cls, judge) -> "RubricScorer":
        """Wrap an existing rubric judge (e.g. ``feedback.config.build_judge`` of a config
        with ``template: additive_rubric``); anything with ``score(list[ScoreItem])`` works."""
        if not hasattr(judge, "score"):
            raise ValueError(f"judge {getattr(judge, 'name', judge)!r} cannot score single "
                             "responses: use a config with template additive_rubric")
        obj = cls.__new__(cls)
        obj.engine = getattr(judge, "engine", None)
        obj.params = getattr(judge, "params", None)
        obj.judge = judge
        obj.name = getattr(judge, "name", "judge")
        return obj

    def score(self, items: Sequence[tuple[str, str]]) -> list[Score]:
        from rayalign.feedback.judges import ScoreItem

        if not items:
            return []
        rows = self.judge.score([ScoreItem(id=f"s{i}", prompt=p, response=r)
                                 for i, (p, r) in enumerate(items)])
        return [Score(None if j.error else j.score_a, rationale=j.rationale, raw=j.raw,
                      error=j.error) for j in rows]


@dataclass
class JudgedSet:
    prompt_id: str
    prompt: str
    texts: list[str]
    scores: list[float | None]
    raws: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    judge: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def score_candidates(scorer: RubricScorer, sets: Sequence[CandidateSet]) -> list[JudgedSet]:
    """Score every candidate of every set in one batch through ``scorer``."""
    flat = [(s.prompt, t) for s in sets for t in s.texts]
    scores = scorer.score(flat)
    out, k = [], 0
    for s in sets:
        sc = scores[k:k + len(s.texts)]
        k += len(s.texts)
        out.append(JudgedSet(prompt_id=s.prompt_id, prompt=s.prompt, texts=list(s.texts),
                             scores=[x.score for x in sc], raws=[x.raw for x in sc],
                             errors=[x.error for x in sc], judge=scorer.name))
    return out


# --------------------------------------------------------------------------- pairs


@dataclass
class PairStats:
    prompts: int = 0
    pairs: int = 0
    skipped_tie: int = 0
    skipped_unparseable: int = 0
    skipped_identical: int = 0
    unparseable_scores: int = 0
    scores: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["scores"] = {str(k): v for k, v in sorted(self.scores.items())}
        return d


def build_pairs(judged: Sequence[JudgedSet], *, recipe: str = "self-reward",
                iteration: int = 0) -> tuple[list[PreferencePair], PairStats]:
    """Best vs worst answer per prompt.

    * answers with no parseable score are left out of the comparison (counted);
    * fewer than 2 scored answers -> no pair (``skipped_unparseable``);
    * best score == worst score -> no pair (``skipped_tie``): DPO cannot learn from it;
    * identical best and worst text -> no pair (``skipped_identical``).
    Among equal best (worst) scores the first answer is taken, so results are reproducible.
    """
    stats = PairStats()
    pairs = []
    for js in judged:
        stats.prompts += 1
        scored = [(i, s) for i, s in enumerate(js.scores) if s is not None]
        stats.unparseable_scores += len(js.scores) - len(scored)
        for _, s in scored:
            stats.scores[s] += 1
        if len(scored) < 2:
            stats.skipped_unparseable += 1
            continue
        hi = max(s for _, s in scored)
        lo = min(s for _, s in scored)
        if hi == lo:
            stats.skipped_tie += 1
            continue
        bi = next(i for i, s in scored if s == hi)
        wi = next(i for i, s in scored if s == lo)
        if js.texts[bi].strip() == js.texts[wi].strip():
            stats.skipped_identical += 1
            continue
        pairs.append(PreferencePair(
            prompt=js.prompt, chosen=js.texts[bi], rejected=js.texts[wi], source=recipe,
            meta={"prompt_id": js.prompt_id, "score_chosen": hi, "score_rejected": lo,
                  "judge": js.judge, "iteration": iteration, "n_candidates": len(js.texts)}))
    stats.pairs = len(pairs)
    return pairs, stats
