"""Reward-model serving benchmark: p50/p99 latency and throughput of `rayalign rm serve`.

Starts the Ray Serve RM app on 127.0.0.1 (a tiny offline RM unless --model-dir is given),
then drives it with a *bounded* closed-loop load from httpx (fixed request count per level,
hard time cap, loopback only) at several concurrency levels, and prints one table.

    .venv/bin/python benchmarks/serve_rm.py                       # tiny RM, CPU
    .venv/bin/python benchmarks/serve_rm.py --model-dir runs/rm_tiny/model --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


async def _level(url: str, concurrency: int, n_requests: int, items_per_request: int,
                 time_cap_s: float) -> dict:
    import httpx

    body = {"items": [{"prompt": "Human: how do I bake bread? Assistant:",
                       "response": f" Mix flour, water and salt, knead, rise and bake {i}."}
                      for i in range(items_per_request)]}
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + time_cap_s
    lock = asyncio.Lock()

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal sent, errors
            while True:
                async with lock:
                    if sent >= n_requests or time.perf_counter() > deadline:
                        return
                    sent += 1
                t0 = time.perf_counter()
                r = await client.post(f"{url}/score", json=body)
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    latencies.append(dt)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ok = len(latencies)
    return {"concurrency": concurrency, "requests": ok, "errors": errors,
            "items_per_req": items_per_request,
            "p50_ms": 1000 * _pct(latencies, 50), "p99_ms": 1000 * _pct(latencies, 99),
            "mean_ms": 1000 * (statistics.fmean(latencies) if latencies else float("nan")),
            "req_s": ok / wall if wall else 0.0, "items_s": ok * items_per_request / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=None, help="trained RM dir (default: tiny random RM)")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    ap.add_argument("--requests", type=int, default=200, help="requests per level (bounded)")
    ap.add_argument("--items", type=int, default=4, help="(prompt, response) items per request")
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per level, at most")
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--batch-wait", default=None,
                    help="comma-separated batch_wait_timeout_s values to compare side by side "
                         "(default: the config's default only)")
    args = ap.parse_args(argv)

    from ray import serve

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray
    from rayalign.serve.reward_app import RMServeConfig, start_reward_server

    model_dir = args.model_dir
    if model_dir is None:
        from rayalign.models.tiny import build_tiny_reward_model

        model_dir = str(build_tiny_reward_model(Path(tempfile.gettempdir()) / "rayalign-bench-rm"))
    init_ray(RayConfig())
    default_wait = RMServeConfig.model_fields["batch_wait_timeout_s"].default
    waits = [float(w) for w in args.batch_wait.split(",")] if args.batch_wait else [default_wait]
    port = _free_port()
    rows = []
    try:
        for wait in waits:  # same process, same proxy: only the batch wait changes
            cfg = RMServeConfig(model_dir=model_dir, port=port, num_replicas=args.replicas,
                                max_batch_size=args.max_batch_size, batch_wait_timeout_s=wait)
            url = start_reward_server(cfg)
            asyncio.run(_level(url, 1, 5, args.items, 30))  # warm-up, not reported
            for c in args.concurrency.split(","):
                row = asyncio.run(_level(url, int(c), args.requests, args.items, args.time_cap))
                rows.append({**row, "wait": wait})
    finally:
        serve.shutdown()
    import platform

    print(f"\nReward model on Ray Serve ({'tiny random RM' if args.model_dir is None else model_dir}), "
          f"{args.replicas} replica(s), max_batch_size {args.max_batch_size}, "
          f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}; loopback HTTP; "
          f"load average {os.getloadavg()[0]:.1f}")
    head = ("batch wait s", "concurrency", "requests", "errors", "items/req", "p50 ms", "p99 ms", "mean ms",
            "req/s", "items/s")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['wait']:g} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['items_per_req']} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_ms']:.1f} | {r['req_s']:.1f} | "
              f"{r['items_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
