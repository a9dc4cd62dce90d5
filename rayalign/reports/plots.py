"""Matplotlib charts for RLTHF runs (PNG, Agg backend: no display needed on a cluster node).

Each function takes plain arrays/rows, writes one PNG and returns its path, so the driver,
the report and a notebook can all call them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

METHOD_STYLE = {
    "rlthf": {"label": "RLTHF", "color": "#2563eb", "marker": "o"},
    "random": {"label": "Random annotation", "color": "#f97316", "marker": "s"},
    "random_flips": {"label": "Random + the same flip step", "color": "#a16207", "marker": "D"},
    "ai_only": {"label": "AI labels only", "color": "#6b7280", "marker": "x"},
    "full_human": {"label": "Full human", "color": "#15803d", "marker": "*"},
}
LANDMARKS = {"elbow": ("#16a34a", "elbow"), "knee": ("#9333ea", "knee"),
             "reflection": ("#dc2626", "reflection")}


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_margin_curve(margins_sorted_desc: np.ndarray, correct: np.ndarray | None,
                      points: Mapping[str, int | None], out_png: str | Path, title: str,
                      human_idx: Sequence[int] | np.ndarray | None = None,
                      flips_applied: int | None = None,
                      checked_idx: Sequence[int] | np.ndarray | None = None) -> Path:
    """The sorted reward-margin curve with its landmarks and the regions they define.

    ``correct[i]`` says whether the label of the i-th pair (in the same descending order)
    matches ground truth; points are coloured by it when known. ``human_idx`` are the
    positions of the pairs sent to humans this iteration; their span is shaded.
    ``flips_applied`` is how many of the flip candidates were really flipped (the
    iteration table's number; 0 when vetoed or switched off, None for the last iteration).
    ``checked_idx``: pairs people checked elsewhere on the curve (flip audit, eyes-off spot
    check at the top); circled, not shaded, so the human-batch band stays where it is.
    """
    m = np.asarray(margins_sorted_desc, dtype=float)
    n = m.size
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(9, 5.6))
    if n == 0:
        ax.text(0.5, 0.5, "no margins", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return _save(fig, out_png)
    # Markers stay visible on large curves (a 1-px dot per pair disappears at n = 1,400).
    size = max(9.0, min(24.0, 6000.0 / n))
    if correct is not None and len(correct) == n:
        c = np.asarray([bool(v) if v is not None else False for v in correct])
        known = np.asarray([v is not None for v in correct])
        ax.scatter(x[known & c], m[known & c], s=size, color="#16a34a", alpha=0.6, lw=0,
                   label=f"label correct ({int((known & c).sum())})")
        ax.scatter(x[known & ~c], m[known & ~c], s=size * 1.4, color="#dc2626", alpha=0.75,
                   lw=0, label=f"label wrong ({int((known & ~c).sum())})")
        if (~known).any():
            ax.scatter(x[~known], m[~known], s=size, color="#9ca3af", lw=0, label="unknown")
    else:
        ax.scatter(x, m, s=size, color="#2563eb", alpha=0.6, lw=0, label="pair (no ground truth)")
    ax.plot(x, m, color="#111827", lw=0.8, alpha=0.5)
    ax.axhline(0, color="#9ca3af", lw=0.8)

    refl = points.get("reflection")
    if refl is not None and 0 <= refl < n - 1:
        cand = n - 1 - refl
        if flips_applied is None:
            what = f"right of the reflection point ({cand} pairs; last iteration: none flipped)"
        elif flips_applied == cand:
            what = f"flip region ({cand} pairs flipped)"
        else:
            what = f"flip region ({cand} candidates, {flips_applied} flipped)"
        ax.axvspan(refl + 0.5, n - 0.5, color="#fecaca", alpha=0.35, label=what)
    if human_idx is not None and len(human_idx):
        hi = np.asarray(human_idx, dtype=int)
        ax.axvspan(hi.min() - 0.5, hi.max() + 0.5, color="#fde68a", alpha=0.45,
                   label=f"human batch ({hi.size} pairs)")
        ax.scatter(hi, m[hi], s=size * 3, facecolors="none", edgecolors="#b45309", lw=0.8)
    if checked_idx is not None and len(checked_idx):
        ci = np.asarray(checked_idx, dtype=int)
        ax.scatter(ci, m[ci], s=size * 5, facecolors="none", edgecolors="#1d4ed8", lw=1.2,
                   label=f"checked by people (audit / eyes-off, {ci.size})")
    for key, (color, name) in LANDMARKS.items():
        p = points.get(key)
        if p is not None and 0 <= p < n:
            ax.axvline(p, color=color, ls="--", lw=1.3, label=f"{name} @ {p}")
    ax.set_xlabel("pairs sorted by reward margin (descending)")
    ax.set_ylabel("margin  r(label) − r(other)")
    ax.set_title(title)
    ax.set_xlim(-0.5, n - 0.5)
    ax.grid(alpha=0.25)
    # Below the plot: inside, it hides the curve's head or tail on some iteration.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    if correct is not None and len(correct) == n and n >= 20 and all(v is not None for v in correct):
        # The paper's "accuracy density": where along the curve the labels are right. Individual
        # points overlap on the line; a rolling mean shows the regions the landmarks estimate.
        w = max(5, n // 25)
        acc = np.convolve(np.asarray(correct, dtype=float), np.ones(w) / w, mode="same")
        ax2 = ax.twinx()
        ax2.plot(x[w // 2: n - w // 2], 100 * acc[w // 2: n - w // 2], color="#7c3aed", lw=1.2, alpha=0.8)
        ax2.set_ylim(0, 105)
        ax2.set_ylabel(f"label accuracy, rolling {w} pairs (%)", color="#7c3aed")
        ax2.tick_params(axis="y", colors="#7c3aed")
    return _save(fig, out_png)


def _mean_sd(rows: list[Mapping[str, Any]], key: str) -> tuple[float | None, float | None]:
    """Mean of ``key`` over rows (one per seed) and its sd; a row's own ``key_sd`` wins."""
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    if not vals:
        return None, None
    if len(rows) == 1:
        sd = rows[0].get(f"{key}_sd")
        return vals[0], (float(sd) if sd is not None else None)
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return mean, sd


def _by_method(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[float, list]]:
    out: dict[str, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("method") is None or r.get("human_pct") is None:
            continue
        out[r["method"]][round(float(r["human_pct"]), 6)].append(r)
    return out


def plot_accuracy_vs_human(rows: Sequence[Mapping[str, Any]], out_png: str | Path,
                           title: str = "Accuracy vs human annotation") -> Path:
    """RM test accuracy (the paper's metric, left) and curated-label accuracy against % human.

    RLTHF and random annotation are curves; AI-only and full-human are reference lines
    (full human sits far to the right, so its x is written in the legend instead).
    """
    groups = _by_method(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True)
    for ax, key, name in ((axes[0], "rm_test_acc", "RM test accuracy (held out)"),
                          (axes[1], "curated_acc", "curated-label accuracy")):
        xmax = 0.0
        for method, by_x in groups.items():
            st = METHOD_STYLE.get(method, {"label": method, "color": None, "marker": "o"})
            pts = []
            for xv in sorted(by_x):
                mean, sd = _mean_sd(by_x[xv], key)
                if mean is not None:
                    pts.append((xv, 100 * mean, None if sd is None else 100 * sd))
            if not pts:
                continue
            if method in ("ai_only", "full_human"):
                y = pts[-1][1]
                ls = ":" if method == "full_human" else "--"
                ax.axhline(y, color=st["color"], ls=ls, lw=1.4,
                           label=f"{st['label']} ({pts[-1][0]:.1f}% human): {y:.1f}%")
                continue
            xs, ys, sds = zip(*pts)
            xmax = max(xmax, max(xs))
            if any(s is not None for s in sds):
                ax.errorbar(xs, ys, yerr=[s or 0 for s in sds], color=st["color"],
                            marker=st["marker"], capsize=3, lw=1.6, label=st["label"])
            else:
                ax.plot(xs, ys, color=st["color"], marker=st["marker"], lw=1.6, label=st["label"])
        ax.set_xlim(-0.3, max(1.0, xmax * 1.08 + 0.3))
        ax.set_xlabel("% of the corpus labelled by humans")
        ax.set_ylabel(f"{name} (%)")
        ax.set_title(name)
        ax.grid(alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return _save(fig, out_png)


def plot_human_spend(rows: Sequence[Mapping[str, Any]], out_png: str | Path,
                     title: str = "Pairs shown to people and flips made per iteration") -> Path:
    """Per iteration: pairs shown to people and flips (bars), cumulative human % (line).

    ``rows`` are the RLTHF iteration rows of metrics.jsonl. A row's ``human_count`` /
    ``human_pct`` are the labels it *trains on* (bought before it); its ``human_batch`` is
    what it bought. The line therefore shows the share *after* iteration k's batch (the
    next row's ``human_pct``), so it rises in the same column as the bar that caused it.
    """
    it_rows = sorted((r for r in rows if r.get("iteration") is not None),
                     key=lambda r: int(r["iteration"]))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    if not it_rows:
        ax.text(0.5, 0.5, "no iterations", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, out_png)
    ks = np.array([int(r["iteration"]) for r in it_rows])
    answered = np.array([float(r.get("human_batch") or 0) for r in it_rows])
    ties = np.array([float(r.get("human_batch_no_label") or 0) for r in it_rows])
    flips = np.array([float(r.get("flips") or 0) for r in it_rows])
    fc = [r.get("flips_correct") for r in it_rows]
    pct = [float(r.get("human_pct") or 0) for r in it_rows]
    after = pct[1:] + pct[-1:]
    w = 0.38
    ax.bar(ks - w / 2, answered, w, color="#f59e0b", label="human A/B answers bought")
    if ties.any():
        ax.bar(ks - w / 2, ties, w, bottom=answered, color="#fcd34d", hatch="//", label="ties/skips bought")
    ax.bar(ks + w / 2, flips, w, color="#ef4444", alpha=0.8, label="labels flipped")
    if any(v is not None for v in fc):
        ax.bar(ks + w / 2, [v or 0 for v in fc], w, color="#16a34a", alpha=0.9,
               label="…of which correct flips")
    ax.set_xlabel("iteration")
    ax.set_ylabel("pairs")
    ax.set_xticks(ks)
    ax.grid(alpha=0.25, axis="y")
    ax2 = ax.twinx()
    ax2.plot(ks, after, color="#1d4ed8", marker="o", label="cumulative human % of corpus (after the batch)")
    ax2.set_ylabel("cumulative human labels (% of corpus)")
    ax2.set_ylim(bottom=0, top=max(after + [0.1]) * 1.15)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # Below the axes: inside, the legend covered iteration 0's flip bar.
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3,
              frameon=False)
    ax.set_title(title)
    return _save(fig, out_png)
