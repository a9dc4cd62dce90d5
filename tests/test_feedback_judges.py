"""Judges and the cache, in-process, against the fake server."""

from __future__ import annotations

import multiprocessing as mp
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

from rayalign.data.schema import Judgment, PairwiseItem  # noqa: E402
from rayalign.engines.config import EngineConfig  # noqa: E402
from rayalign.engines.openai_compat import OpenAICompatEngine  # noqa: E402
from rayalign.feedback.cache import JudgmentCache  # noqa: E402
from rayalign.feedback.config import JudgeConfig, build_judge  # noqa: E402
from rayalign.feedback.judges import PairwiseJudge, RubricJudge, ScoreItem  # noqa: E402
from rayalign.feedback.templates import ALPACA_PAIRWISE  # noqa: E402


def content_judge(messages) -> str:
    """Prefers the response containing GOOD, wherever it is shown: an unbiased judge."""
    text = messages[-1]["content"]
    if "model_1" in text:  # AlpacaEval-style template
        first = text.split("Answer of model_1:")[1].split("Answer of model_2:")[0]
        win = 1 if "GOOD" in first else 2
        return f"[{{'model': 'model_1', 'rank': {1 if win == 1 else 2}}}, {{'model': 'model_2', 'rank': {2 if win == 1 else 1}}}]"
    if "<response>" in text:  # rubric
        resp = text.split("<response>")[1].split("</response>")[0]
        return f"Justification.\nScore: {4 if 'GOOD' in resp else 1}"
    a = re.search(r"Response A: (.*?)\n\nResponse B:", text, re.S).group(1)
    return f"Rationale: looked.\nPreference: Response {'A' if 'GOOD' in a else 'B'}"


def pairs(n: int, good_in_a=lambda i: i % 2 == 0) -> list[PairwiseItem]:
    out = []
    for i in range(n):
        good, bad = f"GOOD answer {i}", f"bad answer {i}"
        a, b = (good, bad) if good_in_a(i) else (bad, good)
        out.append(PairwiseItem(prompt=f"question {i}", response_a=a, response_b=b,
                                label="A" if good_in_a(i) else "B"))
    return out


def engine(srv, **kw):
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("max_retries", 2)
    return OpenAICompatEngine(EngineConfig(model="fake", base_urls=[srv.base_url], **kw))


def test_both_orders_agreeing_judge_recovers_labels():
    with FakeOpenAIServer(answer=content_judge) as srv:
        items = pairs(10)
        js = PairwiseJudge(engine(srv), both_orders=True).judge(items)
        assert len(srv.requests) == 20
    assert [j.label for j in js] == [it.label for it in items]
    assert all(j.score_a in (0.0, 1.0) and j.item_id == it.id for j, it in zip(js, items))


def test_position_biased_judge_gives_ties_with_both_orders():
    with FakeOpenAIServer() as srv:  # the default answer always says "Response A"
        items = pairs(6)
        both = PairwiseJudge(engine(srv), both_orders=True).judge(items)
        one = PairwiseJudge(engine(srv), both_orders=False).judge(items)
    assert {j.label for j in both} == {"tie"} and all(j.score_a == 0.5 for j in both)
    assert {j.label for j in one} == {"A"}


def test_garbage_is_retried_then_recorded_with_raw_text():
    with FakeOpenAIServer(answer=content_judge) as srv:
        items = pairs(4)
        srv.faults_for = {"question 1": ["garbage"], "question 2": ["garbage"] * 10,
                          "question 3": ["truncated"]}
        js = PairwiseJudge(engine(srv), both_orders=False, parse_retries=2).judge(items)
        assert srv.n_requests("question 2") == 3  # 1 + 2 parse retries
    assert js[0].label == "A" and js[1].label == "B" and js[3].label == "B"  # retried ok
    assert js[2].label is None and js[2].error.startswith("parse error")
    assert "lorem ipsum" in js[2].raw


def test_request_failure_is_a_row():
    with FakeOpenAIServer(answer=content_judge) as srv:
        srv.faults_for = {"question 0": ["500"] * 20}
        js = PairwiseJudge(engine(srv, max_retries=1), both_orders=True).judge(pairs(3))
    assert js[0].error and "request failed" in js[0].error and js[0].label is None
    assert all(j.error is None for j in js[1:])


def test_rubric_and_alpaca_templates():
    with FakeOpenAIServer(answer=content_judge) as srv:
        rub = RubricJudge(engine(srv))
        scores = rub.score([ScoreItem(id="x", prompt="q", response="GOOD"),
                            ScoreItem(id="y", prompt="q", response="meh")])
        pj = rub.judge(pairs(4))
        alp = PairwiseJudge(engine(srv), template=ALPACA_PAIRWISE).judge(pairs(4))
    assert [s.score_a for s in scores] == [4.0, 1.0]
    assert [j.label for j in pj] == ["A", "B", "A", "B"] and pj[0].score_a == 4.0
    assert [j.label for j in alp] == ["A", "B", "A", "B"]


def test_build_judge_from_config_and_cache_spec():
    cfg = JudgeConfig(kind="openai", model="fake", base_urls=["http://127.0.0.1:9/v1"])
    j = build_judge(cfg)
    assert j.spec == cfg.cache_spec() and isinstance(j, PairwiseJudge)
    # operational fields do not change the cache identity; answer-changing ones do
    assert cfg.model_copy(update={"base_urls": ["http://127.0.0.1:8/v1"], "concurrency": 9}).cache_spec() == cfg.cache_spec()
    assert cfg.model_copy(update={"both_orders": False}).cache_spec() != cfg.cache_spec()
    assert JudgeConfig(kind="openai", model="fake", template="additive_rubric").cache_spec() != cfg.cache_spec()
    assert isinstance(build_judge(JudgeConfig(kind="openai", model="f", template="additive_rubric",
                                              base_urls=["http://localhost:9/v1"])), RubricJudge)
    with pytest.raises(ValueError, match="path"):  # replay needs its recorded file
        JudgeConfig(kind="replay")
    with pytest.raises(ValueError, match="not available"):
        build_judge(JudgeConfig.model_construct(kind="no-such-kind"))


def _writer(path: str, start: int) -> None:
    c = JudgmentCache(path)
    for i in range(start, start + 50):
        c.put_many([(f"k{i}", Judgment(item_id=str(i), judge="j", label="A"))])


def test_cache_concurrent_writers(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("fork")  # the children only write sqlite: fork is safe and fast
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 25, 50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    c = JudgmentCache(path)
    assert len(c) == 100
    got = c.get_many([f"k{i}" for i in range(120)])
    assert len(got) == 100 and got["k7"].label == "A"
