"""Judge agreement on the real reference data (HH human labels, AlpacaEval GPT-4 judgments)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

from rayalign.data.schema import Judgment  # noqa: E402
from rayalign.engines.config import EngineConfig  # noqa: E402
from rayalign.engines.openai_compat import OpenAICompatEngine  # noqa: E402
from rayalign.feedback.agreement import judge_agreement  # noqa: E402
from rayalign.feedback.inputs import load_pairs  # noqa: E402
from rayalign.feedback.judges import PairwiseJudge  # noqa: E402
from rayalign.feedback.templates import ALPACA_PAIRWISE  # noqa: E402


def test_hh_pairs_are_shown_in_random_order(shared_data):
    items = load_pairs(shared_data / "hh_rlhf_harmless_test.dev.jsonl.gz", "auto", limit=200, seed=3)
    assert len(items) == 200 and all(it.label in ("A", "B") for it in items)
    share_a = sum(it.label == "A" for it in items) / 200
    assert 0.4 < share_a < 0.6  # chosen is not always first
    assert items[0].prompt.rstrip().endswith("Assistant:")
    again = load_pairs(shared_data / "hh_rlhf_harmless_test.dev.jsonl.gz", "hh_rlhf", limit=200, seed=3)
    assert [i.label for i in again] == [i.label for i in items]  # seeded


def test_always_first_judge_on_alpaca_eval_gpt4_labels(shared_data):
    """A judge that always ranks model_1 first agrees with GPT-4 exactly where GPT-4 chose A."""
    path = shared_data / "alpaca_eval" / "annotations_gpt4_phi-2_vs_text_davinci_003.dev.jsonl"
    items = [it for it in load_pairs(path, "auto") if it.label][:40]
    always_1 = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
    with FakeOpenAIServer(answer=always_1) as srv:
        eng = OpenAICompatEngine(EngineConfig(model="fake", base_urls=[srv.base_url], concurrency_per_endpoint=8))
        one = PairwiseJudge(eng, ALPACA_PAIRWISE, both_orders=False).judge(items)
        both = PairwiseJudge(eng, ALPACA_PAIRWISE, both_orders=True).judge(items)
        eng.close()
    ag = judge_agreement(items, one)
    share_a = sum(it.label == "A" for it in items) / len(items)
    assert ag["n"] == 40 and ag["coverage"] == 1.0 and ag["share_a"] == 1.0
    assert abs(ag["accuracy_decided"] - share_a) < 1e-9
    ag2 = judge_agreement(items, both)  # both orders expose the pure position bias: all ties
    assert ag2["ties"] == 40 and ag2["coverage"] == 0.0 and ag2["accuracy_ties_half"] == 0.5


def test_agreement_counts_errors_and_ties():
    from rayalign.data.schema import PairwiseItem

    items = [PairwiseItem(prompt="p", response_a=f"a{i}", response_b="b", label="A") for i in range(4)]
    js = [Judgment(item_id=items[0].id, judge="j", label="A"),
          Judgment(item_id=items[1].id, judge="j", label="B"),
          Judgment(item_id=items[2].id, judge="j", label="tie"),
          Judgment(item_id=items[3].id, judge="j", error="parse error")]
    ag = judge_agreement(items, js)
    assert (ag["decided"], ag["ties"], ag["errors"]) == (2, 1, 1)
    assert ag["accuracy_decided"] == 0.5 and ag["accuracy_ties_half"] == 0.5 and ag["accuracy_all"] == 0.25
