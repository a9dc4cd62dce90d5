"""The RLTHF loop: sequence the steps, persist every result, resume where it stopped.

``RLTHFLoop`` holds no algorithm of its own. Each step is a plain function elsewhere —
curve analysis (``curve``), one round's plan and its application (``rounds``), the
accounting (``accounting``), baselines (``baselines``), the final relabel (``final``),
the human ledger and wait (``humans.ledger``), AI labels (``labelling``), ground truth —
and the loop orders them, writes each step's outputs (``records``) into the run
directory before marking the step done, and on a rerun reloads finished steps instead of
redoing them: above all it never asks a judge or a human again for a label it already
has. ``rayalign rlthf run`` runs it as a Ray actor (``ray.remote``), so the loop can live
on a cluster's head node.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rayalign.data.schema import PairwiseItem
from rayalign.humans.base import HumanAnnotator
from rayalign.humans.ledger import HumanLabelsPending, HumanLedger, ask_humans
from rayalign.rewards.base import FitJob, fit_all, signed_margins
from rayalign.rewards.crossfit import cross_fit_plan
from rayalign.rlthf import accounting as acc
from rayalign.rlthf.baselines import ai_only_row, baseline_label_sets
from rayalign.rlthf.config import RLTHFConfig
from rayalign.rlthf.corpus import known_pair_ids, load_items
from rayalign.rlthf.curve import analyze_curve
from rayalign.rlthf.final import final_labels, final_summary, write_final
from rayalign.rlthf.ground_truth import GroundTruth, clean_ground_truth, load_ground_truth, save_ground_truth
from rayalign.rlthf.error_model import FEATURES, ErrorModel, feature_rows, fit_error_model
from rayalign.rlthf.labelling import collect_all_judges
from rayalign.rlthf.progress import format_baseline, format_iteration, pct
from rayalign.rlthf.records import (BaselineRow, CurveRecord, ErrorModelRecord, IterationRow, MarginRow,
                                    SelectionRecord, latest, read_metrics, read_record, write_record)
from rayalign.rlthf.rounds import LoopState, RoundPlan, apply_round, plan_error_round, plan_round, round_budget
from rayalign.rlthf.select import backoff_for_iteration, trusted_region
from rayalign.rlthf.signals import PairSignals, all_signals, signal_summary, starting_label
from rayalign.rlthf.targeting import rm_better_than_chance
from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

log = logging.getLogger("rayalign.rlthf")

__all__ = ["HumanLabelsPending", "LoopState", "RLTHFLoop", "load_items", "make_backend"]


def make_backend(cfg: RLTHFConfig, cache_dir: Path):
    from rayalign.rewards.factory import make_reward_backend

    return make_reward_backend(cfg.reward_model, cache_dir, cfg.ray)


class RLTHFLoop:
    """Runs one RLTHF job in ``run_path``; ``labeller``/``human`` may be injected (tests)."""

    def __init__(self, cfg: RLTHFConfig, run_path: str | Path, human: HumanAnnotator | None = None,
                 labeller_fn=None):
        self.cfg, self._human = cfg, human
        from rayalign import cache

        cache.activate(cfg.cache)  # before the backend and the judge look for the shared cache
        self.run = RunDir.create_or_open(run_path, job="rlthf", config=cfg, resume=True)
        self._labeller_fn = labeller_fn
        self.ledger = HumanLedger(self.run.file("humans", "labels.jsonl"))
        self._backend = None
        self.items: list[PairwiseItem] | None = None
        self.gt: GroundTruth | None = None

    # ------------------------------------------------------------------ setup steps
    @property
    def backend(self):
        """The RM backend, built on first use (ground-truth cleaning needs it before the loop)."""
        if self._backend is None:
            self._data()
            self._backend = make_backend(self.cfg, self.run.sub("cache"))
            self._backend.prepare(self.items)
        return self._backend

    def _data(self) -> None:
        if self.items is not None:
            return
        cfg, run = self.cfg, self.run
        path = run.file("data", "items.jsonl")
        if run.is_done("data"):
            self.items = [PairwiseItem.model_validate(r) for r in read_jsonl(path)]
        else:
            self.items, report = load_items(cfg)
            write_jsonl(path, self.items)
            atomic_write_json(run.file("data", "load_report.json"), report)
            run.mark_done("data", pairs=len(self.items))
        from rayalign.data.splits import shard, train_test_split

        self.by_id = {it.id: it for it in self.items}
        self.train_items, self.test_items = train_test_split(self.items, cfg.data.test_fraction, seed=cfg.seed)
        self.shard_items = shard(self.train_items, cfg.data.shards, cfg.data.shard_index, seed=cfg.seed)
        self.shard_ids = [it.id for it in self.shard_items]
        self.known_ids = known_pair_ids(self.items, run.file("data", "load_report.json"), cfg.data.limit)
        log.info("data: %d pairs (%d train, %d test); loop shard %d/%d = %d pairs", len(self.items),
                 len(self.train_items), len(self.test_items), cfg.data.shard_index + 1, cfg.data.shards,
                 len(self.shard_items))

    def prepare(self) -> GroundTruth | None:
        """Data and ground truth (idempotent): what a test needs before ``run_loop``."""
        self._data()
        if self.gt is not None:
            return self.gt
        cfg, path = self.cfg, self.run.file("data", "ground_truth.json")
        raw = {it.id: it.label for it in self.items if it.label in ("A", "B")}
        if self.run.is_done("ground_truth"):
            self.gt = load_ground_truth(path)
        elif len(raw) < len(self.items):
            log.warning("the data has no human labels for every pair: no accuracy metrics, no baselines")
        else:
            if cfg.ground_truth.mode == "cleaned":
                self.gt = clean_ground_truth(self.backend, self.items, raw, cfg.ground_truth.clean_fraction,
                                             cfg.ground_truth.folds, cfg.seed,
                                             scratch_dir=self.run.sub("scratch", "ground_truth"))
            else:
                self.gt = GroundTruth(labels=dict(raw), raw=dict(raw), mode="raw")
            save_ground_truth(path, self.gt)
            self.run.mark_done("ground_truth", tag=self.gt.tag, flipped=len(self.gt.flipped),
                               crossfit_raw_accuracy=self.gt.crossfit_raw_accuracy)
            log.info("ground truth: %s", self.gt.tag)
        return self.gt

    def _ai_labels(self) -> None:
        """The labeller's and every extra judge's verdicts (persisted, resumable), the per-pair
        signals built from them, and each pair's starting AI label."""
        cfg, truth = self.cfg, (self.gt.labels if self.gt else None)
        have, extras, asked = collect_all_judges(
            self.run.sub("data"), self.shard_items, cfg.labeller, truth, self.run.file("cache", "judgments.sqlite"),
            known_ids=self.known_ids, loop_started=self.run.is_done("iter_00"), labeller_fn=self._labeller_fn)
        self.judgments = have
        self.signals: dict[str, PairSignals] = all_signals(self.shard_items, have, extras)
        start = {i: starting_label(self.signals[i]) for i in self.shard_ids}
        self.ai_labels = {i: lab for i, (lab, _) in start.items() if lab is not None}
        self.ai_origins = {i: o for i, (lab, o) in start.items() if lab is not None}
        self.simulated_labeller = any(j.simulated for j in have.values())
        if asked or not self.run.is_done("ai_labels"):
            summary = signal_summary(self.signals)
            self.run.mark_done("ai_labels", labelled=len(self.ai_labels),
                               abstained=len(self.shard_ids) - len(self.ai_labels),
                               agreement=acc.accuracy(self.ai_labels, truth, list(self.ai_labels)) if truth else None,
                               signals=summary)
            log.info("AI labels: %d pairs; signals: %s", len(self.shard_ids),
                     ", ".join(f"{k} {v}" for k, v in summary.items() if k != "pairs"))

    def _initial_state(self) -> LoopState:
        """AI labels (the labeller's, else the extra judges'); pairs no judge could decide get the
        label of an RM trained on the rest. Iteration 0 trains on all of them: the AI-only row."""
        labels, origins = dict(self.ai_labels), dict(self.ai_origins)
        abstained = [i for i in self.shard_ids if i not in labels]
        if abstained:
            model = self._fit([(i, labels[i], 1.0) for i in self.shard_ids if i in labels],
                              self.run.sub("scratch", "abstained_rm"))
            for i, d in zip(abstained, self.backend.reward_diff(model, [self.by_id[i] for i in abstained])):
                labels[i], origins[i] = ("A" if d >= 0 else "B"), "rm"
        return LoopState(labels=labels, origins=origins, train=[(i, labels[i], 1.0) for i in self.shard_ids])

    def _annotator(self) -> HumanAnnotator:
        if self._human is None:
            from rayalign.humans.factory import make_annotator

            self._human = make_annotator(self.cfg.human, truth=self.gt.labels if self.gt else None,
                                         seed=self.cfg.seed, queue_path=self.run.file("humans", "queue.sqlite"))
        return self._human

    # ------------------------------------------------------------------ measuring
    def _fit(self, train: list[tuple[str, str, float]], out_dir: Path | None):
        return self.backend.fit([self.by_id[i] for i, _, _ in train], [lab for _, lab, _ in train],
                                [w for _, _, w in train], out_dir)

    def _fit_scored(self, train: list[tuple[str, str, float]], out_dir: Path,
                    scratch: Path) -> tuple[object, np.ndarray]:
        """The iteration's RM and r(A) − r(B) on the shard; with cross-fitting each pair is
        scored by an RM not trained on it (fold models under ``scratch``, which must be the
        iteration's own: a finished LoRA fold is reused as is), fitted together with the RM."""
        job = FitJob([self.by_id[i] for i, _, _ in train], [lab for _, lab, _ in train],
                     [w for _, _, w in train], out_dir)
        if self.cfg.effective_cross_fit_folds < 2:
            model = fit_all(self.backend, [job])[0]
            return model, self.backend.reward_diff(model, self.shard_items)
        plan = cross_fit_plan(job.items, job.labels, job.weights, folds=self.cfg.effective_cross_fit_folds,
                              seed=self.cfg.seed, score_items=self.shard_items,
                              scratch_dir=scratch)
        model, *fold_models = fit_all(self.backend, [job, *plan.jobs])
        return model, plan.diff(self.backend, fold_models)

    def _measure(self, labels: dict[str, str], origins: dict[str, str], model,
                 curated_rm: bool = False) -> dict[str, Any]:
        """``accounting.measure`` for any label set; ``curated_rm`` also fits an RM on the
        whole curated set (the baselines' protocol), so RLTHF's test accuracy compares with
        theirs like for like."""
        whole = self._fit([(i, labels[i], 1.0) for i in self.shard_ids], None) if curated_rm and self.gt else None
        return acc.measure(labels, origins, self.base.labels, self.gt, self.shard_ids, len(self.train_items),
                           lambda m, ids: self.backend.reward_diff(m, [self.by_id[i] for i in ids]),
                           [it.id for it in self.test_items], model, whole)

    # ------------------------------------------------------------------ one iteration
    def _error_model(self, k: int, it_dir: Path, state: LoopState,
                     margins: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
        """P(wrong) of every unseen pair and every pair's features, from the error model refit
        on all answers so far; persisted first, so a rerun reuses the fit instead of refitting."""
        ids, cfg = self.shard_ids, self.cfg
        x = feature_rows(ids, self.signals, state.labels, dict(zip(ids, margins.tolist())))
        seen = state.human_ids()
        pool = [j for j, i in enumerate(ids) if i not in seen]
        path = it_dir / "error_model.json"
        rec = read_record(path, ErrorModelRecord)
        if rec is None:
            em = fit_error_model(x[pool], [h["x"] for h in state.history], [int(h["wrong"]) for h in state.history],
                                 prior_error_rate=cfg.error_model.prior_error_rate, c=cfg.error_model.c,
                                 prior_weight=cfg.error_model.prior_weight * round_budget(cfg.human_budget_pct, len(ids)))
            rec = ErrorModelRecord(iteration=k, model=em.to_json(), features=list(FEATURES), pool=len(pool),
                                   mean_p_wrong=float(em.predict(x[pool]).mean()) if pool else None)
            write_record(path, rec)
        else:
            log.info("iteration %d: reusing the persisted error model", k)
        p = ErrorModel.from_json(rec.model).predict(x)
        return {ids[j]: float(p[j]) for j in pool}, {i: [float(v) for v in r] for i, r in zip(ids, x)}

    def _plan(self, k: int, it_dir: Path, order: list[str], curve, state: LoopState,
              margins: np.ndarray) -> tuple[RoundPlan, dict[str, float]]:
        """Fixed and written before anyone is asked, so a rerun reuses the very same batch."""
        cfg = self.cfg
        p_wrong: dict[str, float] = {}
        if cfg.targeting == "error_model":
            p_wrong, features = self._error_model(k, it_dir, state, margins)
        pending = it_dir / "pending_selection.json"
        if pending.exists():
            log.info("iteration %d: reusing the selection fixed before the interrupted human step", k)
            return RoundPlan.from_json(json.loads(pending.read_text())), p_wrong
        budget = round_budget(cfg.human_budget_pct, len(self.shard_ids))
        common = dict(iteration=k, budget=budget, flip_audit=cfg.flip_audit_for(budget),
                      spot_check=cfg.eyes_off_spot_check, apply_flips=cfg.apply_flips, seed=cfg.seed)
        if cfg.targeting == "error_model":
            plan = plan_error_round(order, state, p_wrong, features, random_share=cfg.error_model.random_share,
                                    flip_window=max(1, round(cfg.flip_window * budget)), **common)
        else:
            plan = plan_round(order, curve, state, backoff_schedule=cfg.backoff_schedule,
                              backoff_after=cfg.backoff_after, **common)
        if cfg.effective_cross_fit_folds >= 2:
            ok, agree = rm_better_than_chance(margins.tolist(), cfg.flip_confidence)
            plan.rm_ok, plan.rm_note = ok, f" (agrees with {100 * (agree or 0):.0f}% of the labels)"
        atomic_write_json(pending, plan.to_json())
        return plan, p_wrong

    def _iteration(self, k: int, state: LoopState) -> LoopState | None:
        cfg, truth = self.cfg, (self.gt.labels if self.gt else None)
        it_dir = self.run.sub("iterations", f"iter_{k:02d}")
        model, diff = self._fit_scored(state.train, it_dir / "rm", self.run.sub("scratch", f"crossfit_{k:02d}"))
        margins = signed_margins(diff, [state.labels[i] for i in self.shard_ids])
        idx = np.argsort(-margins, kind="stable")
        order = [self.shard_ids[j] for j in idx]
        curve = analyze_curve(margins[idx], cfg.curve.smooth_frac, cfg.curve.slope_factor)
        cut = trusted_region(order, curve, backoff_for_iteration(k + 1, cfg.backoff_schedule, cfg.backoff_after))[1]
        row = IterationRow(iteration=k, train_size=len(state.train), apply_flips=cfg.apply_flips,
                           targeting=cfg.targeting,
                           labeller="simulated" if self.simulated_labeller else cfg.labeller.kind,
                           elbow=curve.elbow, knee=curve.knee, reflection=curve.reflection,
                           curve_fallback=curve.fallback,
                           rm_heldout_agreement=float(np.mean(margins > 0))
                           if cfg.effective_cross_fit_folds >= 2 else None,
                           **self._measure(state.labels, state.origins, model, curated_rm=cfg.measures_curated_rm),
                           **acc.eyes_off_check(order, state.labels, truth, cut))
        nxt, p_wrong = None, {}
        if k < cfg.iterations:
            plan, p_wrong = self._plan(k, it_dir, order, curve, state, margins)
            asked = self._ask(f"iter{k:02d}", plan.asked, state.labels)
            res = apply_round(state, plan, {i: r.label for i, r in asked.items()},
                              amplification=cfg.amplification, train_on_flips=cfg.train_on_flips,
                              apply_flips=cfg.apply_flips, flip_confidence=cfg.flip_confidence)
            if res.gate and plan.selection.flips:
                (log.info if res.gate.apply else log.warning)("iteration %d: %d flip candidates: %s", k,
                                                               len(plan.selection.flips), res.gate.reason)
            row = row.model_copy(update=acc.round_counts(plan, res, state.labels, truth))
            write_record(it_dir / "selection.json", SelectionRecord(
                **plan.selection.to_dict(), flip_audit=plan.audit, spot_check=plan.spot_check,
                amplification=cfg.amplification, backoff=plan.backoff, budget=plan.budget,
                flips_applied=bool(res.flips), targeting=plan.targeting, random_share=plan.random_share,
                flip_gate=res.gate.reason if res.gate else None))
            write_jsonl(it_dir / "human_labels.jsonl", list(asked.values()))
            atomic_write_json(it_dir / "next_state.json", res.state.to_json())
            nxt = res.state
        write_jsonl(it_dir / "margins.jsonl", [MarginRow(
            id=i, rank=r, label=state.labels[i], margin=float(margins[j]), origin=state.origins[i],
            correct=(state.labels[i] == truth[i]) if truth else None, p_wrong=p_wrong.get(i))
            for r, (i, j) in enumerate(zip(order, idx))])
        write_record(it_dir / "curve.json", CurveRecord(**curve.to_dict(), flip_count=row.flips or 0,
                                                        human_batch_count=row.human_batch or 0))
        self.run.log_metrics(**row.to_json())
        self.run.mark_done(f"iter_{k:02d}", human_count=row.human_count, curated_acc=row.curated_acc,
                           rm_test_acc=row.rm_test_acc)
        log.info("%s", format_iteration(row))
        return nxt

    def _ask(self, batch_id: str, ids: list[str], labels: dict[str, str]):
        run = self.run.path
        return ask_humans(self.ledger, self._annotator(), batch_id, ids, self.by_id, labels,
                          {i: j.rationale for i, j in self.judgments.items() if j.rationale},
                          poll_seconds=self.cfg.human.poll_seconds, timeout_s=self.cfg.human.wait_timeout_s,
                          progress_every_s=self.cfg.human.progress_every_s,
                          how_to_answer=f"label it in the annotation page: rayalign annotate serve --run-dir {run}")

    # ------------------------------------------------------------------ baselines and final
    def _baselines(self, human_levels: list[int]) -> None:
        cfg = self.cfg
        if self.run.is_done("baselines") or not cfg.baselines:
            return
        if self.gt is None or cfg.human.kind not in ("simulated", "recorded"):
            log.warning("baselines need ground truth and a simulated or recorded human; skipped")
            self.run.mark_done("baselines", skipped=True)
            return
        from rayalign.humans.factory import make_annotator

        sel0 = read_record(self.run.path / "iterations" / "iter_00" / "selection.json", SelectionRecord)
        flips0 = sel0.flips if sel0 and sel0.flips_applied else []  # the flips iteration 0 applied
        sets = baseline_label_sets([m for m in cfg.baselines if m != "ai_only"], shard_ids=self.shard_ids,
                                   base_labels=self.base.labels,
                                   human=make_annotator(cfg.human, truth=self.gt.labels, seed=cfg.seed + 1),
                                   items_by_id=self.by_id, human_levels=human_levels, flips0=flips0, seed=cfg.seed)
        models = fit_all(self.backend, [  # together: one Ray Train run on the lora backend
            FitJob([self.by_id[i] for i in self.shard_ids], [b.labels[i] for i in self.shard_ids],
                   [1.0] * len(self.shard_ids), self.run.sub("scratch", f"baseline_{b.method}_{b.human_count}"))
            for b in sets])
        rows = [BaselineRow(method=b.method, flips=b.flips, **self._measure(b.labels, b.origins, model))
                for b, model in zip(sets, models)]
        if "ai_only" in cfg.baselines:  # one AI-only number: iteration 0's (``ai_only_row``)
            rows.insert(0, ai_only_row(next(r for r in latest(read_metrics(self.run.metrics_path), IterationRow)
                                            if r.iteration == 0)))
        for row in rows:
            self.run.log_metrics(**row.to_json())
            log.info("%s", format_baseline(row))
        self.run.mark_done("baselines", methods=sorted({r.method for r in rows}))

    def _final(self, final_iter: int, state: LoopState) -> dict:
        cfg = self.cfg
        if self.run.is_done("final") or not cfg.final_relabel:
            return self.run.step_info("final") or {}
        rm_src = self.run.path / "iterations" / f"iter_{final_iter:02d}" / "rm"
        final_dir = self.run.sub("final")
        shutil.rmtree(final_dir / "rm", ignore_errors=True)
        shutil.copytree(rm_src, final_dir / "rm")
        diff = self.backend.reward_diff(self.backend.load(rm_src), self.train_items)
        human = self.ledger.answers()
        curated = ({i: (state.labels[i], state.origins[i]) for i in self.shard_ids}
                   if cfg.final_labels == "curated_then_rm" else None)
        rows = final_labels([it.id for it in self.train_items], diff, human, curated)
        write_final(final_dir, rows, self.by_id)
        info = final_summary(rows, mode=cfg.final_labels, from_iteration=final_iter,
                             truth=self.gt.labels if self.gt else None, shard_ids=self.shard_ids,
                             curated_labels=state.labels, human_answers=human).to_json()
        self.run.log_metrics(**info)
        self.run.mark_done("final", **{k: v for k, v in info.items() if k != "kind"})
        log.info("final: %d pairs written for DPO (%s), accuracy %s (curated labels %s, final RM alone %s)",
                 info["pairs"], cfg.final_labels, pct(info["written_acc"]), pct(info["curated_acc"]), pct(info["rm_only_acc"]))
        return info

    # ------------------------------------------------------------------ main
    def run_loop(self) -> dict:
        cfg = self.cfg
        self.prepare()
        self._ai_labels()
        self.base = state = self._initial_state()
        start = 0
        for k in range(cfg.iterations + 1):
            if self.run.is_done(f"iter_{k:02d}"):
                nxt = self.run.path / "iterations" / f"iter_{k:02d}" / "next_state.json"
                if nxt.exists():
                    state = LoopState.from_json(json.loads(nxt.read_text()))
                start = k + 1
        if start:
            log.info("resuming after iteration %d", start - 1)
        for k in range(start, cfg.iterations + 1):
            state = self._iteration(k, state) or state
        self._baselines([r.human_count for r in latest(read_metrics(self.run.metrics_path), IterationRow)])
        final = self._final(cfg.iterations, state)
        summary = self.summary()
        summary["final"] = final
        self.run.finish("finished")
        return summary

    def summary(self) -> dict:
        rows = read_metrics(self.run.metrics_path)
        iters = sorted(latest(rows, IterationRow), key=lambda r: r.iteration)
        return {"run_dir": str(self.run.path), "iterations": [r.to_json() for r in iters],
                "baselines": [r.to_json() for r in latest(rows, BaselineRow)],
                "ground_truth": self.gt.tag if self.gt else None,
                "simulated_labeller": self.simulated_labeller,
                "simulated_human": self.cfg.human.kind == "simulated",
                "recorded_human": self.cfg.human.mode if self.cfg.human.kind == "recorded" else None,
                "flip_gates": [f"flips, iteration {r.iteration}: {r.flip_candidates} candidates, {r.flip_gate}"
                               for r in iters if r.flip_candidates and r.flip_gate]}
