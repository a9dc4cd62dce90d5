"""Head-to-head tie rule, win-rate arithmetic, AlpacaEval data paths and written outputs."""

from __future__ import annotations

import json

import pytest
from policy_fakes import ScriptedEngine

from rayalign.data.schema import Judgment
from rayalign.evaluation.alpaca_eval import (
    alpaca_win_rate, load_reference, match_outputs, select_subset, win_rate_from_annotations,
    write_alpaca,
)
from rayalign.evaluation.head_to_head import H2HSummary, combine_orders, head_to_head, write_h2h


@pytest.mark.parametrize("first,swapped,out", [
    ("A", "B", "win"),    # A first and A (shown second) in the swapped order
    ("B", "A", "loss"),
    ("A", "A", "tie"),    # judge always picks the first answer: position, not content
    ("B", "B", "tie"),
    ("tie", "B", "tie"),
    (None, "B", None),    # an error is not a tie
])
def test_both_orders_rule(first, swapped, out):
    assert combine_orders(first, swapped) == out


class TableJudge:
    """Answers by a table {(response_a, response_b): label}; None = judge error."""

    name = "table-judge"

    def __init__(self, table):
        self.table = table
        self.seen = []

    def judge(self, items):
        out = []
        for it in items:
            self.seen.append((it.response_a, it.response_b))
            lab = self.table[(it.response_a, it.response_b)]
            out.append(Judgment(item_id=it.id, judge=self.name, label=lab,
                                error=None if lab else "judge failed"))
        return out


def test_head_to_head_counts_and_win_rate_by_hand():
    # 5 prompts: win, loss, tie (position bias), tie, error.
    a = ["a1", "a2", "a3", "a4", "a5"]
    b = ["b1", "b2", "b3", "b4", "b5"]
    table = {("a1", "b1"): "A", ("b1", "a1"): "B",
             ("a2", "b2"): "B", ("b2", "a2"): "A",
             ("a3", "b3"): "A", ("b3", "a3"): "A",
             ("a4", "b4"): "tie", ("b4", "a4"): "B",
             ("a5", "b5"): None, ("b5", "a5"): "A"}
    judge = TableJudge(table)
    rows, s = head_to_head(judge, ["p"] * 5, a, b, "M2", "M1")
    assert (s.wins, s.losses, s.ties, s.errors, s.n) == (1, 1, 2, 1, 5)
    assert s.win_rate == pytest.approx((1 + 0.5 * 2) / 4)
    assert [r["outcome"] for r in rows] == ["win", "loss", "tie", "tie", None]
    assert len(judge.seen) == 10 and ("b3", "a3") in judge.seen
    with pytest.raises(ValueError, match="as many answers"):
        head_to_head(judge, ["p"], ["x"], [], "M2", "M1")


def test_head_to_head_with_an_llm_pairwise_judge(tmp_path):
    from rayalign.feedback.judges import PairwiseJudge

    # A judge that always prefers the longer answer, whatever the order: no ties.
    def longer(text):
        a = text.split("Response A:")[1].split("Response B:")[0]
        b = text.split("Response B:")[1].split("-----")[0]
        return "A" if len(a) > len(b) else "B"

    judge = PairwiseJudge(ScriptedEngine(pairwise=longer), both_orders=False, parse_retries=0)
    rows, s = head_to_head(judge, ["q1", "q2", "q3"], ["long answer here", "x", "long one too"],
                           ["short", "much longer answer", "s"], "M2", "M1")
    assert (s.wins, s.losses, s.ties) == (2, 1, 0)
    paths = write_h2h([s, H2HSummary("M3", "M1", "j", n=2, wins=0, ties=2)], tmp_path)
    assert paths["png"].stat().st_size > 1000
    md = paths["md"].read_text()
    assert "| M2 | M1 |" in md and json.loads(paths["json"].read_text())["rows"][1]["tie_pct"] == 100.0


def test_alpaca_win_rate_and_real_gpt4_annotations(shared_data, tmp_path):
    from rayalign.data.loaders import load_alpaca_eval_annotations, load_alpaca_eval_outputs

    d = shared_data / "alpaca_eval"
    ref = load_reference(d, subset=6, seed=1)
    assert len(ref) == 6 and ref == select_subset(load_reference(d), 6, seed=1)
    sft = match_outputs(ref, list(load_alpaca_eval_outputs(d / "outputs_phi-2-sft.jsonl")))
    # A judge that always prefers the reference (position-independent): win rate 0.
    judge = TableJudge({})
    judge.table = {(x, r.response): "B" for x, r in zip(sft, ref)}
    judge.table.update({(r.response, x): "A" for x, r in zip(sft, ref)})
    rows, s = alpaca_win_rate(judge, ref, sft, "phi-2-sft")
    assert s.n == 6 and s.win_rate == 0.0 and s.losses == 6
    # The real GPT-4 judgments: phi-2-dpo beats text-davinci-003 far more often than phi-2.
    base = win_rate_from_annotations(load_alpaca_eval_annotations(
        d / "annotations_gpt4_phi-2_vs_text_davinci_003.dev.jsonl"))
    dpo = win_rate_from_annotations(load_alpaca_eval_annotations(
        d / "annotations_gpt4_phi-2-dpo_vs_text_davinci_003.dev.jsonl"))
    assert base["n"] == dpo["n"] == 644
    assert 0.2 < base["win_rate"] < 0.4 < 0.7 < dpo["win_rate"]
    paths = write_alpaca({"phi-2": base, "phi-2-dpo": dpo}, tmp_path, notes=["GPT-4 judgments"])
    assert paths["png"].exists() and "phi-2-dpo" in paths["md"].read_text()


def test_win_rate_from_annotations_by_hand():
    from rayalign.data.schema import PairwiseItem

    def it(label, pref, tie=False):
        return PairwiseItem(prompt="p", response_a="a", response_b="b", label=label,
                            meta={"preference": pref, "tie": tie})

    r = win_rate_from_annotations([it("B", 2.0), it("A", 1.0), it(None, 0.0, tie=True),
                                   it(None, None), it("B", 1.8)])
    assert (r["wins"], r["losses"], r["ties"], r["null"]) == (2, 1, 1, 1)
    assert r["win_rate"] == pytest.approx(2.5 / 4)
    assert r["weighted_win_rate"] == pytest.approx((1.0 + 0.0 + 0.5 + 0.8) / 4)
