"""LLM judges: turn an engine's text into ``Judgment`` rows, one per input, never fewer.

* ``PairwiseJudge`` asks "A or B?" with a pairwise template. With ``both_orders`` it asks a
  second time with the responses swapped and keeps the label only when both answers agree;
  a disagreement is a position-biased (or unsure) verdict and becomes ``"tie"``.
  ``score_a``/``score_b`` hold the share of orders that preferred each response.
* ``RubricJudge`` scores single responses 0-5 with the additive rubric (self-reward,
  teacher reward); on pairs it scores both and prefers the higher (equal = tie).

A reply the parser cannot read is re-asked up to ``parse_retries`` times; after that the
row carries ``error`` and the raw text. A request the engine could not complete (after its
own retries) is a row with ``error`` too. Nothing raises for a bad record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from rayalign.data.schema import (TIE, Judgment, OrderVerdict, PairwiseItem, order_consensus, other_label,
                                  response_key)
from rayalign.engines.base import Engine, GenerationRequest, SamplingParams
from rayalign.feedback.cache import cache_key
from rayalign.feedback.parsers import PairVerdict, ParseError, ScoreVerdict
from rayalign.feedback.templates import (
    ADDITIVE_RUBRIC, RLTHF_PAIRWISE, JudgeTemplate, Messages, PromptOptions,
)

#: Judges answer briefly and deterministically unless a config says otherwise.
DEFAULT_JUDGE_PARAMS = SamplingParams(max_tokens=256, temperature=0.0)
SWAP_SEPARATOR = "\n----- responses swapped -----\n"


class ScoreItem(BaseModel):
    """One response to grade on its own (rubric judges)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str
    response: str


@runtime_checkable
class Judge(Protocol):
    """What the labelling pipeline needs from any judge (LLM, simulated, replay)."""

    #: Shown in every Judgment row ("simulated..." for simulations).
    name: str
    #: Identity for the cache: everything that changes verdicts, nothing operational.
    spec: str

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]: ...


def pair_cache_key(spec: str, item: PairwiseItem) -> str:
    """The cache key of a pair under a judge: its content, not its id (same text, same verdict)."""
    return cache_key(spec, item.prompt, item.response_a, item.response_b)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """What one request gave: a parsed verdict, or an error (with the raw text if any)."""

    verdict: PairVerdict | ScoreVerdict | None = None
    raw: str = ""
    error: str | None = None

    def to_json(self) -> str:
        """Only successful pairwise outcomes are cached; this is their stored form."""
        assert isinstance(self.verdict, PairVerdict) and self.error is None
        return json.dumps({"label": self.verdict.label, "rationale": self.verdict.rationale,
                           "raw": self.raw})

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        d = json.loads(text)
        return cls(verdict=PairVerdict(label=d["label"], rationale=d.get("rationale", "")),
                   raw=d.get("raw", ""))


_Outcome = Outcome  # the name the rest of this module grew up with


def request_cache_key(pair_key: str, order: str) -> str:
    """Cache key of one (pair, order) request: a failed order never re-pays the other one."""
    return cache_key(pair_key, "order", order)


def _ask(engine: Engine, template: JudgeTemplate, prompts: dict[str, Messages],
         params: SamplingParams, parse_retries: int) -> dict[str, _Outcome]:
    """Send every prompt; re-ask the ones whose answer does not parse; never raise."""
    out: dict[str, _Outcome] = {}
    pending = list(prompts)
    for attempt in range(parse_retries + 1):
        if not pending:
            break
        p = params if params.seed is None else params.model_copy(update={"seed": params.seed + attempt})
        results = engine.generate([GenerationRequest(id=rid, messages=prompts[rid], params=p)
                                   for rid in pending])
        by_id = {r.id: r for r in results}
        retry: list[str] = []
        for rid in pending:
            res = by_id.get(rid)
            if res is None:
                out[rid] = _Outcome(error="engine returned no result for this request")
                continue
            if res.error is not None or not res.texts:
                out[rid] = _Outcome(error=f"request failed: {res.error or 'no text returned'}")
                continue
            text = res.texts[0]
            last = prompts[rid][-1]
            if last["role"] == "assistant":  # a prefilled answer: the model continued it
                text = last["content"] + text
            truncated = bool(res.finish_reasons) and res.finish_reasons[0] == "length"
            try:
                out[rid] = _Outcome(verdict=template.parse(text, truncated=truncated), raw=text)
            except ParseError as err:
                out[rid] = _Outcome(raw=err.raw,
                                    error=f"parse error after {attempt + 1} attempt(s): {err}")
                retry.append(rid)
        pending = retry
    return out


class PairwiseJudge:
    def __init__(self, engine: Engine, template: JudgeTemplate = RLTHF_PAIRWISE,
                 both_orders: bool = True, options: PromptOptions | None = None,
                 params: SamplingParams | None = None, parse_retries: int = 2,
                 name: str | None = None, spec: str | None = None):
        if template.kind != "pairwise":
            raise ValueError(f"PairwiseJudge needs a pairwise template, got {template.name}")
        self.engine = engine
        self.template = template
        self.both_orders = both_orders
        self.options = options or PromptOptions()
        self.params = params or DEFAULT_JUDGE_PARAMS
        self.parse_retries = parse_retries
        self.name = name or f"{engine.spec}/{template.name}{'/both-orders' if both_orders else ''}"
        self.spec = spec or "|".join([
            "pairwise", engine.spec, template.ident, f"both={both_orders}",
            f"opts={_digest(self.options.model_dump())}", f"params={_digest(self.params.model_dump())}",
        ])

    def cache_key(self, item: PairwiseItem) -> str:
        return pair_cache_key(self.spec, item)

    # -- one request per (pair, order): the unit the pipeline caches and schedules ----------
    @property
    def orders(self) -> tuple[str, ...]:
        """The requests one pair costs: ``ab`` (as given), and ``ba`` (swapped) if both orders."""
        return ("ab", "ba") if self.both_orders else ("ab",)

    def _render(self, item: PairwiseItem, order: str) -> Messages:
        a, b = (item.response_a, item.response_b) if order == "ab" else (item.response_b, item.response_a)
        return self.template.render_pairwise(item.prompt, a, b, self.options)

    def ask(self, requests: list[tuple[PairwiseItem, str]]) -> list[Outcome]:
        """Send (pair, order) requests; one ``Outcome`` each, in order, never raising."""
        prompts = {f"{i}:{o}": self._render(it, o) for i, (it, o) in enumerate(requests)}
        got = _ask(self.engine, self.template, prompts, self.params, self.parse_retries)
        return [got[f"{i}:{o}"] for i, (_, o) in enumerate(requests)]

    def combine(self, item: PairwiseItem, outcomes: dict[str, Outcome]) -> Judgment:
        """The pair's judgment from its per-order outcomes (see ``orders``)."""
        return self._combine(item, outcomes["ab"], outcomes.get("ba") if self.both_orders else None)

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]:
        reqs = [(it, o) for it in items for o in self.orders]
        got = iter(self.ask(reqs))
        return [self.combine(it, {o: next(got) for o in self.orders}) for it in items]

    def _combine(self, item: PairwiseItem, ab: _Outcome, ba: _Outcome | None) -> Judgment:
        outcomes = [ab] + ([ba] if ba is not None else [])
        raw = SWAP_SEPARATOR.join(o.raw for o in outcomes)
        errors = [o.error for o in outcomes if o.error]
        if errors:
            return Judgment(item_id=item.id, judge=self.name, raw=raw, error="; ".join(errors))
        votes = [ab.verdict.label]  # type: ignore[union-attr]
        rationale = ab.verdict.rationale  # type: ignore[union-attr]
        if ba is not None:
            # In the swapped prompt "A" is our response_b: map it back.
            votes.append(other_label(ba.verdict.label))  # type: ignore[union-attr]
            if ba.verdict.rationale:  # type: ignore[union-attr]
                rationale = f"{rationale}{SWAP_SEPARATOR}{ba.verdict.rationale}"  # type: ignore[union-attr]
        # A disagreement between the orders is a position-biased guess: "tie", but each
        # order's verdict is kept, so RLTHF's error model sees the contradiction.
        keys = {"A": response_key(item.response_a), "B": response_key(item.response_b), "tie": TIE}
        shown = [keys["A"], keys["B"]][: len(votes)]
        return Judgment(item_id=item.id, judge=self.name, label=order_consensus(votes),
                        score_a=votes.count("A") / len(votes), score_b=votes.count("B") / len(votes),
                        rationale=rationale, raw=raw,
                        order_verdicts=[OrderVerdict(shown_first=f, winner=keys[v]) for f, v in zip(shown, votes)])


class RubricJudge:
    def __init__(self, engine: Engine, template: JudgeTemplate = ADDITIVE_RUBRIC,
                 params: SamplingParams | None = None, parse_retries: int = 2,
                 name: str | None = None, spec: str | None = None):
        if template.kind != "score":
            raise ValueError(f"RubricJudge needs a scoring template, got {template.name}")
        self.engine = engine
        self.template = template
        self.params = params or DEFAULT_JUDGE_PARAMS
        self.parse_retries = parse_retries
        self.name = name or f"{engine.spec}/{template.name}"
        self.spec = spec or "|".join(["rubric", engine.spec, template.ident,
                                      f"params={_digest(self.params.model_dump())}"])

    def cache_key(self, item: PairwiseItem | ScoreItem) -> str:
        if isinstance(item, ScoreItem):
            return cache_key(self.spec, "score", item.prompt, item.response)
        return pair_cache_key(self.spec, item)

    def score(self, items: list[ScoreItem]) -> list[Judgment]:
        """One Judgment per response: ``score_a`` is its 0-5 score (None on error)."""
        prompts = {f"{i}": self.template.render_score(it.prompt, it.response) for i, it in enumerate(items)}
        got = _ask(self.engine, self.template, prompts, self.params, self.parse_retries)
        out = []
        for i, it in enumerate(items):
            o = got[f"{i}"]
            if o.error:
                out.append(Judgment(item_id=it.id, judge=self.name, raw=o.raw, error=o.error))
            else:
                out.append(Judgment(item_id=it.id, judge=self.name, score_a=o.verdict.score,  # type: ignore[union-attr]
                                    rationale=o.verdict.rationale, raw=o.raw))  # type: ignore[union-attr]
        return out

    def judge(self, items: list[PairwiseItem]) -> list[Judgment]:
        """Score both responses of each pair; the higher score wins, equal scores tie."""
        flat: list[ScoreItem] = []
        for it in items:
            flat += [ScoreItem(id=f"{it.id}:a", prompt=it.prompt, response=it.response_a),
                     ScoreItem(id=f"{it.id}:b", prompt=it.prompt, response=it.response_b)]
        scored = self.score(flat)
        out = []
        for k, it in enumerate(items):
            ja, jb = scored[2 * k], scored[2 * k + 1]
            raw = SWAP_SEPARATOR.join([ja.raw, jb.raw])
            errors = [e for e in (ja.error, jb.error) if e]
            if errors:
                out.append(Judgment(item_id=it.id, judge=self.name, raw=raw, error="; ".join(errors)))
                continue
            sa, sb = ja.score_a, jb.score_a
            label = "A" if sa > sb else "B" if sb > sa else "tie"  # type: ignore[operator]
            out.append(Judgment(item_id=it.id, judge=self.name, label=label, score_a=sa, score_b=sb,
                                rationale=SWAP_SEPARATOR.join([ja.rationale, jb.rationale]), raw=raw))
        return out
