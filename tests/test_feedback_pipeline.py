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
