"""AlpacaEval-style win rate: a model's answers vs the reference answers of the 805 prompts.

Win rate = (wins + ties / 2) / judged prompts, with the model's answer compared to the
reference model's answer (gpt4_1106_preview for AlpacaEval 2.0) by any judge. Judging in
both orders (default) removes the judge's position preference; a disagreement is a tie.

The data is CC BY-NC: it is always read from a user path (``/work/shared/data/alpaca_eval``
here), never shipped. ``win_rate_from_annotations`` recomputes a win rate from the real
GPT-4 judgments stored beside the outputs, which anchors what our judges report.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from rayalign.evaluation.head_to_head import H2HSummary, head_to_head

REFERENCE_FILE = "outputs_reference_gpt4_1106_preview.jsonl"


def select_subset(records: Sequence, subset: int | None = None, seed: int = 0,
                  datasets: Sequence[str] | None = None) -> list:
    """A reproducible subset of AlpacaEval records (optionally only some source datasets);
    order follows the canonical 805-prompt order."""
    recs = [r for r in records if not datasets or r.meta.get("dataset") in set(datasets)]
    if subset is None or subset >= len(recs):
        return list(recs)
    idx = sorted(random.Random(seed).sample(range(len(recs)), subset))
    return [recs[i] for i in idx]


def load_reference(data_dir: str | Path, subset: int | None = None, seed: int = 0,
                   datasets: Sequence[str] | None = None, reference_file: str = REFERENCE_FILE) -> list:
    from rayalign.data.loaders import load_alpaca_eval_outputs

    path = Path(data_dir) / reference_file
    if not path.is_file():
        raise FileNotFoundError(f"AlpacaEval reference outputs not found: {path} (the data is "
                                "CC BY-NC and not bundled; pass --data-dir)")
    return select_subset(list(load_alpaca_eval_outputs(path)), subset, seed, datasets)


def match_outputs(reference: Sequence, outputs: Sequence) -> list[str]:
    """The model's answer for each reference prompt (joined on the instruction's id)."""
    by_id = {o.id: o.response for o in outputs}
    missing = [r.prompt[:60] for r in reference if r.id not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} reference prompts have no model output "
                         f"(first: {missing[0]!r})")
    return [by_id[r.id] for r in reference]


def alpaca_win_rate(judge, reference: Sequence, model_answers: Sequence[str], model: str,
                    both_orders: bool = True) -> tuple[list[dict], H2HSummary]:
    """Win rate of ``model`` against the reference outputs, per prompt rows + summary."""
    prompts = [r.prompt for r in reference]
    refs = [r.response for r in reference]
    ref_name = reference[0].generator if reference else "reference"
    if both_orders:
        return head_to_head(judge, prompts, list(model_answers), refs, model, ref_name)
    from rayalign.data.schema import PairwiseItem, stable_id

    items = [PairwiseItem(id=stable_id(p, a, b), prompt=p, response_a=a, response_b=b)
             for p, a, b in zip(prompts, model_answers, refs)]
    summary = H2HSummary(model_a=model, model_b=ref_name, judge=getattr(judge, "name", "judge"))
    rows = []
    for p, j in zip(prompts, judge.judge(items)):
        lab = None if j.error else j.label
        out = {"A": "win", "B": "loss", "tie": "tie"}.get(lab) if lab else None
        summary.add(out)
        rows.append({"prompt": p, "outcome": out, "error": j.error})
    return rows, summary


def win_rate_from_annotations(items: Sequence, model_side: str = "B") -> dict:
    """Win rate of the model on ``model_side`` from stored pairwise judgments.

    Binary win rate counts ties (``meta["tie"]``) as half; null judgments are counted and
    left out. The weighted form uses AlpacaEval's expected preference (``meta["preference"]``
    in [1, 2]) directly: mean(preference - 1) for side B."""
    wins = ties = losses = nulls = 0
    weighted = []
    for it in items:
        pref = it.meta.get("preference")
        if it.label is None and not it.meta.get("tie"):
            nulls += 1
            continue
        if it.meta.get("tie"):
            ties += 1
        elif it.label == model_side:
            wins += 1
        else:
            losses += 1
        if pref is not None and 1.0 <= pref <= 2.0:
            weighted.append(pref - 1.0 if model_side == "B" else 2.0 - pref)
        elif pref == 0.0:
            weighted.append(0.5)
    judged = wins + ties + losses
    return {"n": len(items), "wins": wins, "ties": ties, "losses": losses, "null": nulls,
            "win_rate": (wins + 0.5 * ties) / judged if judged else float("nan"),
            "weighted_win_rate": sum(weighted) / len(weighted) if weighted else float("nan")}


def write_alpaca(rows_by_model: dict[str, dict], out_dir, name: str = "alpaca_eval",
                 notes: Sequence[str] = ()) -> dict:
    """Table (JSON + Markdown) and a bar chart of win rates (%)."""
    from rayalign.evaluation.tables import bar_plot, write_table

    rows = [{"model": m, **r} for m, r in rows_by_model.items()]
    paths = write_table(rows, out_dir, name, "AlpacaEval-style win rate vs reference", notes=notes)
    paths["png"] = bar_plot([r["model"] for r in rows],
                            {"win rate %": [100 * r["win_rate"] for r in rows]},
                            f"{out_dir}/{name}.png", "Win rate vs reference outputs", "%")
    return paths
