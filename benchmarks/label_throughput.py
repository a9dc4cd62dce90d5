"""Labelling throughput: how close the judge fan-out gets to the concurrency limit C / L.

Part 1 — a local OpenAI-compatible server (tests/fake_openai_server.py, in its own process)
answers every request after a fixed latency L. A ``PairwiseJudge`` (one order, so one
request per label; parsing included) over ``OpenAICompatEngine`` with C requests in flight
can at best produce C / L labels/s. We label 8*C pairs per C and report labels/s and the
share of that limit reached. One extra row runs the same through the Ray Data pipeline
(``label_pairs``: 2 actors x C/2 in flight each, 32*C pairs, actor start-up included).

Part 2 — a real model: SmolLM2-135M-Instruct judging HH-RLHF harmless pairs on CPU through
``HFLocalEngine`` (greedy, verdict only, answer prefilled with "Preference: Response"), labels/s and agreement with the human labels
(pairs shown in a seeded random A/B order), one order and both orders.

    .venv/bin/python benchmarks/label_throughput.py [--latency 1.0] [--cs 1,8,32,128,256]
        [--real-pairs 20] [--no-ray] [--no-real]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from rayalign.data.schema import PairwiseItem  # noqa: E402
from rayalign.engines.config import EngineConfig  # noqa: E402
from rayalign.engines.openai_compat import OpenAICompatEngine  # noqa: E402
from rayalign.feedback.judges import PairwiseJudge  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_openai_server.py"),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    port = json.loads(proc.stdout.readline())["port"]
    return proc, f"http://127.0.0.1:{port}/v1"


def synthetic_pairs(n: int, tag: str) -> list[PairwiseItem]:
    return [PairwiseItem(prompt=f"[{tag}] question {i}: how do I bake bread?",
                         response_a=f"Mix flour, water, salt and yeast ({i}).",
                         response_b=f"I don't know ({i}).") for i in range(n)]


def run_queue_wait_s() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (Linux schedstat):
    how much of the wall time other processes on the machine took from us."""
    total = 0
    for t in Path("/proc/self/task").glob("*"):
        try:
            total += int((t / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def fake_rows(url: str, latency: float, cs: list[int], with_ray: bool, server_pid: int) -> list[dict]:
    import psutil

    server = psutil.Process(server_pid)
    rows = []
    for c in cs:
        n = 8 * c
        eng = OpenAICompatEngine(EngineConfig(model="fake", base_urls=[url], concurrency_per_endpoint=c,
                                              timeout_s=30, max_retries=2))
        judge = PairwiseJudge(eng, both_orders=False, parse_retries=0)
        judge.judge(synthetic_pairs(c, f"warm{c}"))  # open all C connections first (a one-off cost)
        items = synthetic_pairs(n, f"c{c}")
        s0 = sum(server.cpu_times()[:2])
        w0 = run_queue_wait_s()
        t0, c0 = time.perf_counter(), time.process_time()
        js = judge.judge(items)
        wall = time.perf_counter() - t0
        cpu_ms = 1000 * (time.process_time() - c0) / n
        waited = run_queue_wait_s() - w0
        srv_ms = 1000 * (sum(server.cpu_times()[:2]) - s0) / n
        eng.close()
        ok = sum(1 for j in js if j.error is None)
        assert len(js) == n
        limit = c / latency
        rows.append({"setting": f"fake server L={latency:g}s, in-process", "C": c, "labels": n,
                     "ok": ok, "wall_s": wall, "labels_per_s": n / wall, "limit": limit,
                     "pct_limit": 100 * n / wall / limit, "agreement": None,
                     "client_cpu_ms": cpu_ms, "server_cpu_ms": srv_ms, "cpu_wait_s": waited})
        print(f"  C={c}: {n / wall:.1f} labels/s ({100 * n / wall / limit:.0f}% of {limit:.0f})", flush=True)
    if with_ray:
        from rayalign.config import RayConfig
        from rayalign.feedback.config import JudgeConfig
        from rayalign.feedback.pipeline import label_pairs_with_stats
        from rayalign.ray_utils import init_ray

        init_ray(RayConfig(num_cpus=2))
        c = 128
        cfg = JudgeConfig(kind="openai", model="fake", base_urls=[url], both_orders=False,
                          concurrency=2, concurrency_per_endpoint=c // 2, actor_batch_size=256,
                          parse_retries=0, timeout_s=30)
        # Each label_pairs call starts its own actor pool (~5 s here): a fixed cost that a
        # real labelling job amortises over hours; 32 waves make it visible but not dominant.
        n = 32 * c
        js, st = label_pairs_with_stats(synthetic_pairs(n, "ray"), cfg, concurrency=2)
        limit = c / latency
        rows.append({"setting": f"fake server L={latency:g}s, Ray Data 2 actors x {c // 2}", "C": c,
                     "labels": n, "ok": st.n_ok, "wall_s": st.wall_s, "labels_per_s": n / st.wall_s,
                     "limit": limit, "pct_limit": 100 * n / st.wall_s / limit, "agreement": None,
                     "client_cpu_ms": None, "server_cpu_ms": None, "cpu_wait_s": None})
        print(f"  Ray Data C={c}: {n / st.wall_s:.1f} labels/s", flush=True)
    return rows


def real_rows(n_pairs: int, dump: str | None = None) -> list[dict]:
    from rayalign.engines.hf_local import HFLocalEngine
    from rayalign.engines.base import SamplingParams
    from rayalign.feedback.agreement import judge_agreement
    from rayalign.feedback.inputs import load_pairs
    from rayalign.feedback.templates import PromptOptions

    shared = REPO.parent / "shared" / "data" / "hh_rlhf_harmless_test.dev.jsonl.gz"
    src = str(shared) if shared.exists() else "bundled:hh_rlhf_harmless"
    items = load_pairs(src, "hh_rlhf", limit=n_pairs, seed=0)
    t0 = time.perf_counter()
    eng = HFLocalEngine(EngineConfig(kind="hf_local", model="smollm2", batch_size=4, max_input_tokens=768))
    load_s = time.perf_counter() - t0
    print(f"  smollm2 loaded in {load_s:.1f}s", flush=True)
    # A 135M model cannot follow the answer format on its own: start its answer for it.
    opts = PromptOptions(chain_of_thought=False, answer_prefill="Preference: Response")
    params = SamplingParams(max_tokens=4, temperature=0.0)
    rows = []
    for both in (False, True):
        judge = PairwiseJudge(eng, both_orders=both, options=opts, params=params, parse_retries=0)
        t0 = time.perf_counter()
        js = judge.judge(items)
        wall = time.perf_counter() - t0
        ag = judge_agreement(items, js)
        if dump:
            from rayalign.runs import write_jsonl

            write_jsonl(Path(dump) / f"smollm2_{'both' if both else 'one'}.jsonl", js)
        rows.append({"setting": f"SmolLM2-135M hf_local CPU, HH pairs, {'both orders' if both else 'one order'}",
                     "C": 4, "labels": len(items), "ok": sum(1 for j in js if j.error is None),
                     "wall_s": wall, "labels_per_s": len(items) / wall, "limit": None, "pct_limit": None,
                     "agreement": ag, "client_cpu_ms": None, "server_cpu_ms": None, "cpu_wait_s": None})
        print(f"  smollm2 both={both}: {len(items) / wall:.2f} labels/s, {json.dumps(ag)}", flush=True)
    return rows


def fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
    import os as _os

    print(f"\nmachine: {_os.cpu_count()} CPUs, load average at the end {_os.getloadavg()[0]:.1f}")
    print("| setting | C | labels | ok | wall s | labels/s | limit C/L | % of limit | "
          "client CPU ms/label | server CPU ms/label | client waited for CPU s | "
          "agreement (decided / ties½ / coverage / share A) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ag = r["agreement"]
        ag_s = "—" if not ag else (f"{fmt(ag['accuracy_decided'], '.2f')} / {fmt(ag['accuracy_ties_half'], '.2f')}"
                                   f" / {ag['coverage']:.2f} / {fmt(ag['share_a'], '.2f')}")
        print(f"| {r['setting']} | {r['C']} | {r['labels']} | {r['ok']} | {r['wall_s']:.2f} | "
              f"{r['labels_per_s']:.2f} | {fmt(r['limit'], '.0f')} | {fmt(r['pct_limit'], '.0f')} | "
              f"{fmt(r['client_cpu_ms'], '.2f')} | {fmt(r['server_cpu_ms'], '.2f')} | "
              f"{fmt(r['cpu_wait_s'], '.1f')} | {ag_s} |")


def main() -> None:
    ap = argparse.ArgumentParser(description="labelling throughput vs the C/L limit")
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--cs", default="1,8,32,128,256")
    ap.add_argument("--real-pairs", type=int, default=20)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-fake", action="store_true")
    ap.add_argument("--dump", help="folder for the real-model judgments (JSONL), to inspect raw answers")
    args = ap.parse_args()
    rows: list[dict] = []
    if not args.no_fake:
        proc, url = start_server(args.latency)
        try:
            rows += fake_rows(url, args.latency, [int(c) for c in args.cs.split(",")], not args.no_ray, proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    if not args.no_real:
        rows += real_rows(args.real_pairs, args.dump)
    print_table(rows)


if __name__ == "__main__":
    main()
