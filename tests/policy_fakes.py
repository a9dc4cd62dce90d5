"""Scripted engines and trainers for the policy / evaluation tests (no model, no network).

``ScriptedEngine`` answers by the kind of request it gets, recognised from the prompt text:

* prompt synthesis -> "Task: <a new task number k>" (some duplicates and junk on purpose);
* answer request  -> n answers; answer j of prompt p carries a marker "[s=...]" taken from
  ``answer_scores`` so the judge can be scripted;
* rubric judge    -> "... Score: n" read from the marker in the response, "no idea" for a
  marker "[s=x]" (unparseable), so tests decide exactly which scores a judge returns.

It counts every request it receives (``calls``), which is what the resume tests check.
"""

from __future__ import annotations

import re
from pathlib import Path

from rayalign.engines.base import GenerationRequest, GenerationResult

_TOPICS = ["Explain how tides work", "Write a haiku about winter mornings",
           "List three uses of baking soda", "Why do cats purr so often", "Describe a sunny beach day",
           "Give tips to learn the guitar", "Summarise the plot of Hamlet", "Compare trains and planes",
           "Suggest a name for a bakery", "What causes thunder during storms"]
_MARK = re.compile(r"\[s=([0-5x])\]")


class ScriptedEngine:
    def __init__(self, name: str = "scripted", answer_scores=None, synth=None, pairwise=None):
        self.name = name
        #: prompt text substring -> list of per-answer markers, default cycles "1234"
        self.answer_scores = answer_scores or {}
        self.synth = list(synth) if synth is not None else None
        #: pairwise judge script: callable(prompt_text) -> "A" | "B" | None
        self.pairwise = pairwise
        self.calls = 0
        self.by_kind: dict[str, int] = {}
        self._k = 0

    @property
    def spec(self) -> str:
        return f"fake:{self.name}"

    def _count(self, kind: str) -> None:
        self.calls += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            text = "\n".join(m["content"] for m in r.messages)
            if "Write ONE new task" in text:
                self._count("synth")
                if self.synth is not None:
                    t = self.synth.pop(0) if self.synth else ""
                else:
                    self._k += 1
                    w = _TOPICS[self._k % len(_TOPICS)]
                    t = f"Task: {w} ({self.name} round {self._k // len(_TOPICS)})"
                out.append(GenerationResult(id=r.id, texts=[t]))
            elif "<response>" in text:
                self._count("judge")
                m = _MARK.search(text.split("<response>", 1)[1])
                if m is None or m.group(1) == "x":
                    out.append(GenerationResult(id=r.id, texts=["I have no idea how to grade."]))
                else:
                    out.append(GenerationResult(id=r.id, texts=[f"Reasonable answer.\nScore: {m.group(1)}"]))
            elif "Response A" in text or "model_1" in text:
                self._count("pairwise")
                lab = self.pairwise(text) if self.pairwise else "A"
                out.append(GenerationResult(id=r.id, texts=[f"Rationale: ok\nPreference: Response {lab}"]))
            else:
                self._count("answer")
                marks = next((v for k, v in self.answer_scores.items() if k in text), "1234")
                texts = [f"{self.name} answer {j} [s={marks[j % len(marks)]}]" for j in range(r.params.n)]
                out.append(GenerationResult(id=r.id, texts=texts))
        return out


class CountingFactory:
    """An engine factory (driver hook) that hands out ScriptedEngines and counts requests."""

    def __init__(self, **kw):
        self.kw = kw
        self.engines: list[ScriptedEngine] = []

    def __call__(self, cfg) -> ScriptedEngine:
        e = ScriptedEngine(name=Path(str(cfg.model)).name, **self.kw)
        self.engines.append(e)
        return e

    @property
    def calls(self) -> int:
        return sum(e.calls for e in self.engines)


class FakeTrainer:
    """Stands in for run_sft / run_dpo: writes a marker checkpoint, can fail on demand."""

    def __init__(self, fail_on: set[str] | None = None):
        self.fail_on = set(fail_on or ())
        self.calls: list[tuple[str, int]] = []

    def __call__(self, records, model_path, output_dir, cfg) -> Path:
        out = Path(output_dir)
        self.calls.append((out.name, len(records)))
        if out.name in self.fail_on:
            self.fail_on.discard(out.name)
            raise RuntimeError(f"simulated crash while training {out.name}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "trained_from.txt").write_text(f"{model_path}\n{len(records)}\n")
        return out
