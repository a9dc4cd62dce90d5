"""Constitutional AI: SL-CAI (answer -> critique -> revision, k rounds) and RL-CAI preferences.

Steps, each persisted in the run directory before it is marked done (chunk by chunk inside
a generation step), so a killed run resumes at the last finished chunk and never asks an
engine again for what it already has::

    prompts.jsonl                         the red-team prompts of the run
    sl/answers/part-*.jsonl               the policy's first answers
    sl/round1/critiques/part-*.jsonl      critique of the current answer, with the principle id
    sl/round1/revisions/part-*.jsonl      the revision that critique asked for
    ... round2 ... roundk
    sl/records.jsonl                      per prompt: answer, every critique/revision + principle
    sl_cai_sft.jsonl                      TRL prompt/completion rows (final revisions): `rayalign sft`
    models/sl-cai/model                   (optional) the SL-CAI model trained on them
    pref/samples/part-*.jsonl             (source: samples) two answers per prompt
    pref/judgments/part-*.jsonl           the feedback model's verdict per pair and order
    preferences.jsonl                     PreferencePair rows: `rayalign rm train`, `dpo`, `rlthf`

Principles are drawn per (prompt, round) from a seeded RNG keyed by content (not call order),
so a resumed or re-chunked run draws the same ones; each record names the principle used.

Preference labels (soft from option log-probs, hard from parsed answers, both orders): see
``rayalign.policy.cai_labels``.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rayalign.data.schema import PromptRecord, stable_id
from rayalign.engines.base import Engine, GenerationRequest, Message, SamplingParams
from rayalign.engines.config import EngineConfig
from rayalign.engines.factory import build_engine
from rayalign.models.registry import model_dir
from rayalign.policy.cai_config import CAIConfig
from rayalign.policy.cai_labels import build_preferences, judge_chunk, label_kind
from rayalign.policy.cai_prompts import (
    answer_messages, clean_output, critique_messages, revision_messages,
)
from rayalign.policy.cai_records import CAIRecord, load_red_team_prompts, record_from_dict
from rayalign.policy.principles import Constitution, load_constitution
from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

JOB = "cai"
EngineFactory = Callable[[EngineConfig], Engine]
SFTFn = Callable[..., Path]


# --------------------------------------------------------------------------- generation
class TextStage:
    """Runs one batch of single-message requests through the in-process engine or the
    project's Ray Data generation fan-out (``feedback.pipeline.generate_candidates``)."""

    def __init__(self, loop: "CAILoop"):
        self.loop = loop

    def __call__(self, items: Sequence[tuple[str, list[Message]]], params: SamplingParams,
                 model: str) -> list[tuple[list[str], str | None]]:
        cfg = self.loop.cfg
        if cfg.fanout.enabled and all(len(m) == 1 for _, m in items):
            from rayalign.feedback.pipeline import generate_candidates

            self.loop.release_engines()
            fo = cfg.fanout
            ecfg = cfg.policy_engine.for_model(model).model_copy(update={"params": params})
            got = generate_candidates([PromptRecord(id=i, prompt=m[0]["content"]) for i, m in items],
                                      ecfg, n=params.n, concurrency=fo.concurrency,
                                      batch_size=fo.batch_size, num_gpus=fo.num_gpus)
            return [(list(c.texts), c.error) for c in got]
        eng = self.loop.engine(model)
        res = eng.generate([GenerationRequest(id=i, messages=m, params=params) for i, m in items])
        return [(list(r.texts), r.error) for r in res]


class _Progress:
    """A rich progress bar on a terminal, one log line per chunk otherwise."""

    def __init__(self, label: str, total: int):
        from rayalign.output import console, is_terminal

        self.label, self.total, self.done = label, total, 0
        self._bar = None
        if is_terminal():
            from rich.progress import Progress

            self._bar = Progress(console=console(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        else:
            log.info("cai %s: %d/%d", self.label, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- the loop
class CAILoop:
    """One CAI run. ``run()`` is idempotent: it does only the steps not yet done."""

    def __init__(self, cfg: CAIConfig | dict, run_dir: str | Path | None = None, *,
                 engine_factory: EngineFactory | None = None, run_sft: SFTFn | None = None,
                 resume: bool = True, chunk_size: int | None = None):
        self.cfg = cfg if isinstance(cfg, CAIConfig) else CAIConfig.model_validate(cfg)
        self.constitution: Constitution = load_constitution(self.cfg.constitution)
        self.run = RunDir.create_or_open(run_dir or self.cfg.run_dir, JOB, self.cfg, resume=resume)
        self._check_constitution()
        self.engine_factory = engine_factory or build_engine
        self.run_sft = run_sft or _default_run_sft
        self.chunk_size = chunk_size or (self.cfg.fanout.batch_size * self.cfg.fanout.concurrency * 4
                                         if self.cfg.fanout.enabled else self.cfg.policy_engine.batch_size * 2)
        self._engines: dict[str, Engine] = {}
        self.text = TextStage(self)
        self.timings: dict[str, float] = {}

    def _check_constitution(self) -> None:
        """The config names the principles file, not its text: an edited file would silently
        mix two constitutions in one run, so its content hash is recorded and checked."""
        digest = stable_id(self.constitution.model_dump_json(exclude={"source"}))
        old = self.run.manifest().get("constitution_sha")
        if old and old != digest and self.run.manifest().get("steps"):
            raise ValueError(f"{self.constitution.source} changed since {self.run.path} was started "
                             "(its principles differ); start a new run (--new / another --run-dir)")
        if old != digest:
            self.run.update_manifest(constitution_sha=digest)

    # ------------------------------------------------------------------ engines
    def engine(self, model: str) -> Engine:
        """The policy engine for ``model`` (one local model in memory at a time)."""
        key = f"policy:{model}"
        if key not in self._engines:
            self.release_engines()
            self._engines[key] = self.engine_factory(self.cfg.policy_engine.for_model(model))
        return self._engines[key]

    def judge_engine(self) -> Engine:
        jc = self.cfg.preference.judge
        if jc.engine is None:
            return self.engine(self.cfg.model)
        key = f"judge:{jc.engine.spec()}"
        if key not in self._engines:
            self.release_engines()
            self._engines[key] = self.engine_factory(jc.engine)
        return self._engines[key]

    def release_engines(self) -> None:
        """Free local model memory before loading another model, training or a fan-out."""
        for e in self._engines.values():
            close = getattr(e, "close", None)
            if callable(close):
                close()
        self._engines.clear()
        gc.collect()

    # ------------------------------------------------------------------ persistence
    def _chunked(self, folder: str, items: Sequence[Any], fn: Callable[[list], list[dict]]) -> list[dict]:
        """``fn`` over ``items`` chunk by chunk, each chunk persisted; existing chunks are
        read back instead of recomputed (resume inside a long step)."""
        out: list[dict] = []
        chunk = self.chunk_size
        bar = _Progress(folder, len(items))
        try:
            for k in range(0, len(items), chunk):
                part = self.run.file(folder, f"part-{k // chunk:05d}.jsonl")
                if part.exists():
                    rows = read_jsonl(part)
                else:
                    rows = fn(list(items[k:k + chunk]))
                    write_jsonl(part, rows)
                out.extend(rows)
                bar.advance(len(rows))
        finally:
            bar.close()
        return out

    def _step(self, step: str, fn: Callable[[], Any]) -> None:
        if self.run.is_done(step):
            return
        t0 = time.monotonic()
        info = fn() or {}
        wall = round(time.monotonic() - t0, 2)
        self.timings[step] = wall
        self.run.mark_done(step, wall_s=wall, **info)
        self.run.log_metrics(step=step, wall_s=wall, **info)

    # ------------------------------------------------------------------ SL-CAI
    def prompts(self) -> list[PromptRecord]:
        path = self.run.file("prompts.jsonl")
        if not self.run.is_done("prompts"):
            pc = self.cfg.prompts
            ps = load_red_team_prompts(pc.source, pc.n_prompts, pc.offset, pc.max_chars)
            write_jsonl(path, ps)
            self.run.mark_done("prompts", n=len(ps), source=pc.source)
        return [PromptRecord(**r) for r in read_jsonl(path)]

    def _gen_rows(self, items: list[tuple[str, list[Message], dict]], params: SamplingParams,
                  model: str) -> list[dict]:
        got = self.text([(i, m) for i, m, _ in items], params, model)
        rows = []
        for (i, _, extra), (texts, err) in zip(items, got):
            text = clean_output(texts[0]) if texts else ""
            rows.append({"id": i, **extra, "text": text,
                         "error": err or (None if text else "empty output")})
        return rows

    def sl_cai(self) -> list[CAIRecord]:
        """Answers, then ``revisions`` rounds of critique -> revision; the assembled records."""
        cfg, model = self.cfg, self.cfg.model
        prompts = self.prompts()
        if not self.run.is_done("sl.records"):
            by_id = {p.id: p for p in prompts}

            def answers(ps: list[PromptRecord]) -> list[dict]:
                return self._gen_rows([(p.id, answer_messages(p.prompt, cfg.max_answer_chars), {})
                                       for p in ps], cfg.answer, model)

            rows = self._rows_step("sl.answers", "sl/answers", prompts, answers)
            recs = {r["id"]: CAIRecord(prompt_id=r["id"], prompt=by_id[r["id"]].prompt,
                                       answer=r["text"], errors=[r["error"]] if r["error"] else [])
                    for r in rows}
            for k in range(1, cfg.revisions + 1):
                self._round(k, [recs[p.id] for p in prompts])
            records = [recs[p.id] for p in prompts]
            write_jsonl(self.run.file("sl", "records.jsonl"), [r.as_dict() for r in records])
            sft_rows = self._sft_rows(records)
            write_jsonl(self.run.file("sl_cai_sft.jsonl"), sft_rows)
            revised = sum(1 for r in records if any(x.get("revision") for x in r.rounds))
            self.run.mark_done("sl.records", prompts=len(records), revised=revised,
                               sft_rows=len(sft_rows), constitution=self.constitution.name)
            self.run.log_metrics(step="sl.records", prompts=len(records), revised=revised)
        return [record_from_dict(r) for r in read_jsonl(self.run.file("sl", "records.jsonl"))]

    def _rows_step(self, step: str, folder: str, items: Sequence[Any],
                   fn: Callable[[list], list[dict]]) -> list[dict]:
        holder: dict[str, list[dict]] = {}

        def go() -> dict:
            holder["rows"] = self._chunked(folder, items, fn)
            return {"n": len(holder["rows"]), "errors": sum(1 for r in holder["rows"] if r.get("error"))}

        self._step(step, go)
        if "rows" not in holder:  # done earlier: read the persisted chunks back
            holder["rows"] = [r for p in sorted(self.run.sub(*folder.split("/")).glob("part-*.jsonl"))
                              for r in read_jsonl(p)]
        return holder["rows"]

    def _round(self, k: int, recs: list[CAIRecord]) -> None:
        cfg, model, seed = self.cfg, self.cfg.model, self.cfg.seed
        principle = {r.prompt_id: self.constitution.draw(seed, r.prompt_id, f"round{k}") for r in recs}
        # Only prompts with an answer to critique (a failed first answer stays failed).
        live = [r for r in recs if r.final]

        def critiques(rs: list[CAIRecord]) -> list[dict]:
            return self._gen_rows([(r.prompt_id, critique_messages(r.prompt, r.final, principle[r.prompt_id]),
                                    {"principle": principle[r.prompt_id].id}) for r in rs],
                                  cfg.critique, model)

        crit = {r["id"]: r for r in self._rows_step(f"sl.round{k}.critiques", f"sl/round{k}/critiques",
                                                    live, critiques)}

        def revisions(rs: list[CAIRecord]) -> list[dict]:
            return self._gen_rows([(r.prompt_id, revision_messages(
                r.prompt, r.final, crit[r.prompt_id]["text"], principle[r.prompt_id],
                cfg.max_answer_chars), {"principle": principle[r.prompt_id].id}) for r in rs],
                cfg.revision, model)

        todo = [r for r in live if crit[r.prompt_id]["text"]]
        rev = {r["id"]: r for r in self._rows_step(f"sl.round{k}.revisions", f"sl/round{k}/revisions",
                                                   todo, revisions)}
        for r in live:
            c, v = crit.get(r.prompt_id, {}), rev.get(r.prompt_id, {})
            r.rounds.append({"round": k, "principle": principle[r.prompt_id].id,
                             "critique": c.get("text", ""), "revision": v.get("text", ""),
                             "error": c.get("error") or v.get("error")
                             or (None if v else "no critique to revise from")})

    def _sft_rows(self, records: list[CAIRecord]) -> list[dict]:
        """TRL prompt/completion rows, the prompt in the policy's chat template (as the engine
        renders it when sampling), completion = the final revision."""
        from rayalign.policy.chat_format import trl_examples

        conv = [{"prompt": answer_messages(r.prompt, self.cfg.max_answer_chars),
                 "completion": [{"role": "assistant", "content": r.final}]}
                for r in records if any(x.get("revision") for x in r.rounds)]
        if not conv:
            return []
        return trl_examples(conv, model_dir(self.cfg.model))

    def sl_model(self) -> str | None:
        """Train the SL-CAI model on the revisions when ``sft.enabled``; its directory."""
        if not self.cfg.sft.enabled:
            return None
        if not self.run.is_done("sl.sft"):
            rows = read_jsonl(self.run.file("sl_cai_sft.jsonl"))
            if not rows:
                raise ValueError("SL-CAI: no revision succeeded, nothing to fine-tune on "
                                 f"(see {self.run.file('sl', 'records.jsonl')})")
            self.release_engines()
            t0 = time.monotonic()
            out = self.run_sft(rows, self.cfg.model, self.run.sub("models", "sl-cai"), self.cfg.sft.train,
                               ray_cfg=self.cfg.ray)
            self.run.mark_done("sl.sft", model_dir=str(out), examples=len(rows),
                               wall_s=round(time.monotonic() - t0, 2))
        return str(self.run.step_info("sl.sft")["model_dir"])

    # ------------------------------------------------------------------ RL-CAI preferences
    def candidate_pairs(self, records: list[CAIRecord], sl_model: str | None) -> list[dict]:
        """(prompt, first, second) per prompt: answer vs final revision, or two samples."""
        pc = self.cfg.preference
        if pc.source == "revision":
            return [{"id": r.prompt_id, "prompt": r.prompt, "first": r.answer, "second": r.final,
                     "kind": "answer-vs-revision"}
                    for r in records if r.answer and r.final and r.final.strip() != r.answer.strip()]
        model = pc.model or sl_model or self.cfg.model
        params = pc.params.model_copy(update={"n": 2})
        prompts = [PromptRecord(id=r.prompt_id, prompt=r.prompt) for r in records]

        def sample(ps: list[PromptRecord]) -> list[dict]:
            got = self.text([(p.id, answer_messages(p.prompt, self.cfg.max_answer_chars)) for p in ps],
                            params, model)
            return [{"id": p.id, "prompt": p.prompt, "texts": [clean_output(t) for t in texts],
                     "error": err, "model": model} for p, (texts, err) in zip(ps, got)]

        rows = self._rows_step("pref.samples", "pref/samples", prompts, sample)
        return [{"id": r["id"], "prompt": r["prompt"], "first": r["texts"][0], "second": r["texts"][1],
                 "kind": "samples"}
                for r in rows if len(r["texts"]) >= 2 and r["texts"][0] and r["texts"][1]
                and r["texts"][0].strip() != r["texts"][1].strip()]

    def judge_pairs(self, pairs: list[dict]) -> list[dict]:
        """One verdict row per (pair, order), persisted chunk by chunk (``cai_labels``)."""
        jc = self.cfg.preference.judge
        eng = self.judge_engine()
        kind = label_kind(jc.labels, eng, jc.prefill)
        orders = ("ab", "ba") if jc.both_orders else ("ab",)
        items = [(p, o) for p in pairs for o in orders]
        return self._rows_step("pref.judgments", "pref/judgments", items, lambda chunk: judge_chunk(
            eng, kind, chunk, jc, self.constitution, self.cfg.seed))

    def judge_engine_spec(self) -> str:
        jc = self.cfg.preference.judge
        return jc.engine.spec() if jc.engine is not None else self.cfg.policy_engine.for_model(self.cfg.model).spec()

    # ------------------------------------------------------------------ run
    def run_all(self) -> dict[str, Any]:
        t0 = time.monotonic()
        records = self.sl_cai()
        sl_model = self.sl_model()
        summary: dict[str, Any] = {
            "run_dir": str(self.run.path), "constitution": self.constitution.source,
            "prompts": len(records),
            "revised": sum(1 for r in records if any(x.get("revision") for x in r.rounds)),
            "sft_file": str(self.run.file("sl_cai_sft.jsonl")), "sl_model": sl_model,
        }
        if self.cfg.preference.enabled:
            if not self.run.is_done("pref.pairs"):
                pairs = self.candidate_pairs(records, sl_model)
                verdicts = self.judge_pairs(pairs)
                prefs, stats = build_preferences(pairs, verdicts, self.cfg.preference.judge.both_orders,
                                                 self.judge_engine_spec())
                write_jsonl(self.run.file("preferences.jsonl"), prefs)
                self.run.mark_done("pref.pairs", **stats)
                self.run.log_metrics(step="pref.pairs", **stats)
            summary["preferences"] = str(self.run.file("preferences.jsonl"))
            summary.update({k: v for k, v in (self.run.step_info("pref.pairs") or {}).items()
                            if k in ("pairs", "kept", "ties", "failed")})
        self.release_engines()
        summary["wall_s"] = round(time.monotonic() - t0, 2)
        atomic_write_json(self.run.file("summary.json"), summary)
        self.run.finish()
        return summary


def _default_run_sft(examples, model_path, output_dir, cfg, ray_cfg=None) -> Path:
    from rayalign.policy.sft import run_sft

    return run_sft(examples, model_path, output_dir, cfg, ray_cfg=ray_cfg)


def run_cai(cfg: CAIConfig, run_dir: str | Path | None = None, *, resume: bool = True,
            **kw: Any) -> dict[str, Any]:
    """Run (or resume) a CAI job; the summary dict (also written to ``summary.json``)."""
    return CAILoop(cfg, run_dir, resume=resume, **kw).run_all()
