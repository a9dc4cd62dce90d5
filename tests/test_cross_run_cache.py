"""The cross-run cache: a second run in a NEW run dir on the same data pays nothing twice."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from rayalign import cache
from rayalign.config import validate_config
from rayalign.rlthf.config import RLTHFConfig
from rayalign.rlthf.driver import RLTHFLoop
from rayalign.runs import read_jsonl

SECRET = "sk-test-DO-NOT-STORE-4711"


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.ENV_DIR)
    assert cache.cache_root(cache.CacheConfig()) == Path("~/.cache/rayalign").expanduser()
    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path / "env"))
    assert cache.cache_root(cache.CacheConfig()) == tmp_path / "env"
    # the config beats the environment; off beats both
    assert cache.cache_root(cache.CacheConfig(dir=str(tmp_path / "cfg"))) == tmp_path / "cfg"
    assert cache.cache_root(cache.CacheConfig(enabled=False)) is None
    monkeypatch.setenv(cache.ENV_OFF, "1")
    assert cache.cache_root(cache.CacheConfig(dir=str(tmp_path / "cfg"))) is None


def _writer(root: str, start: int, n: int) -> None:
    store = cache.SharedEmbeddings(Path(root), "enc", "fp32")
    for i in range(start, start + n, 10):  # many small transactions, interleaved with the others
        texts = [f"text {j}" for j in range(i, i + 10)]
        store.put_many(texts, np.array([[j, j + 0.5] for j in range(i, i + 10)], dtype=np.float32))


def test_shared_embeddings_concurrent_writers(tmp_path):
    """Four processes write overlapping keys at once: no error, no lost or torn vector."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 300)) for s in (0, 100, 200, 300)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = cache.SharedEmbeddings(tmp_path, "enc", "fp32")
    got = store.get_many([f"text {j}" for j in range(600)])
    assert len(got) == 600 and len(store) == 600
    assert all(np.array_equal(got[f"text {j}"], [j, j + 0.5]) for j in range(600))
    # another encoder (or precision) never sees these vectors
    assert cache.SharedEmbeddings(tmp_path, "enc", "bf16").get_many(["text 1"]) == {}


def _config(server, xcache: Path, enabled: bool = True) -> RLTHFConfig:
    judge = {"kind": "openai", "model": "fake-judge", "base_urls": [server.base_url],
             "api_key_env": "RAYALIGN_TEST_KEY", "both_orders": False, "concurrency": 1,
             "max_retries": 1, "timeout_s": 10}
    return validate_config(RLTHFConfig, {
        "name": "xcache", "seed": 0,
        "data": {"path": "bundled:hh_rlhf_harmless", "limit": 24, "test_fraction": 0.2},
        "labeller": {"kind": "judge", "judge": judge},
        "ground_truth": {"mode": "raw"},
        "reward_model": {"embedding_head": {"num_actors": 1}},
        "iterations": 1, "human_budget_pct": 5.0, "baselines": [], "final_relabel": False,
        "cache": {"enabled": enabled, "dir": str(xcache)},
    })


@pytest.mark.slow  # three small RLTHF runs: ~2 min on the shared 2 cores
def test_second_run_in_a_new_run_dir_pays_no_embedding_and_no_judge_call(ray_local, tmp_path, monkeypatch):
    from fake_openai_server import FakeOpenAIServer

    import rayalign.rewards.embedding_head as eh

    monkeypatch.setenv("RAYALIGN_TEST_KEY", SECRET)
    encoded: list[int] = []
    real = eh.embed_with_ray

    def counting(texts, *a, **kw):
        encoded.append(len(texts))
        return real(texts, *a, **kw)

    monkeypatch.setattr(eh, "embed_with_ray", counting)
    xcache = tmp_path / "xcache"
    with FakeOpenAIServer() as server:
        cfg = _config(server, xcache)
        RLTHFLoop(cfg, tmp_path / "run1").run_loop()
        paid_texts, paid_requests = sum(encoded), server.n_requests()
        n = len(read_jsonl(tmp_path / "run1" / "data" / "ai_judgments.jsonl"))  # shard pairs
        assert paid_texts > 2 * n and n >= 15 and paid_requests == n  # one request per pair
        man1 = json.loads((tmp_path / "run1" / "manifest.json").read_text())
        assert man1["cache"]["embeddings_misses"] == paid_texts
        assert man1["cache"]["judgments_misses"] == n and "judgments_hits" not in man1["cache"]

        RLTHFLoop(cfg, tmp_path / "run2").run_loop()  # a NEW run dir, same data, same judge
        assert sum(encoded) == paid_texts            # not one text encoded again
        assert server.n_requests() == paid_requests  # not one judge request
        man2 = json.loads((tmp_path / "run2" / "manifest.json").read_text())
        assert man2["cache"] == {"embeddings_hits": paid_texts, "judgments_hits": n}
        # same answers, and the new run dir holds them itself (copied from the shared cache)
        labels = [[r["label"] for r in read_jsonl(tmp_path / run / "data" / "ai_judgments.jsonl")]
                  for run in ("run1", "run2")]
        assert labels[0] == labels[1] and len(labels[0]) == n
        assert (tmp_path / "run2" / "cache" / "judgments.sqlite").stat().st_size > 0

        # the off switch: a third new run dir pays again
        RLTHFLoop(_config(server, xcache, enabled=False), tmp_path / "run3").run_loop()
        assert sum(encoded) == 2 * paid_texts and server.n_requests() == 2 * paid_requests

    # keys and stored files never hold the API key (nor any file of the cache)
    files = [p for p in xcache.rglob("*") if p.is_file()]
    assert files and all(SECRET.encode() not in p.read_bytes() for p in files)
    assert oct((xcache / "judgments.sqlite").stat().st_mode & 0o777) == "0o600"


def test_cli_no_cache_flag_and_env(monkeypatch, tmp_path):
    """``--no-cache`` and RAYALIGN_NO_CACHE switch the cache off before the driver actor exists."""
    from rayalign.cache import from_env

    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path))
    assert from_env(cache.CacheConfig()).dir == str(tmp_path)  # the user's env reaches the actor
    monkeypatch.setenv(cache.ENV_OFF, "1")
    assert from_env(cache.CacheConfig()).enabled is False
    with pytest.raises(Exception):
        cache.CacheConfig(enabled=True, unknown=1)


def test_layered_judgment_cache_serves_a_new_run_from_the_shared_file(tmp_path):
    """Run 1 writes through to the shared file; run 2 (another run file) reads it and keeps a copy."""
    import pickle

    from rayalign.data.schema import Judgment
    from rayalign.feedback.cache import JudgmentCache, LayeredJudgmentCache, open_judgment_cache

    shared = tmp_path / "x" / "judgments.sqlite"
    run1 = open_judgment_cache(tmp_path / "r1.sqlite", shared)
    assert isinstance(run1, LayeredJudgmentCache)
    run1.put_many([("k1", Judgment(item_id="a", judge="j", label="A"))])
    run1.put_request("k1/o", '{"x": 1}')
    run2 = pickle.loads(pickle.dumps(open_judgment_cache(tmp_path / "r2.sqlite", shared)))  # as an actor gets it
    assert run2.get_many(["k1", "k2"])["k1"].label == "A"
    assert run2.get_requests(["k1/o"]) == {"k1/o": '{"x": 1}'}
    assert JudgmentCache(tmp_path / "r2.sqlite").get("k1") is not None  # copied into run 2's own file
    # the shared path given as the run's own path: one plain cache, no double writes
    assert isinstance(open_judgment_cache(shared, shared), JudgmentCache)
    assert open_judgment_cache(None, None) is None


def test_shared_arrays_keep_dtype_and_shape_and_ignore_rewrites(tmp_path):
    arrays = cache.SharedArrays(tmp_path)
    a = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    b = np.array([1.5, -2.0], dtype=np.float32)
    arrays.put_many(["a", "b"], [a, b])
    arrays.put_many(["a"], [np.zeros((1,), dtype=np.int64)])  # same key: first value stays
    got = cache.SharedArrays(tmp_path).get_many(["a", "b", "missing"])
    assert set(got) == {"a", "b"}
    assert got["a"].dtype == np.float16 and got["a"].shape == (2, 3, 4) and np.array_equal(got["a"], a)
    assert got["b"].dtype == np.float32 and np.array_equal(got["b"], b)
    assert len(arrays) == 2
