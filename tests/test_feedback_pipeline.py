"""The Ray Data labelling / generation pipeline: every record accounted for, cache honoured."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402
from test_feedback_judges import content_judge, pairs  # noqa: E402

from rayalign.engines.config import EngineConfig  # noqa: E402
from rayalign.feedback.cache import JudgmentCache  # noqa: E402
from rayalign.feedback.config import JudgeConfig  # noqa: E402
from rayalign.feedback.pipeline import generate_candidates_with_stats, label_pairs_with_stats  # noqa: E402


def test_label_pairs_faults_cache_and_rerun(ray_local, tmp_path):
    items = pairs(40)
    items.append(items[3].model_copy(update={"id": "dup-of-3"}))  # same content, other id
    with FakeOpenAIServer(answer=content_judge) as srv:
        srv.faults_for = {"question 5\n": ["429", "500"], "question 6\n": ["hang"],
                          "question 7\n": ["garbage"] * 50, "question 8\n": ["truncated"]}
        cfg = JudgeConfig(kind="openai", model="fake", base_urls=[srv.base_url], timeout_s=1.0,
                          max_retries=3, both_orders=True, parse_retries=1, concurrency=2,
                          actor_batch_size=8)
        cache = tmp_path / "judgments.sqlite"
        js, st = label_pairs_with_stats(items, cfg, cache_path=cache)
        n_first = len(srv.requests)

        assert len(js) == len(items) and [j.item_id for j in js] == [it.id for it in items]
        assert st.n_total == 41 and st.n_requested == 40 and st.n_duplicates == 1
        bad = {i for i, j in enumerate(js) if j.error}
        assert bad == {7}, [js[i].error for i in bad]
        assert js[7].error.startswith("parse error") and "lorem" in js[7].raw
        assert all(js[i].label == items[i].label for i in range(41) if i != 7)
        assert js[40].label == js[3].label
        assert st.n_errors == 1 and st.errors_by_kind == {"parse": 1}
        assert len(JudgmentCache(cache)) == 39  # errors are not cached

        # rerun: only the failed pair is asked again (it is the only one not cached)
        srv.faults_for = {}
        js2, st2 = label_pairs_with_stats(items, cfg, cache_path=cache)
        new = srv.requests[n_first:]
        assert st2.n_cached == 40 and st2.n_requested == 1
        assert len(new) == 2 and all("question 7\n" in r["text"] for r in new)
        assert js2[7].label == items[7].label and all(j.error is None for j in js2)


def test_generate_candidates(ray_local):
    with FakeOpenAIServer(answer=lambda m: "candidate for " + m[-1]["content"]) as srv:
        srv.faults_for = {"prompt 3": ["500"] * 20}
        cfg = EngineConfig(model="fake", base_urls=[srv.base_url], max_retries=1, timeout_s=2)
        prompts = [f"prompt {i}" for i in range(12)]
        cands, st = generate_candidates_with_stats(prompts, cfg, n=3, concurrency=2, batch_size=4)
    assert [c.prompt for c in cands] == prompts
    assert all(len(c.texts) == 3 and c.texts[0] == f"candidate for prompt {i}"
               for i, c in enumerate(cands) if i != 3)
    assert cands[3].error and not cands[3].texts and st.n_errors == 1


def _cfg(srv, **kw) -> JudgeConfig:
    base = dict(kind="openai", model="fake", base_urls=[srv.base_url], timeout_s=10.0,
                max_retries=0, both_orders=True, parse_retries=0, concurrency=1,
                actor_batch_size=4)
    base.update(kw)
    return JudgeConfig(**base)


def test_a_failed_order_costs_only_itself_on_rerun(ray_local, tmp_path):
    """Issue 14 item 4: the cache is per (pair, order) request, not per pair."""
    items = pairs(8)
    swapped_9 = "Response A: GOOD answer 5\n"  # pair 5's swapped order only
    with FakeOpenAIServer(answer=content_judge) as srv:
        srv.faults_for = {swapped_9: ["500"] * 50}
        cache = tmp_path / "j.sqlite"
        js, st = label_pairs_with_stats(items, _cfg(srv), cache_path=cache)
        assert [i for i, j in enumerate(js) if j.error] == [5]
        n_first = len(srv.requests)
        srv.faults_for = {}
        js2, _ = label_pairs_with_stats(items, _cfg(srv), cache_path=cache)
        new = srv.requests[n_first:]
    assert len(new) == 1 and swapped_9 in new[0]["text"]
    assert js2[5].label == items[5].label


def test_each_answer_is_committed_while_a_slow_one_is_in_flight(ray_local, tmp_path):
    """Items 3 and 6: answers are in the cache as they arrive, and requests keep flowing
    (later batches start) while one request waits 5 s; a kill then loses only that one."""
    import threading
    import time

    from rayalign.feedback.judges import request_cache_key

    items = pairs(24)
    cache = tmp_path / "j.sqlite"
    with FakeOpenAIServer(answer=content_judge, latency=0.05) as srv:
        cfg = _cfg(srv, both_orders=False, timeout_s=30.0)
        rkeys = [request_cache_key(k, "ab") for k in _pair_keys(items, cfg)]
        srv.faults_for = {"question 0\n": ["slow:12"]}
        out: dict = {}
        th = threading.Thread(target=lambda: out.update(r=label_pairs_with_stats(
            items, cfg, cache_path=cache)))
        th.start()
        deadline = time.monotonic() + 120
        while srv.n_requests("question 0\n") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        t_slow = time.monotonic()
        committed = 0
        while time.monotonic() - t_slow < 10 and committed < 23:
            time.sleep(0.25)
            committed = len(JudgmentCache(cache).get_requests(rkeys))
        slow_pending = time.monotonic() - t_slow < 12
        th.join(timeout=120)
    js, st = out["r"]
    assert st.n_ok == 24
    assert slow_pending
    # every pair but the slow one was answered and committed while it was still pending
    assert committed == 23, committed


def _pair_keys(items, cfg):
    from rayalign.feedback.judges import pair_cache_key

    return [pair_cache_key(cfg.cache_spec(), it) for it in items]


def test_all_failed_is_an_error_that_says_why(ray_local, tmp_path):
    """Item 11: a judge that never answers is an error (how many, why), not `n_ok 0`."""
    import socket

    import pytest

    from rayalign.errors import JudgeFailed

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = JudgeConfig(kind="openai", model="fake", base_urls=[f"http://127.0.0.1:{port}/v1"],
                      timeout_s=5.0, max_retries=0, concurrency=1)
    with pytest.raises(JudgeFailed) as exc:
        label_pairs_with_stats(pairs(3), cfg, cache_path=tmp_path / "j.sqlite")
    msg = str(exc.value)
    assert "all 3 pairs" in msg and "connection error" in msg and "timeout" not in msg
