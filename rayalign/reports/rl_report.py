"""The report of an RL run (``rayalign rl``): per-step curves and a short Markdown summary.

Inputs are plain rows (``policy.rl.step_metrics``) and the held-out before/after numbers, so
the CLI, the benchmark and a notebook can all call it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from rayalign.reports.plots import _save, plt

PANELS = (("reward", "reward_std", "RM reward (mean ± std over completions)", "#2563eb"),
          ("kl", None, "KL to the reference policy", "#dc2626"),
          ("completion_length", None, "completion length (tokens)", "#15803d"))


def plot_rl_curves(rows: Sequence[Mapping[str, Any]], out_png: str | Path,
                   title: str = "RL against the reward model") -> Path:
    """Three panels over optimizer steps: reward (± std band), KL, completion length."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    steps = [int(r["step"]) for r in rows]
    for ax, (key, sd_key, name, color) in zip(axes, PANELS):
        pts = [(s, float(r[key]), float(r[sd_key]) if sd_key and r.get(sd_key) is not None else None)
               for s, r in zip(steps, rows) if r.get(key) is not None]
        if pts:
            xs, ys, sds = zip(*pts)
            ax.plot(xs, ys, color=color, marker="o", ms=3, lw=1.6)
            if sd_key and all(s is not None for s in sds):
                ax.fill_between(xs, [y - s for y, s in zip(ys, sds)], [y + s for y, s in zip(ys, sds)],
                                color=color, alpha=0.15)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("optimizer step")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.25)
    fig.suptitle(title)
    return _save(fig, out_png)


def _fmt(x: Any, nd: int = 4) -> str:
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def write_rl_report(out_md: str | Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                    heldout: Mapping[str, Any] | None, plot_png: str | Path | None) -> Path:
    """``report.md``: what ran, first vs last step, held-out reward before/after, the plot."""
    out = Path(out_md)
    cfg = meta.get("config", {})
    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    lines = [f"# RL run: {meta.get('algorithm', '?').upper()} against the reward model", "",
             f"- policy: `{meta.get('base_model')}` -> `{meta.get('model_dir')}`",
             f"- reward: `{meta.get('reward', {}).get('model_dir') or meta.get('reward', {}).get('url')}`",
             f"- prompts: {meta.get('num_prompts')} trained on "
             f"({meta.get('skipped_long_prompts', 0)} left out as too long)",
             f"- steps: {len(rows)}, beta (KL coef) {cfg.get('beta')}, num_generations "
             f"{cfg.get('num_generations')}, max_completion_length {cfg.get('max_completion_length')}, "
             f"lr {cfg.get('learning_rate')}, workers {cfg.get('scaling', {}).get('num_workers')}",
             f"- wall time: {_fmt(meta.get('wall_seconds'), 1)} s", "",
             "## Training (per step, TRL's log)", "",
             "| | step | reward mean | reward std | KL | completion length |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in (("first", first), ("last", last)):
        lines.append(f"| {name} | {_fmt(r.get('step'))} | {_fmt(r.get('reward'))} | "
                     f"{_fmt(r.get('reward_std'))} | {_fmt(r.get('kl'))} | "
                     f"{_fmt(r.get('completion_length'), 1)} |")
    lines.append("")
    if heldout:
        b, a = heldout["before"], heldout["after"]
        lines += ["## Held-out prompts (greedy answers, scored by the same RM)", "",
                  "| | n | reward mean | reward std |", "|---|---:|---:|---:|",
                  f"| before RL | {b['n']} | {_fmt(b['reward_mean'])} | {_fmt(b['reward_std'])} |",
                  f"| after RL | {a['n']} | {_fmt(a['reward_mean'])} | {_fmt(a['reward_std'])} |", "",
                  f"Win rate of the RL policy over the starting policy under the RM: "
                  f"{100 * heldout['win_rate']:.1f} % (ties count half).", ""]
    if plot_png:
        lines += [f"![reward, KL and completion length per step]({Path(plot_png).name})", ""]
    out.write_text("\n".join(lines))
    return out


def report_rl_run(run_dir: str | Path) -> Path:
    """Plot + ``report.md`` of a finished ``rayalign rl`` run, from the files in its directory."""
    run = Path(run_dir)
    summary = json.loads((run / "rl_summary.json").read_text())
    metrics = run / "rl_metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
    png = plot_rl_curves(rows, run / "rl_curves.png",
                         title=f"{summary['algorithm'].upper()} against the RM ({len(rows)} steps)")
    return write_rl_report(run / "report.md", rows, summary["meta"], summary.get("heldout"), png)
