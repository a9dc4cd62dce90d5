"""The RLTHF loop: sequence the steps, persist every result, resume where it stopped.

``RLTHFLoop`` holds no algorithm of its own: curve analysis, selection, labelling, RM
training and ground truth are plain functions elsewhere. It orders them, writes each
step's outputs into the run directory before marking the step done, and on a rerun
reloads finished steps instead of redoing them — above all it never asks a judge or a
human again for a label it already has. ``RLTHFDriver`` is the same class as a Ray actor
(``rayalign rlthf run`` uses it, so the loop can live on a cluster's head node).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rayalign.data.schema import Judgment, Label, PairwiseItem
from rayalign.humans.base import HumanAnnotator
from rayalign.rewards.base import preference_accuracy, signed_margins
from rayalign.rewards.crossfit import cross_fitted_diff
from rayalign.rlthf.config import RLTHFConfig
from rayalign.rlthf.corpus import load_items
from rayalign.rlthf.curve import analyze_curve
from rayalign.rlthf.ground_truth import GroundTruth, clean_ground_truth
from rayalign.rlthf.labelling import get_ai_labels
from rayalign.rlthf.select import (
    audit_precision,
    audit_sample,
    backoff_for_iteration,
    build_training_set,
    select,
)
from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

log = logging.getLogger("rayalign.rlthf")

SIMULATED_NOTE = "simulated"
#: Origins of pairs people have seen: answered A/B, or tie/skip (spent, never asked again).
HUMAN_ORIGINS = ("human", "human_nolabel")


class HumanLabelsPending(RuntimeError):
    """A human batch is not finished; the run stops cleanly and a rerun continues it."""


@dataclass
class LoopState:
    """Labels of the shard going into an iteration, and the rows to train on."""

    labels: dict[str, Label]
    origins: dict[str, str]          # ai | rm | flip | human | human_nolabel (tie/skip)
    train: list[tuple[str, str, float]]

    def to_json(self) -> dict:
        return {"labels": self.labels, "origins": self.origins, "train": self.train}

    @classmethod
    def from_json(cls, d: dict) -> "LoopState":
        return cls(labels=d["labels"], origins=d["origins"], train=[tuple(r) for r in d["train"]])


def _flip(label: str) -> Label:
    return "B" if label == "A" else "A"


def _acc(labels: dict[str, str], truth: dict[str, str], ids: Sequence[str]) -> float:
    return float(np.mean([labels[i] == truth[i] for i in ids])) if ids else float("nan")


def make_backend(cfg: RLTHFConfig, cache_dir: Path):
    from rayalign.rewards.factory import make_reward_backend

    return make_reward_backend(cfg.reward_model, cache_dir, cfg.ray)


class RLTHFLoop:
    """Runs one RLTHF job in ``run_path``; ``labeller``/``human`` may be injected (tests)."""

    def __init__(self, cfg: RLTHFConfig, run_path: str | Path,
                 human: HumanAnnotator | None = None, labeller_fn=None):
        if not logging.getLogger().handlers:  # inside a Ray actor: make progress visible
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        self.cfg = cfg
        self.run = RunDir.create_or_open(run_path, job="rlthf", config=cfg, resume=True)
        self._human = human
        self._labeller_fn = labeller_fn or get_ai_labels

    # ------------------------------------------------------------------ data & truth
    def _data(self) -> None:
        cfg, run = self.cfg, self.run
        items_path = run.file("data", "items.jsonl")
        if run.is_done("data"):
            self.items = [PairwiseItem.model_validate(r) for r in read_jsonl(items_path)]
        else:
            self.items, report = load_items(cfg)
            write_jsonl(items_path, self.items)
            atomic_write_json(run.file("data", "load_report.json"), report)
            run.mark_done("data", pairs=len(self.items))
        from rayalign.data.splits import shard, train_test_split

        self.by_id = {it.id: it for it in self.items}
        self.raw = {it.id: it.label for it in self.items if it.label in ("A", "B")}
        self.train_items, self.test_items = train_test_split(self.items, cfg.data.test_fraction, seed=cfg.seed)
        self.shard_items = shard(self.train_items, cfg.data.shards, cfg.data.shard_index, seed=cfg.seed)
        self.shard_ids = [it.id for it in self.shard_items]
        self.test_ids = [it.id for it in self.test_items]
        log.info("data: %d pairs (%d train, %d test); loop shard %d/%d = %d pairs",
                 len(self.items), len(self.train_items), len(self.test_items),
                 cfg.data.shard_index + 1, cfg.data.shards, len(self.shard_items))

    def _ground_truth(self) -> None:
        cfg, run = self.cfg, self.run
        path = run.file("data", "ground_truth.json")
        have_truth = len(self.raw) == len(self.items)
        if run.is_done("ground_truth"):
            d = json.loads(path.read_text())
            self.gt = GroundTruth(labels=d["labels"], raw=d["raw"], mode=d["mode"],
                                  flipped=d["flipped"], crossfit_raw_accuracy=d.get("crossfit_raw_accuracy"))
            return
        if not have_truth:
            self.gt = None
            log.warning("the data has no human labels for every pair: no accuracy metrics, no baselines")
            return
        if cfg.ground_truth.mode == "cleaned":
            log.info("cleaning ground truth: cross-fitted RM (%d folds), flip up to %.0f%%",
                     cfg.ground_truth.folds, 100 * cfg.ground_truth.clean_fraction)
            self.gt = clean_ground_truth(self.backend, self.items, self.raw,
                                         cfg.ground_truth.clean_fraction, cfg.ground_truth.folds, cfg.seed,
                                         scratch_dir=self.run.sub("scratch", "ground_truth"))
        else:
            self.gt = GroundTruth(labels=dict(self.raw), raw=dict(self.raw), mode="raw")
        atomic_write_json(path, {"labels": self.gt.labels, "raw": self.gt.raw, "mode": self.gt.mode,
                                 "flipped": self.gt.flipped, "tag": self.gt.tag,
                                 "crossfit_raw_accuracy": self.gt.crossfit_raw_accuracy})
        run.mark_done("ground_truth", tag=self.gt.tag, flipped=len(self.gt.flipped),
                      crossfit_raw_accuracy=self.gt.crossfit_raw_accuracy)
        log.info("ground truth: %s (cross-fitted RM agreed with raw labels on %.1f%%)", self.gt.tag,
                 100 * (self.gt.crossfit_raw_accuracy or float("nan")))

    # ------------------------------------------------------------------ AI labels
    def _ai_labels(self) -> None:
        path = self.run.file("data", "ai_judgments.jsonl")
        have = {r["item_id"]: Judgment.model_validate(r) for r in read_jsonl(path)} if path.exists() else {}
        # A failed judgment (timeout, garbage) is asked again on a rerun; answered ones (ties
        # included) never are, and the judge's own cache serves any repeat for free.
        todo = [it for it in self.shard_items if it.id not in have or have[it.id].error]
        retry = [it for it in todo if it.id in have]
        if retry and self.run.is_done("iter_00"):
            log.warning("%d AI judgments failed; not retried because iterations already built on these "
                        "labels (rerun into a new --run-dir to retry them, cached answers are free)", len(retry))
            todo = [it for it in todo if it.id not in have]
        elif retry:
            log.info("retrying %d failed AI judgments", len(retry))
        if todo:
            log.info("AI labelling %d pairs with the %s labeller", len(todo), self.cfg.labeller.kind)
            truth = self.gt.labels if self.gt else None
            new = self._labeller_fn(self.cfg.labeller, todo, truth, self.run.file("cache", "judgments.sqlite"))
            for j in new:
                have[j.item_id] = j
            write_jsonl(path, [have[i] for i in self.shard_ids if i in have])
        self.judgments = have
        self.ai_labels = {i: have[i].label for i in self.shard_ids if have[i].label in ("A", "B")}
        self.simulated_labeller = any(j.simulated for j in have.values())
        if todo or not self.run.is_done("ai_labels"):
            acc = _acc(self.ai_labels, self.gt.labels, list(self.ai_labels)) if self.gt else None
            self.run.mark_done("ai_labels", labelled=len(self.ai_labels),
                               abstained=len(self.shard_ids) - len(self.ai_labels), agreement=acc)

    # ------------------------------------------------------------------ humans
    def _human_ledger_path(self) -> Path:
        return self.run.file("humans", "labels.jsonl")

    def _load_human_ledger(self) -> dict[str, dict]:
        p = self._human_ledger_path()
        return {r["id"]: r for r in read_jsonl(p)} if p.exists() else {}

    def _annotator(self) -> HumanAnnotator:
        if self._human is None:
            from rayalign.humans.factory import make_annotator

            self._human = make_annotator(self.cfg.human, truth=self.gt.labels if self.gt else None,
                                         seed=self.cfg.seed, queue_path=self.run.file("humans", "queue.sqlite"))
        return self._human

    def _ask_humans(self, batch_id: str, ids: list[str], labels: dict[str, str]) -> dict[str, dict]:
        """Labels for ``ids``, asking only for those not already in the ledger; waits for a queue."""
        ledger = self._load_human_ledger()
        missing = [i for i in ids if i not in ledger]
        if missing:
            human = self._annotator()
            items = [self.by_id[i] for i in missing]
            ai = {i: labels[i] for i in missing}
            rationales = {i: self.judgments[i].rationale for i in missing if i in self.judgments}
            deadline = (time.time() + self.cfg.human.wait_timeout_s) if self.cfg.human.wait_timeout_s else None
            got = human.request_labels(batch_id, items, ai, rationales)
            while got is None:
                if deadline is not None and time.time() > deadline:
                    raise HumanLabelsPending(
                        f"human batch {batch_id} ({len(missing)} pairs) is not finished; "
                        f"label it (rayalign annotate serve --run {self.run.path}) and rerun to continue")
                log.info("waiting for human batch %s (%d pairs); label it in the annotation page: "
                         "rayalign annotate serve --run %s", batch_id, len(missing), self.run.path)
                time.sleep(self.cfg.human.poll_seconds)
                got = human.request_labels(batch_id, items, ai, rationales)
            # Pairs people saw but gave no A/B answer (tie, skip) are recorded too: the budget
            # was spent on them, and they must never be selected and asked again.
            rows = [{"id": i, "label": got.get(i), "batch": batch_id, "annotator": human.name,
                     "simulated": bool(getattr(human, "simulated", False))}
                    for i in missing]
            # Append-only ledger: a crash after this line never costs these labels again.
            with open(self._human_ledger_path(), "a", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            ledger.update({r["id"]: r for r in rows})
        return {i: ledger[i] for i in ids if i in ledger}

    def _selection(self, k: int, it_dir: Path, order: list[str], curve, state: LoopState) -> tuple[Any, list[str], int, float]:
        """This iteration's selection, fixed before anyone is asked.

        Written to ``pending_selection.json`` before the human step, so a run killed while
        people label (or right after) resumes with the very same batch, even when the RM
        refit on resume is not bit-identical (LoRA on GPUs): no label bought is wasted.
        """
        from rayalign.rlthf.select import Selection

        cfg = self.cfg
        budget = max(1, int(round(cfg.human_budget_pct / 100.0 * len(self.shard_ids))))
        beta = backoff_for_iteration(k + 1, cfg.backoff_schedule, cfg.backoff_after)
        pending = it_dir / "pending_selection.json"
        if pending.exists():
            d = json.loads(pending.read_text())
            log.info("iteration %d: reusing the selection fixed before the interrupted human step", k)
            return Selection(**d["selection"]), d["audit"], budget, beta
        already = {i for i in self.shard_ids if state.origins.get(i) in HUMAN_ORIGINS}
        sel = select(order, curve, budget=budget, backoff=beta, already_human=already)
        audit = audit_sample(sel.flips, min(cfg.flip_audit, budget), seed=f"audit:{cfg.seed}:{k}")
        if audit:  # the audit is paid from this iteration's budget
            sel.human_batch = sel.human_batch[: max(0, budget - len(audit))]
        atomic_write_json(pending, {"selection": sel.to_dict(), "audit": audit})
        return sel, audit, budget, beta

    # ------------------------------------------------------------------ iterations
    def _initial_state(self) -> LoopState:
        labels = dict(self.ai_labels)
        origins = {i: "ai" for i in labels}
        train = [(i, labels[i], 1.0) for i in self.shard_ids if i in labels]
        abstained = [i for i in self.shard_ids if i not in labels]
        if abstained:
            # Pairs the judge could not decide get the label of an RM trained on the rest.
            model = self._fit(train, self.run.sub("scratch", "abstained_rm"))
            diff = self.backend.reward_diff(model, [self.by_id[i] for i in abstained])
            for i, d in zip(abstained, diff):
                labels[i] = "A" if d >= 0 else "B"
                origins[i] = "rm"
        return LoopState(labels=labels, origins=origins, train=train)

    def _fit(self, train: list[tuple[str, str, float]], out_dir: Path | None):
        return self.backend.fit([self.by_id[i] for i, _, _ in train], [lab for _, lab, _ in train],
                                [w for _, _, w in train], out_dir)

    def _shard_diff(self, model, train: list[tuple[str, str, float]]) -> np.ndarray:
        k = self.cfg.effective_cross_fit_folds
        if k >= 2:
            return cross_fitted_diff(self.backend, [self.by_id[i] for i, _, _ in train],
                                     [lab for _, lab, _ in train], [w for _, _, w in train],
                                     folds=k, seed=self.cfg.seed, score_items=self.shard_items,
                                     scratch_dir=self.run.sub("scratch", "crossfit"))
        return self.backend.reward_diff(model, self.shard_items)

    def _test_metrics(self, model) -> dict[str, float]:
        if not self.gt or not self.test_items:
            return {}
        diff = self.backend.reward_diff(model, self.test_items)
        return {"rm_test_acc": preference_accuracy(diff, [self.gt.labels[i] for i in self.test_ids]),
                "rm_test_acc_raw": preference_accuracy(diff, [self.gt.raw[i] for i in self.test_ids])}

    def _curated_metrics(self, labels: dict[str, str]) -> dict[str, float]:
        if not self.gt:
            return {}
        return {"curated_acc": _acc(labels, self.gt.labels, self.shard_ids),
                "curated_acc_raw": _acc(labels, self.gt.raw, self.shard_ids)}

    def _human_counts(self, origins: dict[str, str]) -> dict[str, float]:
        # Spend is every pair shown to people, whether or not they gave an A/B answer.
        n = sum(1 for i in self.shard_ids if origins.get(i) in HUMAN_ORIGINS)
        return {"human_count": n,
                "human_no_label": sum(1 for i in self.shard_ids if origins.get(i) == "human_nolabel"),
                "human_pct": 100.0 * n / max(1, len(self.train_items)),
                "human_pct_shard": 100.0 * n / max(1, len(self.shard_ids))}

    def _iteration(self, k: int, state: LoopState) -> LoopState | None:
        cfg = self.cfg
        it_dir = self.run.sub("iterations", f"iter_{k:02d}")
        model = self._fit(state.train, it_dir / "rm")
        diff = self._shard_diff(model, state.train)
        labels = [state.labels[i] for i in self.shard_ids]
        margins = signed_margins(diff, labels)
        order_idx = np.argsort(-margins, kind="stable")
        order = [self.shard_ids[j] for j in order_idx]
        curve = analyze_curve(margins[order_idx], cfg.curve.smooth_frac, cfg.curve.slope_factor)

        row: dict[str, Any] = {"kind": "iteration", "method": "rlthf", "iteration": k,
                               "train_size": len(state.train), "ground_truth": self.gt.tag if self.gt else None,
                               "labeller": "simulated" if self.simulated_labeller else cfg.labeller.kind,
                               "elbow": curve.elbow, "knee": curve.knee, "reflection": curve.reflection,
                               "curve_fallback": curve.fallback}
        row.update(self._human_counts(state.origins))
        row.update(self._curated_metrics(state.labels))
        row.update(self._test_metrics(model))

        write_jsonl(it_dir / "margins.jsonl", [
            {"id": i, "rank": r, "label": state.labels[i], "margin": float(margins[j]),
             "origin": state.origins[i],
             "correct": (state.labels[i] == self.gt.labels[i]) if self.gt else None}
            for r, (i, j) in enumerate(zip(order, order_idx))])

        last = k >= cfg.iterations
        nxt: LoopState | None = None
        if not last:
            sel, audit, budget, beta = self._selection(k, it_dir, order, curve, state)
            asked = self._ask_humans(f"iter{k:02d}", sel.human_batch + audit, state.labels)
            answers = {i: a for i, a in asked.items() if a["label"] in ("A", "B")}
            flips = sel.flips  # audited flips people answered take the people's label below
            precision = audit_precision(audit, state.labels, {i: a["label"] for i, a in answers.items()})
            vetoed = precision is not None and precision < cfg.flip_audit_min_precision
            if vetoed:
                log.warning("iteration %d: people agreed with only %.0f%% of %d audited flips; "
                            "the %d flips are not applied", k, 100 * precision, len(audit), len(flips))
                flips = []
            new_labels, origins = dict(state.labels), dict(state.origins)
            for i in flips:
                new_labels[i] = _flip(new_labels[i])
                origins[i] = "flip"
            for i, a in asked.items():
                if i in answers:
                    new_labels[i] = a["label"]
                origins[i] = "human" if i in answers else "human_nolabel"
            human_ids = {i for i in self.shard_ids if origins.get(i) == "human"}
            train = build_training_set(labels=new_labels, human_ids=human_ids, trusted=sel.trusted,
                                       flips=flips, amplification=cfg.amplification,
                                       train_on_flips=cfg.train_on_flips)
            nxt = LoopState(labels=new_labels, origins=origins, train=train)
            row.update({"flips": len(flips), "flip_candidates": len(sel.flips), "human_batch": len(answers),
                        "human_batch_no_label": len(asked) - len(answers),
                        "backoff": beta, "trusted": len(sel.trusted), "flip_audit": len(audit),
                        "flip_audit_precision": precision})
            if self.gt:
                row["flips_correct"] = sum(new_labels[i] == self.gt.labels[i] for i in flips)
                row["human_batch_ai_wrong"] = sum(state.labels[i] != self.gt.labels[i] for i in answers)
            atomic_write_json(it_dir / "selection.json", {**sel.to_dict(), "amplification": cfg.amplification,
                                                          "backoff": beta, "budget": budget,
                                                          "flip_audit": audit, "flips_applied": not vetoed})
            write_jsonl(it_dir / "human_labels.jsonl", list(asked.values()))
            atomic_write_json(it_dir / "next_state.json", nxt.to_json())
        atomic_write_json(it_dir / "curve.json", {**curve.to_dict(),
                                                  "flip_count": row.get("flips", 0),
                                                  "human_batch_count": row.get("human_batch", 0)})
        self.run.log_metrics(**row)
        self.run.mark_done(f"iter_{k:02d}", **{k2: v for k2, v in row.items() if k2 != "kind"})
        self._log_row(row)
        return nxt

    @staticmethod
    def _log_row(row: dict) -> None:
        def pct(key):
            v = row.get(key)
            return "  n/a " if v is None else f"{100 * v:5.1f}%"

        log.info("iteration %d: human %4d (%.1f%% of corpus)  curated-label acc %s  RM test acc %s  "
                 "flips %s  curve e/k/r=%s/%s/%s%s", row["iteration"], row["human_count"], row["human_pct"],
                 pct("curated_acc"), pct("rm_test_acc"), row.get("flips", "-"), row["elbow"], row["knee"],
                 row["reflection"], f" [fallback: {row['curve_fallback']}]" if row.get("curve_fallback") else "")

    # ------------------------------------------------------------------ baselines
    def _baselines(self, human_levels: list[int]) -> None:
        cfg = self.cfg
        if self.run.is_done("baselines") or not cfg.baselines:
            return
        if self.gt is None or cfg.human.kind not in ("simulated", "recorded"):
            log.warning("baselines need ground truth and a simulated or recorded human; skipped")
            self.run.mark_done("baselines", skipped=True)
            return
        from rayalign.humans.factory import make_annotator

        human = make_annotator(cfg.human, truth=self.gt.labels, seed=cfg.seed + 1)
        rows = []
        base_labels = self._initial_state().labels

        def evaluate(method: str, labels: dict[str, str], n_human: int) -> dict:
            train = [(i, labels[i], 1.0) for i in self.shard_ids]
            model = self._fit(train, self.run.sub("scratch", f"baseline_{method}_{n_human}"))
            row = {"kind": "baseline", "method": method, "human_count": n_human,
                   "human_pct": 100.0 * n_human / max(1, len(self.train_items)),
                   "human_pct_shard": 100.0 * n_human / max(1, len(self.shard_ids)),
                   "ground_truth": self.gt.tag}
            row.update(self._curated_metrics(labels))
            row.update(self._test_metrics(model))
            return row

        if "ai_only" in cfg.baselines:
            rows.append(evaluate("ai_only", base_labels, 0))
        if "random" in cfg.baselines:
            perm = list(self.shard_ids)
            random.Random(f"random-baseline:{cfg.seed}").shuffle(perm)
            for n in sorted(set(h for h in human_levels if h > 0)):
                picked = perm[:n]
                answers = human.request_labels(f"random-{n}", [self.by_id[i] for i in picked], {})
                labels = {**base_labels, **answers}
                rows.append(evaluate("random", labels, n))
        if "full_human" in cfg.baselines:
            answers = human.request_labels("full", self.shard_items, {})
            rows.append(evaluate("full_human", {**base_labels, **answers}, len(answers)))
        for r in rows:
            self.run.log_metrics(**r)
            log.info("baseline %-10s human %5.1f%%  curated-label acc %5.1f%%  RM test acc %5.1f%%",
                     r["method"], r["human_pct"], 100 * r["curated_acc"], 100 * r["rm_test_acc"])
        self.run.mark_done("baselines", methods=sorted({r["method"] for r in rows}))

    # ------------------------------------------------------------------ final relabel
    def _final(self, final_iter: int, state: LoopState) -> dict:
        if self.run.is_done("final") or not self.cfg.final_relabel:
            return self.run.step_info("final") or {}
        model = self.backend.load(self.run.path / "iterations" / f"iter_{final_iter:02d}" / "rm")
        final_dir = self.run.sub("final")
        rm_src = self.run.path / "iterations" / f"iter_{final_iter:02d}" / "rm"
        if (final_dir / "rm").exists():
            shutil.rmtree(final_dir / "rm")
        shutil.copytree(rm_src, final_dir / "rm")
        diff = self.backend.reward_diff(model, self.train_items)
        ledger = self._load_human_ledger()
        keep_curated = self.cfg.final_labels == "curated_then_rm"
        rm_labels: dict[str, str] = {}
        rows, trl = [], []
        for it, d in zip(self.train_items, diff):
            lab, origin = ("A" if d >= 0 else "B"), "final_rm"
            rm_labels[it.id] = lab
            if ledger.get(it.id, {}).get("label") in ("A", "B"):
                lab, origin = ledger[it.id]["label"], "human"
            elif keep_curated and it.id in state.labels:
                lab, origin = state.labels[it.id], f"curated_{state.origins[it.id]}"
            rows.append({"id": it.id, "label": lab, "origin": origin, "reward_diff": float(d)})
            p = it.to_preference(lab)
            trl.append({"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
        write_jsonl(final_dir / "relabelled.jsonl", rows)
        write_jsonl(final_dir / "relabelled_trl.jsonl", trl)
        info: dict[str, Any] = {"pairs": len(rows), "from_iteration": final_iter,
                                "labels": self.cfg.final_labels}
        if self.gt:
            labels = {r["id"]: r["label"] for r in rows}
            train_ids = [it.id for it in self.train_items]
            info["relabel_acc"] = _acc(labels, self.gt.labels, train_ids)
            # Both ways, whichever was written: tells whether the RM or the curation is better.
            info["rm_only_acc"] = _acc({**rm_labels, **{i: r["label"] for i, r in ledger.items()
                                                         if i in rm_labels and r["label"] in ("A", "B")}},
                                       self.gt.labels, train_ids)
            outside = [it.id for it in self.train_items if it.id not in set(self.shard_ids)]
            if outside:
                info["relabel_acc_outside_shard"] = _acc(labels, self.gt.labels, outside)
        self.run.log_metrics(kind="final", **info)
        self.run.mark_done("final", **info)
        return info

    # ------------------------------------------------------------------ main
    def run_loop(self) -> dict:
        cfg = self.cfg
        self._data()
        self.backend = make_backend(cfg, self.run.sub("cache"))
        self.backend.prepare(self.items)
        self._ground_truth()
        self._ai_labels()

        state = self._initial_state()
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
            nxt = self._iteration(k, state)
            if nxt is not None:
                state = nxt
        rows = [r for r in self.run.metrics() if r.get("kind") == "iteration"]
        self._baselines([r["human_count"] for r in rows])
        final = self._final(cfg.iterations, state)
        summary = self.summary()
        summary["final"] = final
        self.run.finish("finished")
        self._report()
        return summary

    def summary(self) -> dict:
        metrics = self.run.metrics()
        iters = {r["iteration"]: r for r in metrics if r.get("kind") == "iteration"}
        base = [r for r in metrics if r.get("kind") == "baseline"]
        return {"run_dir": str(self.run.path), "iterations": [iters[k] for k in sorted(iters)],
                "baselines": base, "ground_truth": self.gt.tag if self.gt else None,
                "simulated_labeller": self.simulated_labeller,
                "simulated_human": self.cfg.human.kind == "simulated",
                "recorded_human": self.cfg.human.mode if self.cfg.human.kind == "recorded" else None}

    def _report(self) -> None:
        try:
            from rayalign.reports.rlthf_report import write_report
        except ImportError:
            log.warning("report module not available; skipping the report")
            return
        path = write_report(self.run.path)
        log.info("report: %s", path)


def remote_driver(num_cpus: float = 0):
    """The loop as a Ray actor class (zero CPUs reserved: it sequences, workers compute)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(RLTHFLoop)
