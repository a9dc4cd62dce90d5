"""The M1 -> M2 -> M3 loop (self-reward, teacher-reward, teacher-demo) as a Ray actor.

The driver only sequences and persists; every step is a function from ``self_reward``,
``teacher``, ``sft_data`` and the trainers. Layout of a run directory::

    sft/ift.jsonl, sft/eft.jsonl        seed data of M1
    models/M1, models/M2, ...           checkpoints (M1 = base model when SFT is off)
    it1/prompts.jsonl                   this iteration's prompts (+ synthesis stats)
    it1/candidates/part-00000.jsonl     student answers, written chunk by chunk
    it1/judgments/part-00000.jsonl      rubric scores (self or teacher), chunk by chunk
    it1/teacher/part-00000.jsonl        teacher answers (teacher-demo)
    it1/pairs.jsonl                     DPO pairs (+ counts of skipped prompts)
    eval/M2.json                        judge metrics of each model on held-out questions
    metrics.jsonl                       one row per finished step

A step is marked done in the manifest only after its files are written, and generation
steps persist each chunk, so a killed driver resumes at the last finished chunk or step and
never asks an engine again for what it already has.
"""

from __future__ import annotations

import gc
import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from rayalign.data.schema import PreferencePair, PromptRecord, stable_id
from rayalign.engines.base import Engine
from rayalign.engines.config import EngineConfig
from rayalign.evaluation.metrics import judge_metrics
from rayalign.models.registry import model_dir
from rayalign.policy.align_config import AlignConfig
from rayalign.policy.chat_format import chat_formatted_pairs, trl_examples
from rayalign.policy.self_reward import (
    CandidateSet, JudgedSet, RubricScorer, build_pairs, sample_candidates, score_candidates,
    synthesize_prompts,
)
from rayalign.policy.sft_data import load_ranked, prepare_data
from rayalign.policy.teacher import ReplayEngine, demo_pairs, teacher_answers
from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]
SFTFn = Callable[..., Path]
DPOFn = Callable[..., Path]

JOB = "align"


def default_engine_factory(cfg: EngineConfig) -> Engine:
    from rayalign.engines.factory import build_engine

    return build_engine(cfg)


def default_run_sft(examples, model_path, output_dir, cfg) -> Path:
    from rayalign.policy.sft import run_sft

    return run_sft(examples, model_path, output_dir, cfg)


def default_run_dpo(pairs, model_path, output_dir, cfg) -> Path:
    from rayalign.policy.dpo import run_dpo

    return run_dpo(pairs, model_path, output_dir, cfg)


class AlignLoop:
    """One align run. ``run()`` is idempotent: it does only the steps not yet done."""

    def __init__(self, cfg: AlignConfig | dict, run_dir: str | Path | None = None, *,
                 engine_factory: EngineFactory | None = None, run_sft: SFTFn | None = None,
                 run_dpo: DPOFn | None = None, resume: bool = True):
        self.cfg = cfg if isinstance(cfg, AlignConfig) else AlignConfig.model_validate(cfg)
        self.run = RunDir.create_or_open(run_dir or self.cfg.run_dir, JOB, self.cfg, resume=resume)
        self.engine_factory = engine_factory or default_engine_factory
        self.run_sft = run_sft or default_run_sft
        self.run_dpo = run_dpo or default_run_dpo
        self._engines: dict[str, Engine] = {}
        self._teacher: Engine | None = None
        self._data: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def _policy_engine(self, model_path: str) -> Engine:
        if model_path not in self._engines:
            self._release_engines()
            self._engines[model_path] = self.engine_factory(
                self.cfg.policy_engine.for_model(model_path))
        return self._engines[model_path]

    def _release_engines(self) -> None:
        """Free local model memory before loading another model or training."""
        self._engines.clear()
        gc.collect()

    def _teacher_engine(self) -> Engine:
        if self._teacher is None:
            t = self.cfg.teacher
            assert t is not None
            if t.kind == "replay":
                rows = load_ranked(t.replay_path)
                best: dict[str, tuple[float, str]] = {}
                for r in rows:
                    if r.prompt not in best or r.rank < best[r.prompt][0]:
                        best[r.prompt] = (r.rank, r.response)
                self._teacher = ReplayEngine({q: a for q, (_, a) in best.items()},
                                             name="oasst-best-human-answer")
            else:
                ecfg = t.engine
                assert ecfg is not None
                if ecfg.kind in ("hf_local", "vllm"):  # "tiny", "smollm2", dirs -> local path
                    ecfg = ecfg.model_copy(update={"model": model_dir(ecfg.model)})
                self._teacher = self.engine_factory(ecfg)
        return self._teacher

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = prepare_data(self.cfg)
        return self._data

    def _chunked(self, folder: str, items: Sequence[Any], fn: Callable[[list], list],
                 chunk: int) -> list[dict]:
        """Run ``fn`` over ``items`` chunk by chunk, persisting each chunk; existing chunks
        are read back instead of recomputed (resume inside a long generation step)."""
        out: list[dict] = []
        for k in range(0, max(len(items), 1), chunk):
            part = self.run.file(folder, f"part-{k // chunk:05d}.jsonl")
            if part.exists():
                out += read_jsonl(part)
                continue
            rows = [r.as_dict() if hasattr(r, "as_dict") else r for r in fn(list(items[k:k + chunk]))]
            write_jsonl(part, rows)
            out += rows
        return out

    # ------------------------------------------------------------------ steps
    def step_sft(self) -> str:
        base = model_dir(self.cfg.model)
        if not (self.cfg.sft.enabled or self.cfg.recipe == "sft"):
            return base
        if self.run.is_done("sft"):
            return self.run.step_info("sft")["checkpoint"]
        d = self.data()
        write_jsonl(self.run.file("sft", "ift.jsonl"), d["ift"])
        write_jsonl(self.run.file("sft", "eft.jsonl"), d["eft"])
        self._release_engines()
        ckpt = self.run_sft(trl_examples(d["ift"] + d["eft"], base), base, self.run.sub("models", "M1"),
                            self.cfg.sft.train)
        self.run.mark_done("sft", checkpoint=str(ckpt), n_ift=len(d["ift"]), n_eft=len(d["eft"]))
        self.run.log_metrics(step="sft", n_ift=len(d["ift"]), n_eft=len(d["eft"]))
        return str(ckpt)

    def step_prompts(self, t: int, policy: str) -> list[PromptRecord]:
        step = f"it{t}.prompts"
        path = self.run.file(f"it{t}", "prompts.jsonl")
        if self.run.is_done(step):
            return [PromptRecord.model_validate(r) for r in read_jsonl(path)]
        pc, d = self.cfg.prompts, self.data()
        stats: dict[str, Any] = {"source": pc.source}
        rng = random.Random(self.cfg.seed * 1000 + t)
        if pc.source == "synthesize":
            seeds = rng.sample(d["seed_prompts"], min(pc.seed_pool, len(d["seed_prompts"])))
            prompts, st = synthesize_prompts(
                self._policy_engine(policy), seeds, pc.n_prompts, n_shots=pc.n_shots,
                params=pc.params, min_chars=pc.min_chars, max_chars=pc.max_chars,
                dedup_threshold=pc.dedup_threshold, max_rounds=pc.max_rounds,
                seed=self.cfg.seed * 1000 + t, id_prefix=f"it{t}")
            stats.update(st.as_dict())
        else:
            if pc.source == "oasst":
                pool = d["prompt_pool"]
            else:
                if not pc.path:
                    raise ValueError("prompts.source 'file' needs prompts.path")
                pool = []
                for i, r in enumerate(read_jsonl(Path(pc.path))):
                    if not isinstance(r, dict) or not isinstance(r.get("prompt"), str) \
                            or not r["prompt"].strip():
                        raise ValueError(f"file {pc.path}, row {i}, field 'prompt': "
                                         "must be a non-empty string")
                    pool.append(r["prompt"])
            # Each iteration draws fresh prompts (no prompt is trained on twice).
            order = list(pool)
            random.Random(self.cfg.seed).shuffle(order)
            picked = order[(t - 1) * pc.n_prompts: t * pc.n_prompts]
            if not picked:
                raise ValueError(f"prompt pool exhausted at iteration {t} ({len(pool)} prompts)")
            prompts = [PromptRecord(id=stable_id(p), prompt=p, source=pc.source) for p in picked]
            stats.update(kept=len(prompts), pool=len(pool))
        write_jsonl(path, prompts)
        self.run.mark_done(step, **stats)
        self.run.log_metrics(step=step, iteration=t, **stats)
        return prompts

    def step_candidates(self, t: int, policy: str, prompts: list[PromptRecord]) -> list[CandidateSet]:
        step = f"it{t}.candidates"
        n = 1 if self.cfg.recipe == "teacher-demo" else self.cfg.n_candidates
        if not self.run.is_done(step):
            if self.cfg.fanout.enabled:
                gen = lambda ps: self._fanout_candidates(policy, ps, n)  # noqa: E731
                chunk = self.cfg.fanout.batch_size * self.cfg.fanout.concurrency * 4
            else:
                gen = lambda ps: sample_candidates(  # noqa: E731
                    self._policy_engine(policy), ps, n, params=self.cfg.generation,
                    max_answer_chars=self.cfg.max_answer_chars)
                chunk = self.cfg.policy_engine.batch_size * 4
            rows = self._chunked(f"it{t}/candidates", prompts, gen, chunk)
            n_err = sum(len(r["errors"]) for r in rows)
            self.run.mark_done(step, prompts=len(rows), candidates=n, errors=n_err)
            self.run.log_metrics(step=step, iteration=t, prompts=len(rows), errors=n_err)
        return [CandidateSet(**r) for p in sorted(self.run.sub(f"it{t}", "candidates").glob("part-*.jsonl"))
                for r in read_jsonl(p)]

    def _fanout_candidates(self, policy: str, prompts: list[PromptRecord], n: int) -> list[CandidateSet]:
        """Candidates through the Ray Data fan-out (engines built inside its actors)."""
        from rayalign.feedback.pipeline import generate_candidates
        from rayalign.policy.prompts import response_messages

        self._release_engines()
        fo = self.cfg.fanout
        wrapped = [p.model_copy(update={"prompt": response_messages(
            p.prompt, self.cfg.max_answer_chars)[0]["content"]}) for p in prompts]
        ecfg = self.cfg.policy_engine.for_model(policy).model_copy(update={"params": self.cfg.generation})
        got = generate_candidates(wrapped, ecfg, n=n, concurrency=fo.concurrency,
                                  batch_size=fo.batch_size, num_gpus=fo.num_gpus)
        return [CandidateSet(prompt_id=p.id, prompt=p.prompt, texts=list(c.texts[:n]),
                             generator=c.generator, errors=[c.error] if c.error else [])
                for p, c in zip(prompts, got)]

    def step_judge(self, t: int, policy: str, sets: list[CandidateSet]) -> list[JudgedSet]:
        step = f"it{t}.judgments"
        if not self.run.is_done(step):
            if self.cfg.recipe == "self-reward":
                scorer = RubricScorer(self._policy_engine(policy), params=self.cfg.judge,
                                      name=f"self:M{t}")
            else:
                scorer = RubricScorer(self._teacher_engine(), params=self.cfg.judge)
            rows = self._chunked(f"it{t}/judgments", sets, lambda ss: score_candidates(scorer, ss),
                                 self.cfg.policy_engine.batch_size * 2)
            self.run.mark_done(step, prompts=len(rows), judge=scorer.name)
        return [JudgedSet(**r) for p in sorted(self.run.sub(f"it{t}", "judgments").glob("part-*.jsonl"))
                for r in read_jsonl(p)]

    def step_teacher(self, t: int, prompts: list[PromptRecord]) -> list[CandidateSet]:
        step = f"it{t}.teacher"
        if not self.run.is_done(step):
            eng = self._teacher_engine()
            rows = self._chunked(f"it{t}/teacher", prompts, lambda ps: teacher_answers(
                eng, ps, params=self.cfg.teacher_generation,
                max_answer_chars=self.cfg.max_answer_chars), 32)
            self.run.mark_done(step, prompts=len(rows), teacher=getattr(eng, "spec", ""))
        return [CandidateSet(**r) for p in sorted(self.run.sub(f"it{t}", "teacher").glob("part-*.jsonl"))
                for r in read_jsonl(p)]

    def step_pairs(self, t: int, policy: str, prompts: list[PromptRecord]) -> list[PreferencePair]:
        step = f"it{t}.pairs"
        path = self.run.file(f"it{t}", "pairs.jsonl")
        if self.run.is_done(step):
            return [PreferencePair.model_validate(r) for r in read_jsonl(path)]
        sets = self.step_candidates(t, policy, prompts)
        if self.cfg.recipe == "teacher-demo":
            teacher = self.step_teacher(t, prompts)
            pairs, st = demo_pairs(teacher, sets, iteration=t)
            stats = st.as_dict()
        else:
            judged = self.step_judge(t, policy, sets)
            pairs, st = build_pairs(judged, recipe=self.cfg.recipe, iteration=t)
            stats = st.as_dict()
        write_jsonl(path, pairs)
        self.run.mark_done(step, **stats)
        self.run.log_metrics(step=step, iteration=t, recipe=self.cfg.recipe, **stats)
        return pairs

    def step_train(self, t: int, policy: str, pairs: list[PreferencePair]) -> str:
        step = f"it{t}.train"
        if self.run.is_done(step):
            return self.run.step_info(step)["checkpoint"]
        self._release_engines()
        if not pairs:
            log.warning("iteration %d produced no pairs: M%d = M%d (model unchanged)", t, t + 1, t)
            ckpt, note = policy, "no pairs: model unchanged"
        else:
            ckpt = str(self.run_dpo(chat_formatted_pairs(pairs, policy), policy,
                                    self.run.sub("models", f"M{t + 1}"), self.cfg.dpo))
            note = ""
        self.run.mark_done(step, checkpoint=ckpt, pairs=len(pairs), note=note)
        self.run.log_metrics(step=step, iteration=t, pairs=len(pairs), checkpoint=ckpt, note=note)
        return ckpt

    def step_eval(self, name: str, model_path: str) -> dict | None:
        """Judge metrics (Table 2) of ``model_path`` acting as its own 5-point judge."""
        step = f"eval.{name}"
        if self.cfg.eval.rm_groups == 0 or not self.cfg.eval.per_iteration:
            return None
        if self.run.is_done(step):
            return self.run.step_info(step)
        groups = self.data()["eval_groups"]
        scorer = RubricScorer(self._policy_engine(model_path), params=self.cfg.judge, name=f"self:{name}")
        metrics = judge_metrics(scorer, groups)
        atomic_write_json(self.run.file("eval", f"{name}.json"), metrics)
        self.run.mark_done(step, **metrics)
        self.run.log_metrics(step=step, model=name, **metrics)
        return metrics

    # ------------------------------------------------------------------ loop
    def run_all(self) -> dict:
        summary: dict[str, Any] = {"run_dir": str(self.run.path), "recipe": self.cfg.recipe,
                                   "models": {}}
        policy = self.step_sft()
        summary["models"]["M1"] = policy
        self.step_eval("M1", policy)
        if self.cfg.recipe != "sft":
            for t in range(1, self.cfg.iterations + 1):
                prompts = self.step_prompts(t, policy)
                pairs = self.step_pairs(t, policy, prompts)
                policy = self.step_train(t, policy, pairs)
                summary["models"][f"M{t + 1}"] = policy
                self.step_eval(f"M{t + 1}", policy)
        self._release_engines()
        summary["steps"] = sorted(self.run.manifest().get("steps", {}))
        self.run.finish(models=summary["models"])
        atomic_write_json(self.run.file("summary.json"), summary)
        return summary


def run_align(cfg: AlignConfig, run_dir: str | Path | None = None, *, use_actor: bool = True,
              resume: bool = True, **hooks: Any) -> dict:
    """Run (or resume) an align loop; as a Ray actor by default, so the same call drives a
    cluster: the actor takes no CPU itself (its trainers and engines ask for their own)."""
    if not use_actor:
        return AlignLoop(cfg, run_dir, resume=resume, **hooks).run_all()
    import ray

    from rayalign.ray_utils import init_ray

    init_ray(cfg.ray)
    Actor = ray.remote(num_cpus=0, max_restarts=0)(AlignLoop)
    actor = Actor.remote(cfg, str(run_dir) if run_dir else None, resume=resume, **hooks)
    try:
        return ray.get(actor.run_all.remote())
    finally:
        ray.kill(actor)
