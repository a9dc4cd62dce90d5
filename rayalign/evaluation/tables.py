"""Writing evaluation results: one JSON table, one Markdown table and one PNG per result.

Every ``rayalign eval`` command and the benchmark end here, so a result is always readable
by a person (Markdown, plot) and by a program (JSON) from the same rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from rayalign.runs import atomic_write_json, atomic_write_text


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.3f}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (columns default to the first row's keys)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out) + "\n"


def write_table(rows: Sequence[dict[str, Any]], out_dir: str | Path, name: str, title: str,
                columns: Sequence[str] | None = None, notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``<name>.json`` and ``<name>.md``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jp, mp = out / f"{name}.json", out / f"{name}.md"
    atomic_write_json(jp, {"title": title, "rows": list(rows), "notes": list(notes)})
    md = f"# {title}\n\n" + markdown_table(rows, columns)
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    atomic_write_text(mp, md)
    return {"json": jp, "md": mp}


def bar_plot(labels: Sequence[str], series: dict[str, Sequence[float]], path: str | Path,
             title: str, ylabel: str = "", stacked: bool = False) -> Path:
    """A grouped (or stacked) bar chart written with matplotlib's Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(labels) + 2), 4.0))
    n = max(1, len(series))
    width = 0.8 if stacked else 0.8 / n
    xs = list(range(len(labels)))
    bottom = [0.0] * len(labels)
    for k, (name, vals) in enumerate(series.items()):
        vals = [0.0 if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in vals]
        if stacked:
            ax.bar(xs, vals, width, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, vals)]
        else:
            ax.bar([x + (k - (n - 1) / 2) * width for x in xs], vals, width, label=name)
    ax.set_xticks(xs)
    import textwrap

    ax.set_xticklabels(["\n".join(textwrap.wrap(str(lb), 24)) or str(lb) for lb in labels],
                       fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
