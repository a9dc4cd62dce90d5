"""The RLTHF run report: one self-contained ``report.html`` and a ``report.md`` beside it.

Why self-contained: a report is mailed, attached to a ticket or opened from a cluster's
object store; it must render with no server, no network and no other file (images are
inlined as base64, no external CSS/JS). The Markdown twin links the PNGs in ``plots/``
for code review tools.

Two stages: ``collect`` reads the run directory through the schema of
``rayalign.rlthf.records`` (the same models the driver writes) and turns it into plain
``ReportData`` — tables of display strings, explanations, figures; ``render_html`` and
``render_markdown`` only format that data with two jinja2 templates (HTML autoescaped).
Missing pieces (no ground truth, no baselines, a run still going) are reported as
missing, never invented; the report can be rebuilt any time with ``rayalign report``.

Long because: ``collect`` reads every section of the run directory (iterations, baselines,
final corpus, eyes-off check, humans) into display tables; each part is short, and all of
them read the one schema of ``rlthf/records.py``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rayalign.humans.ledger import HumanLabelRow
from rayalign.reports.plots import plot_accuracy_vs_human, plot_human_spend, plot_margin_curve
from rayalign.rlthf.accounting import roi
from rayalign.rlthf.results import results_table
from rayalign.rlthf.records import (BaselineRow, CurveRecord, FinalRow, IterationRow, MarginRow,
                                    SelectionRecord, latest, read_metrics, read_record)
from rayalign.runs import atomic_write_text, read_jsonl

METHOD_NAMES = {"rlthf": "RLTHF", "random": "Random annotation",
                "random_flips": "Random annotation + the same flip step", "ai_only": "AI labels only",
                "full_human": "Full human"}
ORIGIN_NAMES = {"human": "human answer", "final_rm": "final RM (pair outside the loop's shard)",
                "curated_flip": "curated: flipped by the RM curve", "curated_ai": "curated: AI label",
                "curated_rm": "curated: RM label (the judge abstained)",
                "curated_human_nolabel": "curated: AI label (people answered tie/skip)"}
FINAL_POLICIES = {"curated_then_rm": "curated labels kept; the final RM labels only pairs the loop never saw",
                  "rm": "the final RM labels every pair, human answers kept (the paper's variant)"}


# -- the data a report shows --------------------------------------------------------------------
@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    table: Table | None = None
    empty: str = ""
    notes: list[str] = field(default_factory=list)
    level: int = 2


@dataclass
class Figure:
    title: str
    png: Path
    caption: str
    path: str = ""      # relative to the run directory (Markdown)
    base64: str = ""    # inlined (HTML)


@dataclass
class ReportData:
    name: str
    banner: str
    facts: list[tuple[str, str]]
    reading: list[str]
    sections: list[Section]
    figures: list[Figure]
    artefacts: list[str]


# -- formatting -------------------------------------------------------------------------------
def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f} %"


def _pts(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):+.1f} pts"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _roi(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2f} pts / 1 %"


# -- collect ----------------------------------------------------------------------------------
def _iteration_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for d in sorted((run_dir / "iterations").glob("iter_*")):
        try:
            out.append((int(d.name.split("_", 1)[1]), d))
        except ValueError:
            continue
    return out


def _human_info(run_dir: Path, cfg: dict) -> dict[str, Any]:
    """Who labelled: simulated or people, how many labels, annotators, queue progress."""
    rows: list[HumanLabelRow] = []
    for _, d in _iteration_dirs(run_dir):
        p = d / "human_labels.jsonl"
        rows += [HumanLabelRow.model_validate(r) for r in read_jsonl(p, missing_ok=True)]
    human_cfg = cfg.get("human") if isinstance(cfg.get("human"), dict) else {}
    simulated = any(r.simulated for r in rows) or human_cfg.get("kind") == "simulated"
    info: dict[str, Any] = {"labels": len(rows), "answered": sum(r.label is not None for r in rows),
                            "simulated": simulated, "annotators": sorted({r.annotator for r in rows}),
                            "queue": None,
                            "recorded": human_cfg.get("mode") if human_cfg.get("kind") == "recorded" else None}
    from rayalign.humans.queue import AnnotationQueue, default_queue_path

    qpath = default_queue_path(run_dir)
    if qpath.is_file():
        info["queue"] = AnnotationQueue(qpath).status()
    return info


def _results_table(iters: list[IterationRow], baselines: list[BaselineRow]) -> Table:
    """Every method at its human budget (the one builder ``rlthf.results`` makes it)."""
    headers, rows = results_table(iters, baselines)
    return Table(headers, rows)


def _roi_section(iters: list[IterationRow], baselines: list[BaselineRow]) -> Section | None:
    ai = next((b for b in baselines if b.method == "ai_only"), None)
    pools = [("RLTHF", [r for r in iters if r.apply_flips]), ("RLTHF without flips", [r for r in iters if not r.apply_flips])]
    pools += [(METHOD_NAMES[m], [b for b in baselines if b.method == m]) for m in ("random", "random_flips")]
    rows = []
    for name, pool in pools:
        best = max((r for r in pool if r.human_pct > 0), key=lambda r: r.human_pct, default=None)
        if best is None:
            continue
        test_gain = None if ai is None or best.rm_test_acc is None or ai.rm_test_acc is None \
            else best.rm_test_acc - ai.rm_test_acc
        rows.append([name, f"{best.human_pct:.2f} %", _pts(best.gain_from_humans),
                     _roi(roi(best.gain_from_humans, best.human_pct)), _pts(test_gain),
                     _roi(roi(test_gain, best.human_pct))])
    if not rows:
        return None
    return Section("Return on human effort", Table(
        ["method", "human %", "curated gain from human answers", "gain per 1 % human (human answers only)",
         "RM test gain over AI only", "RM test gain per 1 % human"], rows), level=3, notes=[
        "Flips cost no human label, so the curated-label ROI counts only the gain on pairs people answered. "
        "The RM-test ROI is the whole gain over AI labels only: compare RLTHF with 'Random annotation + the "
        "same flip step' (both get a flip step) and 'RLTHF without flips' with 'Random annotation'."])


def _reading(iters: list[IterationRow], baselines: list[BaselineRow], final: FinalRow | None) -> list[str]:
    """Plain-language explanations of what a user sees in this run's tables (issue 14.20)."""
    out = ["Two accuracies, never mixed: RM test accuracy (the paper's metric) scores a reward model trained "
           "on a method's labels on a held-out split; curated-label accuracy scores the training labels "
           "themselves (after flips and human answers) against ground truth.",
           "Iteration k's row describes the labels iteration k trains on: 'human answers used' were bought in "
           "iterations 0 … k−1. 'Bought' is the batch selected from iteration k's own curve, used from "
           "iteration k+1 on. A tie or skip is bought too (people looked at the pair), so 'shown to people' = "
           "A/B answers + ties/skips, and the human % counts all of them."]
    if iters:
        last = iters[-1]
        ai = next((b for b in baselines if b.method == "ai_only"), None)
        rnd = [b for b in baselines if b.method == "random" and b.human_pct <= last.human_pct + 1e-9]
        below = [(n, b) for n, b in
                 [("AI labels only", ai)] + [(f"Random annotation at {b.human_pct:.1f} %", b) for b in rnd]
                 if b is not None and b.rm_test_acc is not None and last.rm_test_acc is not None
                 and last.rm_test_acc < b.rm_test_acc]
        if below:
            # Say only what the figures say: whether RLTHF's labels are better than each of these.
            better = [n for n, b in below if b.curated_acc is not None and (last.curated_acc or 0) > b.curated_acc]
            worse = [n for n, b in below if n not in better]
            text = (f"RLTHF's RM test accuracy ({_pct(last.rm_test_acc)}) is below "
                    + ", ".join(f"{n} ({_pct(b.rm_test_acc)})" for n, b in below) + ". ")
            if better:
                text += (f"Its curated labels ({_pct(last.curated_acc)}) are more accurate than those of "
                         + ", ".join(better) + f": the iteration RM trains on {last.train_size} pairs with human "
                         "answers weighted ×α, the baselines' RMs on every pair once"
                         + (f" (an RM on all of RLTHF's curated labels reaches {_pct(last.rm_test_acc_curated)})"
                            if last.rm_test_acc_curated is not None else "") + ". ")
            if worse:
                text += (f"Its curated labels ({_pct(last.curated_acc)}) are not more accurate than those of "
                         + ", ".join(worse) + ": here the targeting did not pay.")
            out.append(text.strip())
        if last.errors_per_100_labels is not None:
            rnd_last = max(rnd, key=lambda b: b.human_pct, default=None)
            if rnd_last is not None and rnd_last.errors_per_100_labels:
                out.append(f"People's labels found {last.errors_per_100_labels:.1f} judge errors per 100 "
                           f"(Random annotation: {rnd_last.errors_per_100_labels:.1f}, "
                           f"{last.errors_per_100_labels / rnd_last.errors_per_100_labels:.2f}×).")
            else:
                out.append(f"People's labels found {last.errors_per_100_labels:.1f} judge errors per 100.")
        gates = [f"iteration {r.iteration}: {r.flip_gate}" for r in iters if r.flip_gate and r.flip_candidates]
        if gates:
            out.append("Flips: " + "; ".join(gates) + ".")
        if any(r.gain_from_flips for r in iters):
            out.append(f"Of the curated-label gain at iteration {last.iteration}, {_pts(last.gain_from_flips)} "
                       f"come from flips (free) and {_pts(last.gain_from_humans)} from human answers (paid).")
    if final is not None and final.written_acc is not None:
        text = (f"The DPO corpus (final/relabelled_trl.jsonl, {final.pairs} pairs) is "
                f"{_pct(final.written_acc)} accurate; on the loop's shard it is {_pct(final.written_acc_shard)} "
                f"against {_pct(final.curated_acc)} for the curated labels. ")
        if final.labels == "rm" and (final.written_acc_shard or 0) < (final.curated_acc or 0):
            text += ("It is lower because the label policy 'rm' lets the final RM overwrite curated labels, and "
                     f"that RM alone reaches only {_pct(final.rm_only_acc)}; the default 'curated_then_rm' keeps them.")
        elif final.written_acc_outside_shard is not None:
            text += (f"Pairs outside the shard were never curated: the final RM labels them at "
                     f"{_pct(final.written_acc_outside_shard)}, which is what pulls the overall figure "
                     f"{'down' if final.written_acc_outside_shard < (final.curated_acc or 0) else 'along'}.")
        else:
            text += "Every pair keeps its curated label or human answer, so it is never worse than what was curated."
        out.append(text)
    return out


def collect(run_dir: str | Path) -> ReportData:
    """Read the run directory (through the records schema), draw the plots, build the tables."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    man_path = run_dir / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.is_file() else {}
    cfg_path = run_dir / "config.yaml"
    cfg = (yaml.safe_load(cfg_path.read_text()) or {}) if cfg_path.is_file() else {}
    metrics = read_metrics(run_dir / "metrics.jsonl")
    iters: list[IterationRow] = sorted(latest(metrics, IterationRow), key=lambda r: r.iteration)
    baselines: list[BaselineRow] = latest(metrics, BaselineRow)
    finals = [r for r in metrics if isinstance(r, FinalRow)]
    final = finals[-1] if finals else None
    gt = next((r.ground_truth for r in [*iters, *baselines] if r.ground_truth), None)
    labeller = next((r.labeller for r in iters if r.labeller), None)
    if labeller is None and isinstance(cfg.get("labeller"), dict):
        labeller = cfg["labeller"].get("kind")
    if labeller == "replay" and isinstance(cfg.get("labeller"), dict) and cfg["labeller"].get("replay_path"):
        labeller = f"replay of recorded judgments ({cfg['labeller']['replay_path']})"
    humans = _human_info(run_dir, cfg)

    figures: list[Figure] = []
    acc_rows = [{**r.to_json(), "method": "rlthf"} for r in iters] + [b.to_json() for b in baselines]
    if acc_rows:
        figures.append(Figure("Accuracy vs human annotation",
                              plot_accuracy_vs_human(acc_rows, plots / "accuracy_vs_human.png"),
                              "RM test accuracy (held-out split, the paper's metric) and curated-label accuracy "
                              "(the training labels after flips and human answers, against ground truth), "
                              "against the share of the corpus labelled by humans."))
    if iters:
        figures.append(Figure("Human spend", plot_human_spend([r.to_json() for r in iters],
                                                              plots / "human_spend.png"),
                              "Per iteration: pairs shown to people (A/B answers, ties/skips on top) and labels "
                              "flipped (of which correct); the line is the cumulative human share of the corpus "
                              "after that iteration's batch."))
    curve_rows = []
    for k, d in _iteration_dirs(run_dir):
        mpath = d / "margins.jsonl"
        margins = sorted((MarginRow.model_validate(r) for r in read_jsonl(mpath, missing_ok=True)),
                         key=lambda r: r.rank)
        if not margins:
            continue
        curve = read_record(d / "curve.json", CurveRecord) or CurveRecord(n=len(margins))
        sel = read_record(d / "selection.json", SelectionRecord) or SelectionRecord()
        m = np.array([r.margin for r in margins])
        correct = [r.correct for r in margins]
        has_gt = any(c is not None for c in correct)
        pos = {r.id: j for j, r in enumerate(margins)}
        png = plot_margin_curve(
            m, np.array(correct, dtype=object) if has_gt else None,
            {"elbow": curve.elbow, "knee": curve.knee, "reflection": curve.reflection},
            plots / f"margins_iter_{k:02d}.png", f"Iteration {k}: sorted reward margins (n={len(m)})",
            human_idx=[pos[i] for i in sel.human_batch if i in pos],
            checked_idx=[pos[i] for i in sel.flip_audit + sel.spot_check if i in pos],
            flips_applied=curve.flip_count if (d / "selection.json").is_file() else None)
        fb = curve.fallback
        figures.append(Figure(
            f"Margin curve, iteration {k}", png,
            "Pairs sorted by reward margin. Green/red: the current label agrees/disagrees with ground truth"
            + ("" if has_gt else " (unknown here)") + ". Dashed lines: elbow, knee, reflection point; red band: "
            "right of the reflection point (flip candidates; the legend says how many were flipped); yellow band: "
            "the human batch; blue circles: pairs people checked elsewhere (flip audit, eyes-off spot check)." + (f" Curve fallback: {fb}." if fb else "")))
        wrong = sum(1 for c in correct if c is False)
        curve_rows.append([str(k), str(len(m)), _num(curve.elbow), _num(curve.knee), _num(curve.reflection),
                           _num(curve.elbow_margin), str(len(sel.flips)), str(curve.flip_count),
                           str(curve.human_batch_count), str(wrong) if has_gt else "–", fb or ""])

    it_rows = [[str(r.iteration), _num(r.human_count), _num(r.human_pct), _pct(r.rm_test_acc), _pct(r.curated_acc),
                "–" if r.flips is None else f"{r.flips} ({_num(r.flips_correct)} right)",
                _num(r.human_batch), _num(r.human_batch_no_label),
                _num(None if r.human_batch is None else r.human_batch + (r.human_batch_no_label or 0)),
                f"{_num(r.elbow)} / {_num(r.knee)} / {_num(r.reflection)}"] for r in iters]
    eyes = [[str(r.iteration), _num(r.top_left_n), _num(r.top_left_wrong), _num(r.trusted_head),
             _num(r.trusted_wrong), _num(r.spot_check), _num(r.spot_check_disagree)] for r in iters]
    sections = [
        Section("Results at equal human budget", _results_table(iters, baselines) if iters or baselines else None,
                empty="No iteration or baseline has finished yet.",
                notes=[] if baselines else ["No baselines in this run."]),
    ]
    roi_sec = _roi_section(iters, baselines)
    if roi_sec:
        sections.append(roi_sec)
    sections.append(Section("Iterations", Table(
        ["iteration", "human answers used", "human % of corpus", "RM test acc", "curated-label acc",
         "flips made", "bought: A/B answers", "bought: ties/skips", "shown to people", "elbow / knee / reflection"],
        it_rows), empty="No iteration has finished yet."))
    sections.append(Section("Eyes-off check of the curve's top-left", Table(
        ["iteration", "top 0.1 % (pairs)", "wrong there (vs ground truth)", "trusted head (pairs)",
         "wrong in trusted head", "spot-checked by people", "people disagreed"], eyes),
        empty="No iteration has finished yet.", notes=[
        "The paper's eyes-off setting: only the top-left of the curve (< 0.1 %) should ever need a look, "
        "because labels there are all right. Ground-truth counts need ground truth; the people's spot check "
        "(eyes_off_spot_check pairs per iteration, paid from the budget) works without it."]))
    if final is not None:
        facts_rows = [["pairs written for DPO", str(final.pairs)],
                      ["final RM from iteration", str(final.from_iteration)],
                      ["label policy", FINAL_POLICIES.get(final.labels, final.labels)],
                      ["accuracy of the DPO corpus (what was written)", _pct(final.written_acc)],
                      ["… on the loop's shard", _pct(final.written_acc_shard)],
                      ["curated labels on the same shard", _pct(final.curated_acc)],
                      ["… outside the shard (final RM labels)", _pct(final.written_acc_outside_shard)],
                      ["had the final RM labelled every pair (human answers kept)", _pct(final.rm_only_acc)]]
        sections.append(Section("Final relabelling (the DPO corpus)", Table(["", "value"], facts_rows)))
        sections.append(Section("By label origin", Table(["origin", "pairs", "accuracy"], [
            [ORIGIN_NAMES.get(o, o), str(s.pairs), _pct(s.acc)] for o, s in final.by_origin.items()]),
            level=3, empty="No origins recorded."))
    sections.append(Section("Curves: flips made and labels bought", Table(
        ["iteration", "pairs", "elbow", "knee", "reflection", "elbow margin", "flip candidates", "flips made",
         "human answers bought", "wrong labels (vs GT)", "fallback"], curve_rows), empty="No margin curves."))
    if humans["queue"]:
        sections.append(Section("Annotation queue", Table(
            ["batch", "answered", "A", "B", "tie", "skip", "agreement with AI", "complete"],
            [[s["batch_id"], f"{s['answered']} / {s['total']}", str(s["counts"]["A"]), str(s["counts"]["B"]),
              str(s["counts"]["tie"]), str(s["counts"]["skip"]), _pct(s["agreement_with_ai"]),
              "yes" if s["complete"] else "no"] for s in humans["queue"]])))

    who = ("simulated human (replays ground truth)" if humans["simulated"] else
           f"recorded human votes ({humans['recorded']}; real annotators' answers in the data)"
           if humans.get("recorded") else "people (annotation queue / imports)")
    facts = [("run", run_dir.resolve().name), ("job", manifest.get("job", "rlthf")),
             ("status", manifest.get("status", "unknown")),
             ("AI labeller", labeller or "unknown"),
             ("human labels", f"{humans['labels']} pairs shown ({humans['answered']} A/B answers) to {who}"
              + (f" — annotators: {', '.join(humans['annotators'])}" if humans["annotators"] else "")),
             ("ground truth", gt or "unknown"), ("git", manifest.get("git_sha") or "unknown"),
             ("generated", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))]
    parts = []
    if labeller == "simulated":
        parts.append("the AI labels come from a simulated labeller")
    if humans["simulated"]:
        parts.append("the human labels come from a simulated human that replays ground truth")
    banner = ("Simulation: " + " and ".join(parts) + ". The numbers measure the method, not real annotators."
              if parts else "")

    artefacts = [p for p in [run_dir / "config.yaml", run_dir / "manifest.json", run_dir / "metrics.jsonl",
                             run_dir / "final" / "relabelled_trl.jsonl", run_dir / "final" / "relabelled.jsonl",
                             run_dir / "humans" / "queue.sqlite"] if p.is_file()]
    for _, d in _iteration_dirs(run_dir):
        artefacts += sorted(p for p in d.iterdir() if p.is_file())
    artefacts += [f.png for f in figures]
    for f in figures:
        f.path = f.png.relative_to(run_dir).as_posix()
        f.base64 = base64.b64encode(f.png.read_bytes()).decode("ascii")
    return ReportData(name=run_dir.resolve().name, banner=banner, facts=facts,
                      reading=_reading(iters, baselines, final), sections=sections, figures=figures,
                      artefacts=[p.relative_to(run_dir).as_posix() for p in artefacts])


# -- render -----------------------------------------------------------------------------------
def _env(autoescape: bool):
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("rayalign.reports", "templates"),
                             autoescape=autoescape, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["md"] = lambda c: str("" if c is None else c).replace("|", "\\|").replace("\n", " ")
    return env


def render_html(data: ReportData) -> str:
    return _env(True).get_template("rlthf_report.html.j2").render(r=data)


def render_markdown(data: ReportData) -> str:
    return _env(False).get_template("rlthf_report.md.j2").render(r=data)


def write_report(run_dir: str | Path) -> Path:
    """Build plots/*.png, report.html (self-contained) and report.md; returns report.html."""
    data = collect(run_dir)
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "report.html", render_html(data))
    atomic_write_text(run_dir / "report.md", render_markdown(data))
    return run_dir / "report.html"
