"""Shared fixtures: one embedded Ray cluster per test session (ray.init costs seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAYALIGN_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's real data folder (``../shared/data``); tests needing it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """The embedded local Ray cluster, started once and shared by all tests that need it."""
    import ray

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def own_cross_run_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cross-run cache (``rayalign.cache``), never ~/.cache/rayalign:
    tests that count encoder or judge calls must not be served by another test's answers."""
    from rayalign import cache

    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path_factory.mktemp("xcache")))
    monkeypatch.delenv(cache.ENV_OFF, raising=False)
    yield
    cache.activate(None)
