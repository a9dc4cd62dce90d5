"""The RLTHF run report: one self-contained ``report.html`` and a ``report.md`` beside it.

Why self-contained: a report is mailed, attached to a ticket or opened from a cluster's
object store; it must render with no server, no network and no other file (images are
inlined as base64, no external CSS/JS). The Markdown twin links the PNGs in ``plots/``
for code review tools.

Everything is read from the run directory (metrics.jsonl, iterations/*, final/*), so the
report can be rebuilt at any time with ``rayalign report --run <dir>``; missing pieces (no
ground truth, no baselines, a run still going) are reported as missing, never invented.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rayalign.reports.plots import plot_accuracy_vs_human, plot_human_spend, plot_margin_curve
from rayalign.runs import atomic_write_text, read_jsonl

METHOD_NAMES = {"rlthf": "RLTHF", "random": "Random annotation", "ai_only": "AI labels only",
                "full_human": "Full human"}


# -- reading the run directory ----------------------------------------------------------------
def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path) if path.is_file() else []


def _iteration_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for d in sorted((run_dir / "iterations").glob("iter_*")):
        try:
            out.append((int(d.name.split("_", 1)[1]), d))
        except ValueError:
            continue
    return out


def _latest_rows(metrics: list[dict], kind: str) -> list[dict]:
    """One row per (method, iteration/human_pct): a resumed run may log a step twice."""
    seen: dict[tuple, dict] = {}
    for r in metrics:
        if r.get("kind") != kind:
            continue
        key = (r.get("method"), r.get("iteration"), r.get("human_count"), r.get("human_pct"))
        seen[key] = r
    return list(seen.values())


# -- formatting -------------------------------------------------------------------------------
def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f} %"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _img_tag(png: Path, alt: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(c: Any) -> str:
        return str("" if c is None else c).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- the report -------------------------------------------------------------------------------
def _roi(iters: list[dict], baselines: list[dict]) -> list[list[Any]]:
    """Accuracy gain per 1 % of the corpus human-labelled, RLTHF vs random (paper's ROI)."""
    ai = next((b for b in baselines if b.get("method") == "ai_only"), None)
    base0 = ai or (iters[0] if iters else None)
    if not base0 or base0.get("curated_acc") is None:
        return []
    rows = []
    for method, pool in (("rlthf", iters), ("random", [b for b in baselines
                                                       if b.get("method") == "random"])):
        best = max((r for r in pool if (r.get("human_pct") or 0) > 0
                    and r.get("curated_acc") is not None),
                   key=lambda r: r["human_pct"], default=None)
        if best is None:
            continue
        gain = float(best["curated_acc"]) - float(base0["curated_acc"])
        rows.append([METHOD_NAMES[method], f"{best['human_pct']:.2f} %", _pct(best["curated_acc"]),
                     f"{100 * gain:+.1f} pts", f"{100 * gain / best['human_pct']:+.2f} pts / 1 %"])
    return rows


def _human_info(run_dir: Path, cfg: dict) -> dict[str, Any]:
    """Who labelled: simulated or people, how many labels, annotators, queue agreement."""
    rows: list[dict] = []
    for _, d in _iteration_dirs(run_dir):
        rows += _jsonl(d / "human_labels.jsonl")
    human_cfg = cfg.get("human") if isinstance(cfg.get("human"), dict) else {}
    simulated = any(r.get("simulated") for r in rows) or human_cfg.get("kind") == "simulated"
    annotators = sorted({str(r.get("annotator")) for r in rows if r.get("annotator")})
    info: dict[str, Any] = {"labels": len(rows), "simulated": simulated,
                            "annotators": annotators, "queue": None,
                            "recorded": human_cfg.get("mode") if human_cfg.get("kind") == "recorded" else None}
    from rayalign.humans.queue import AnnotationQueue, default_queue_path

    qpath = default_queue_path(run_dir)
    if qpath.is_file():
        info["queue"] = AnnotationQueue(qpath).status()
    return info


def write_report(run_dir: str | Path) -> Path:
    """Build plots/*.png, report.html (self-contained) and report.md; returns report.html."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    manifest = _json(run_dir / "manifest.json") or {}
    cfg_path = run_dir / "config.yaml"
    cfg = (yaml.safe_load(cfg_path.read_text()) or {}) if cfg_path.is_file() else {}
    metrics = _jsonl(run_dir / "metrics.jsonl")
    iters = sorted(_latest_rows(metrics, "iteration"), key=lambda r: r.get("iteration", 0))
    baselines = _latest_rows(metrics, "baseline")
    finals = [r for r in metrics if r.get("kind") == "final"]
    final = finals[-1] if finals else _json(run_dir / "final" / "summary.json")
    gt = next((r.get("ground_truth") for r in iters + baselines if r.get("ground_truth")), None)
    labeller = next((r.get("labeller") for r in iters if r.get("labeller")), None)
    if labeller is None and isinstance(cfg.get("labeller"), dict):
        labeller = cfg["labeller"].get("kind")
    if labeller == "replay" and isinstance(cfg.get("labeller"), dict) and cfg["labeller"].get("replay_path"):
        labeller = f"replay of recorded judgments ({cfg['labeller']['replay_path']})"
    humans = _human_info(run_dir, cfg)
    name = run_dir.resolve().name

    # -- charts --------------------------------------------------------------------------
    figures: list[tuple[str, Path, str]] = []  # (title, png, caption)
    acc_rows = [{**r, "method": "rlthf"} for r in iters] + baselines
    if acc_rows:
        figures.append(("Accuracy vs human annotation",
                        plot_accuracy_vs_human(acc_rows, plots / "accuracy_vs_human.png"),
                        "Curated-label accuracy (the training labels after flips and human "
                        "answers, against ground truth) and RM test accuracy (held-out split), "
                        "against the share of the corpus labelled by humans."))
    if iters:
        figures.append(("Human spend", plot_human_spend(iters, plots / "human_spend.png"),
                        "Human labels bought and AI labels flipped in each iteration; the line "
                        "is the cumulative human share of the corpus."))
    curve_rows = []
    for k, d in _iteration_dirs(run_dir):
        margins = _jsonl(d / "margins.jsonl")
        if not margins:
            continue
        curve = _json(d / "curve.json") or {}
        sel = _json(d / "selection.json") or {}
        if margins and "rank" in margins[0]:
            margins = sorted(margins, key=lambda r: r["rank"])
        else:
            margins = sorted(margins, key=lambda r: -float(r["margin"]))
        m = np.array([float(r["margin"]) for r in margins])
        correct = [r.get("correct") for r in margins]
        has_gt = any(c is not None for c in correct)
        pos = {r["id"]: j for j, r in enumerate(margins)}
        human_idx = [pos[i] for i in sel.get("human_batch", []) if i in pos]
        png = plot_margin_curve(
            m, np.array(correct, dtype=object) if has_gt else None,
            {k2: curve.get(k2) for k2 in ("elbow", "knee", "reflection")},
            plots / f"margins_iter_{k:02d}.png",
            f"Iteration {k}: sorted reward margins (n={len(m)})", human_idx=human_idx)
        fb = curve.get("fallback")
        figures.append((f"Margin curve, iteration {k}", png,
                        "Pairs sorted by reward margin. Green/red: the current label agrees/"
                        "disagrees with ground truth" + ("" if has_gt else " (unknown here)") +
                        ". Dashed lines: elbow, knee, reflection point; red band: flipped; "
                        "yellow band: sent to humans." + (f" Curve fallback: {fb}." if fb else "")))
        wrong = sum(1 for c in correct if c is False)
        curve_rows.append([k, len(m), curve.get("elbow"), curve.get("knee"),
                           curve.get("reflection"), _num(curve.get("elbow_margin")),
                           curve.get("flip_count", len(sel.get("flips", []))),
                           curve.get("human_batch_count", len(sel.get("human_batch", []))),
                           wrong if has_gt else "–", fb or ""])

    # -- tables --------------------------------------------------------------------------
    it_headers = ["iteration", "human labels", "human % of corpus", "curated-label acc",
                  "RM test acc", "flips", "correct flips", "elbow / knee / reflection"]
    it_rows = [[r.get("iteration"), r.get("human_count"), _num(r.get("human_pct")),
                _pct(r.get("curated_acc")), _pct(r.get("rm_test_acc")), _num(r.get("flips")),
                _num(r.get("flips_correct")),
                f"{_num(r.get('elbow'))} / {_num(r.get('knee'))} / {_num(r.get('reflection'))}"]
               for r in iters]
    b_headers = ["method", "human labels", "human % of corpus", "curated-label acc", "RM test acc"]
    order = {"ai_only": 0, "random": 1, "full_human": 2}
    b_rows = [[METHOD_NAMES.get(r.get("method"), r.get("method")), _num(r.get("human_count")),
               _num(r.get("human_pct")), _pct(r.get("curated_acc")), _pct(r.get("rm_test_acc"))]
              for r in sorted(baselines, key=lambda r: (order.get(r.get("method"), 9),
                                                        r.get("human_pct") or 0))]
    if iters:
        last = iters[-1]
        b_rows.append([f"RLTHF (iteration {last.get('iteration')})", _num(last.get("human_count")),
                       _num(last.get("human_pct")), _pct(last.get("curated_acc")),
                       _pct(last.get("rm_test_acc"))])
    roi_rows = _roi(iters, baselines)
    c_headers = ["iteration", "pairs", "elbow", "knee", "reflection", "elbow margin", "flips",
                 "human batch", "wrong labels (vs GT)", "fallback"]
    h_who = ("simulated human (replays ground truth)" if humans["simulated"] else
             f"recorded human votes ({humans['recorded']}; real annotators' answers in the data)"
             if humans.get("recorded") else "people (annotation queue / imports)")
    facts = [
        ("run", name), ("job", manifest.get("job", "rlthf")),
        ("status", manifest.get("status", "unknown")),
        ("AI labeller", ("simulated" if labeller == "simulated" else labeller) or "unknown"),
        ("human labels", f"{humans['labels']} from {h_who}"
                         + (f" — annotators: {', '.join(humans['annotators'])}"
                            if humans["annotators"] else "")),
        ("ground truth", gt or "unknown"),
        ("git", manifest.get("git_sha") or "unknown"),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
    ]
    final_rows = []
    if final:
        final_rows = [[k, _pct(v) if k.endswith("_acc") or "acc_" in k else _num(v)]
                      for k, v in final.items() if k not in ("kind", "time")]
    queue_rows = [[s["batch_id"], f"{s['answered']} / {s['total']}", s["counts"]["A"],
                   s["counts"]["B"], s["counts"]["tie"], s["counts"]["skip"],
                   _pct(s["agreement_with_ai"]), "yes" if s["complete"] else "no"]
                  for s in (humans["queue"] or [])]
    q_headers = ["batch", "answered", "A", "B", "tie", "skip", "agreement with AI", "complete"]
    artefacts = [p for p in [run_dir / "config.yaml", run_dir / "manifest.json",
                             run_dir / "metrics.jsonl",
                             run_dir / "final" / "relabelled_trl.jsonl",
                             run_dir / "final" / "relabelled.jsonl",
                             run_dir / "humans" / "queue.sqlite"] if p.is_file()]
    for _, d in _iteration_dirs(run_dir):
        artefacts += sorted(p for p in d.iterdir() if p.is_file())
    artefacts += [p for _, p, _ in figures]
    rel = [p.relative_to(run_dir).as_posix() for p in artefacts]

    # -- HTML ----------------------------------------------------------------------------
    sim_banner = ""
    if humans["simulated"] or labeller == "simulated":
        parts = []
        if labeller == "simulated":
            parts.append("the AI labels come from a <b>simulated</b> labeller")
        if humans["simulated"]:
            parts.append("the human labels come from a <b>simulated</b> human that replays "
                         "ground truth")
        sim_banner = ('<div class="banner">Simulation: ' + " and ".join(parts) +
                      ". The numbers measure the method, not real annotators.</div>")
    sections = [
        f"<h1>RLTHF report — {_e(name)}</h1>", sim_banner,
        "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>",
        "<h2>Iterations</h2>",
        _table(it_headers, it_rows) if it_rows else "<p>No iteration has finished yet.</p>",
        "<h2>Baselines at equal human budget</h2>",
        _table(b_headers, b_rows) if baselines else "<p>No baselines in this run.</p>",
    ]
    if roi_rows:
        sections += ["<h3>Return on human effort</h3>",
                     _table(["method", "human %", "curated-label acc", "gain over AI only",
                             "gain per 1 % human"], roi_rows)]
    if final_rows:
        sections += ["<h2>Final relabelling</h2>", _table(["metric", "value"], final_rows)]
    sections += ["<h2>Curves: flips made and labels bought</h2>",
                 _table(c_headers, curve_rows) if curve_rows else "<p>No margin curves.</p>"]
    if queue_rows:
        sections += ["<h2>Annotation queue</h2>", _table(q_headers, queue_rows)]
    sections.append("<h2>Charts</h2>")
    for title, png, caption in figures:
        sections.append(f"<figure><figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption>"
                        f"{_img_tag(png, title)}</figure>")
    sections.append("<h2>Artefacts</h2><ul>" + "".join(
        f'<li><a href="{_e(r)}">{_e(r)}</a></li>' for r in rel) + "</ul>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RLTHF report — {_e(name)}</title>
<style>
body {{ font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
  max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }}
h1 {{ font-size: 1.6rem; }} h2 {{ margin-top: 2rem; border-bottom: 1px solid #e5e7eb; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }}
dt {{ color: #6b7280; }} dd {{ margin: 0; }}
table {{ border-collapse: collapse; width: 100%; font-size: .9rem; margin: .5rem 0; }}
th, td {{ border-bottom: 1px solid #e5e7eb; padding: .3rem .5rem; text-align: left; }}
th {{ color: #6b7280; }}
figure {{ margin: 1.2rem 0; }} figure img {{ max-width: 100%; border: 1px solid #e5e7eb; }}
figcaption {{ font-size: .9rem; color: #4b5563; margin-bottom: .3rem; }}
.banner {{ background: #fffbeb; border: 1px solid #fde68a; border-radius: 8px;
  padding: .6rem .9rem; }}
</style></head><body>
{chr(10).join(s for s in sections if s)}
</body></html>
"""
    out_html = run_dir / "report.html"
    atomic_write_text(out_html, page)

    # -- Markdown ------------------------------------------------------------------------
    md = [f"# RLTHF report — {name}", ""]
    if sim_banner:
        md += ["> " + html.unescape(sim_banner.replace("<b>", "**").replace("</b>", "**")
                                    .replace('<div class="banner">', "").replace("</div>", "")),
               ""]
    md += [f"- **{k}**: {v}" for k, v in facts] + [""]
    md += ["## Iterations", "", _md_table(it_headers, it_rows) if it_rows else "none yet", ""]
    md += ["## Baselines at equal human budget", "",
           _md_table(b_headers, b_rows) if baselines else "none", ""]
    if roi_rows:
        md += ["### Return on human effort", "",
               _md_table(["method", "human %", "curated-label acc", "gain over AI only",
                          "gain per 1 % human"], roi_rows), ""]
    if final_rows:
        md += ["## Final relabelling", "", _md_table(["metric", "value"], final_rows), ""]
    if curve_rows:
        md += ["## Curves: flips made and labels bought", "", _md_table(c_headers, curve_rows), ""]
    if queue_rows:
        md += ["## Annotation queue", "", _md_table(q_headers, queue_rows), ""]
    md += ["## Charts", ""]
    for title, png, caption in figures:
        md += [f"### {title}", "", caption, "",
               f"![{title}]({png.relative_to(run_dir).as_posix()})", ""]
    md += ["## Artefacts", ""] + [f"- [{r}]({r})" for r in rel] + [""]
    atomic_write_text(run_dir / "report.md", "\n".join(md))
    return out_html
