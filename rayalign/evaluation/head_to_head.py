"""Head-to-head: two models' answers to the same prompts, judged in both orders.

The study (after Self-Rewarding LMs) asks the judge twice, with the two answers swapped;
a model wins a prompt only when both orders agree, and a disagreement — the judge
following position rather than content — is a tie. A judge error in either order is
recorded as an error, not as a tie, so a broken judge cannot look like an even match.

Any ``rayalign.feedback.judges.Judge`` works here (LLM pairwise judge with a single order,
rubric judge, simulated judge): this module does the swapping itself so the rule is the
same whatever the judge does internally.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from rayalign.data.schema import Judgment, PairwiseItem, stable_id


def combine_orders(first: str | None, swapped: str | None) -> str | None:
    """Outcome for model A from two verdicts.

    ``first``: the judge's label with A's answer shown first; ``swapped``: its label with
    the answers swapped (so "B" there means A's answer). Returns "win", "loss", "tie", or
    None when either verdict is missing (judge error)."""
    if first is None or swapped is None:
        return None
    if first == "tie" or swapped == "tie":
        return "tie"
    a_first = first == "A"
    a_swapped = swapped == "B"
    if a_first and a_swapped:
        return "win"
    if not a_first and not a_swapped:
        return "loss"
    return "tie"


@dataclass
class H2HSummary:
    model_a: str
    model_b: str
    judge: str
    n: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    errors: int = 0

    def add(self, outcome: str | None) -> None:
        """Count one prompt's outcome ("win" / "tie" / "loss", None = judge error)."""
        self.n += 1
        if outcome is None:
            self.errors += 1
        else:
            key = {"win": "wins", "tie": "ties", "loss": "losses"}[outcome]
            setattr(self, key, getattr(self, key) + 1)

    @property
    def judged(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        """(wins + ties/2) / judged: A's share of the match, 0.5 = even."""
        return (self.wins + 0.5 * self.ties) / self.judged if self.judged else float("nan")

    def as_row(self) -> dict:
        d = asdict(self)
        j = self.judged or 1
        d.update(win_pct=100 * self.wins / j, tie_pct=100 * self.ties / j,
                 loss_pct=100 * self.losses / j, win_rate=self.win_rate)
        return d


def _label(j: Judgment) -> str | None:
    return None if j.error or j.label is None else j.label


def head_to_head(judge, prompts: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str],
                 model_a: str = "A", model_b: str = "B") -> tuple[list[dict], H2HSummary]:
    """Judge every prompt in both orders; per-prompt rows and the win/tie/loss summary."""
    if not (len(prompts) == len(answers_a) == len(answers_b)):
        raise ValueError(f"head-to-head needs as many answers as prompts: {len(prompts)} prompts, "
                         f"{len(answers_a)} answers of {model_a}, {len(answers_b)} of {model_b}")
    ab = [PairwiseItem(id=stable_id(p, a, b, "ab"), prompt=p, response_a=a, response_b=b)
          for p, a, b in zip(prompts, answers_a, answers_b)]
    ba = [PairwiseItem(id=stable_id(p, b, a, "ba"), prompt=p, response_a=b, response_b=a)
          for p, a, b in zip(prompts, answers_a, answers_b)]
    got = judge.judge(ab + ba)
    first, swapped = got[:len(ab)], got[len(ab):]
    summary = H2HSummary(model_a=model_a, model_b=model_b, judge=getattr(judge, "name", "judge"))
    rows = []
    for p, j1, j2 in zip(prompts, first, swapped):
        outcome = combine_orders(_label(j1), _label(j2))
        summary.add(outcome)
        rows.append({"prompt": p, "outcome": outcome, "label_a_first": _label(j1),
                     "label_b_first": _label(j2), "error": j1.error or j2.error})
    return rows, summary


def write_h2h(summaries: Sequence[H2HSummary], out_dir, name: str = "head_to_head") -> dict:
    """Table (JSON + Markdown) and a stacked win/tie/loss bar chart."""
    from rayalign.evaluation.tables import bar_plot, write_table

    rows = [s.as_row() for s in summaries]
    cols = ["model_a", "model_b", "judge", "n", "wins", "ties", "losses", "errors",
            "win_pct", "tie_pct", "loss_pct", "win_rate"]
    paths = write_table(rows, out_dir, name, "Head-to-head (both orders; disagreement = tie)", cols)
    labels = [f"{s.model_a} vs {s.model_b}" for s in summaries]
    paths["png"] = bar_plot(labels, {"win %": [r["win_pct"] for r in rows],
                                     "tie %": [r["tie_pct"] for r in rows],
                                     "loss %": [r["loss_pct"] for r in rows]},
                            f"{out_dir}/{name}.png", "Head-to-head", "% of judged prompts",
                            stacked=True)
    return paths
