"""Scaling on paper from unit costs measured here, plus a measured 1x/2x/4x/8x data run.

Three parts, one command (``--part`` picks one):

* ``units``: measured unit costs on this machine —
  - embedding: texts/s on ONE core (torch 1 thread), MiniLM, length-sorted HH texts, the
    encoder the RLTHF loop uses (``rayalign.models.encoders.SentenceEncoder``);
  - judge: calls/s on ONE connection against the fake OpenAI server on loopback (zero server
    latency: this is the client + HTTP cost per call, the ceiling of one connection);
  - RM fit: seconds per 1k pairs of the embedding-head fit (the loop's default backend,
    L-BFGS on 768 features) on synthetic unit vectors, at 1k and 4k pairs.
* ``project``: time and cost of RLTHF on 10k / 100k / 1M pairs on a stated cluster, from
  those unit costs and the assumptions printed with the table (every assumption is a flag).
* ``scaling``: the RLTHF loop itself (quick-start settings, simulated labeller and human)
  on base x {1, 2, 4, 8} pairs of the bundled HH data, each in a fresh process with a cold
  cross-run cache: wall time per phase (from the run manifest's step times) and peak RSS of
  the process tree (driver + local Ray: raylet and workers), sampled every 50 ms. A phase
  whose time grows faster than ``n^1.3`` between the two largest sizes is flagged.

    .venv/bin/python benchmarks/scale_model.py                     # all three
    .venv/bin/python benchmarks/scale_model.py --part project --gpu-nodes 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the fake OpenAI server


# -- unit costs ------------------------------------------------------------------------------
def hh_texts(n: int) -> list[str]:
    from rayalign.data.bundled import bundled_path
    from rayalign.data.loaders import load_hh_rlhf

    texts: list[str] = []
    for p in load_hh_rlhf(bundled_path("hh_rlhf_harmless"), skip_bad_rows=True):
        texts += [p.prompt[-2000:], p.chosen[:2000], p.rejected[:2000]]
        if len(texts) >= n:
            break
    return texts[:n]


def embed_rate_per_core(n: int = 256) -> float:
    import torch

    from rayalign.models.encoders import SentenceEncoder

    torch.set_num_threads(1)
    texts = sorted(hh_texts(n), key=len)  # as the loop feeds them (length-sorted)
    enc = SentenceEncoder("minilm")
    enc.encode(texts[:16])  # load + warm up
    t0 = time.perf_counter()
    enc.encode(texts, batch_size=64)
    return n / (time.perf_counter() - t0)


def judge_rate_per_connection(n: int = 300) -> float:
    import openai
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="not-a-key", max_retries=0)
        msgs = [{"role": "user", "content": "Which response is better? " + "x " * 300}]
        client.chat.completions.create(model="fake", messages=msgs, max_tokens=8)  # connect
        t0 = time.perf_counter()
        for _ in range(n):
            client.chat.completions.create(model="fake", messages=msgs, max_tokens=8)
        return n / (time.perf_counter() - t0)


def rm_fit_seconds(n_pairs: int) -> float:
    """Seconds of one embedding-head fit on ``n_pairs`` synthetic pairs (the real fit code)."""
    import numpy as np

    from rayalign.data.schema import PairwiseItem
    from rayalign.rewards.embedding_head import EmbeddingHeadBackend, EmbeddingHeadConfig, text_key

    rng = np.random.default_rng(0)
    from rayalign import cache

    with tempfile.TemporaryDirectory() as d:
        cache.activate(cache.CacheConfig(enabled=False))  # synthetic vectors stay out of the cache
        backend = EmbeddingHeadBackend(EmbeddingHeadConfig(), Path(d))
        cache.activate(None)
        items = [PairwiseItem(id=f"p{i}", prompt=f"q{i}", response_a=f"a{i}", response_b=f"b{i}")
                 for i in range(n_pairs)]
        backend._prompt_cut = {it.prompt: it.prompt for it in items}  # no tokenizer needed
        texts = [t for it in items for t in (it.prompt, it.response_a, it.response_b)]
        vecs = rng.normal(size=(len(texts), 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        backend.store.add([text_key(t) for t in texts], vecs)
        labels = ["A" if rng.random() < 0.5 else "B" for _ in items]
        t0 = time.perf_counter()
        backend.fit(items, labels, [1.0] * n_pairs)
        return time.perf_counter() - t0


def measure_units() -> dict:
    import torch

    torch.set_num_threads(1)
    rm_fit_seconds(100)  # warm-up: the first L-BFGS fit pays one-off imports (torch._dynamo)
    units = {"embed_texts_per_s_per_core": embed_rate_per_core(),
             "judge_calls_per_s_per_connection": judge_rate_per_connection(),
             "rm_fit_s_1k": rm_fit_seconds(1000), "rm_fit_s_4k": rm_fit_seconds(4000)}
    units["rm_fit_s_per_1k_pairs"] = units["rm_fit_s_4k"] / 4
    return units


# -- projection ------------------------------------------------------------------------------
def hms(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def project(units: dict, a: argparse.Namespace) -> str:
    fits = a.iterations * (1 + a.cross_fit_folds) + a.baselines + 2  # + abstained + final
    rows = []
    for pairs in (10_000, 100_000, 1_000_000):
        texts = pairs * a.texts_per_pair
        cpu_embed = texts / (units["embed_texts_per_s_per_core"] * a.cpu_cores_per_node * a.gpu_nodes)
        gpu_embed = texts / (a.gpu_embed_texts_per_s * a.gpu_nodes)
        calls = pairs * a.calls_per_pair
        tokens_in, tokens_out = calls * a.prompt_tokens, calls * a.output_tokens
        vllm_s = (tokens_in + tokens_out) / (a.vllm_tokens_per_s * a.gpu_nodes)
        vllm_usd = (vllm_s + gpu_embed) / 3600 * a.gpu_nodes * a.gpu_usd_per_hour
        per_conn = 1 / (a.api_latency_s + 1 / units["judge_calls_per_s_per_connection"])
        api_s = max(calls / (per_conn * a.api_connections), calls / (a.api_rpm / 60),
                    (tokens_in + tokens_out) / (a.api_tpm / 60))
        api_usd = tokens_in / 1e6 * a.api_usd_per_m_in + tokens_out / 1e6 * a.api_usd_per_m_out
        # L-BFGS head on one core per fit; the fits of one round are independent: run them
        # in parallel on the cluster's cores (bounded by the number of fits)
        fit_s = units["rm_fit_s_per_1k_pairs"] * pairs / 1000
        rm_s = fit_s * math.ceil(fits / min(fits, a.cpu_cores_per_node * a.gpu_nodes))
        humans = round(pairs * a.human_pct / 100 * a.iterations)
        total_s = gpu_embed + vllm_s + rm_s
        rows.append(f"| {pairs:,} | {hms(cpu_embed)} | {hms(gpu_embed)} | {hms(vllm_s)} | ${vllm_usd:,.0f} | "
                    f"{hms(api_s)} | ${api_usd:,.0f} | {hms(rm_s)} ({fits} fits) | {humans:,} | "
                    f"${humans * a.human_usd_per_label:,.0f} | {hms(total_s)} | "
                    f"${vllm_usd + humans * a.human_usd_per_label:,.0f} |")
    head = ("| pairs | embed, CPU (measured rate) | embed, GPU | judge: vLLM | vLLM $ | judge: API | API $ | "
            "RM fits | human labels | human $ | total (GPU embed + vLLM + RM) | total $ (vLLM + humans) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    assumptions = [
        f"cluster: {a.gpu_nodes} GPU nodes, 1 GPU and {a.cpu_cores_per_node} CPU cores each, ${a.gpu_usd_per_hour}/GPU-hour",
        f"texts per pair {a.texts_per_pair} (prompt + 2 responses, no dedup); embed CPU = measured "
        f"{units['embed_texts_per_s_per_core']:.1f} texts/s/core x all cores; embed GPU = ASSUMED "
        f"{a.gpu_embed_texts_per_s:,} texts/s per GPU (MiniLM, 256 tokens)",
        f"judge: {a.calls_per_pair} calls per pair (both orders), {a.prompt_tokens} prompt + "
        f"{a.output_tokens} output tokens per call",
        f"vLLM judge: ASSUMED {a.vllm_tokens_per_s:,} tokens/s per GPU (prefill-heavy), one replica per GPU",
        f"API judge: ASSUMED ${a.api_usd_per_m_in}/M input, ${a.api_usd_per_m_out}/M output, rate limit "
        f"{a.api_rpm:,} RPM / {a.api_tpm:,} TPM, {a.api_connections} connections, {a.api_latency_s} s "
        f"latency + measured client cost ({units['judge_calls_per_s_per_connection']:.0f} calls/s/connection at 0 latency)",
        f"RM: embedding head, measured {units['rm_fit_s_per_1k_pairs']:.2f} s per 1k pairs per fit (1 core), "
        f"linear in pairs; {a.iterations} iterations x (1 + {a.cross_fit_folds} cross-fit folds) + "
        f"{a.baselines} baselines + 2 fits, spread over the cluster's cores",
        f"humans: {a.human_pct}% of pairs per iteration x {a.iterations}, ASSUMED ${a.human_usd_per_label} per label "
        "(their wall time is not modelled)",
    ]
    return head + "\n" + "\n".join(rows) + "\n\nAssumptions:\n" + "\n".join(f"- {s}" for s in assumptions)


# -- measured scaling run ----------------------------------------------------------------------
def _tree_rss() -> int:
    import psutil

    me = psutil.Process()
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def one_scale(pairs: int, out: Path) -> dict:
    """Run the loop in this process on ``pairs`` pairs; per-phase wall time and peak RSS."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), _tree_rss()))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    t_start = time.time()
    from rayalign.config import RayConfig, load_config
    from rayalign.ray_utils import init_ray
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = load_config(RLTHFConfig, REPO / "jobs" / "configs" / "quickstart.yaml",
                      [f"data.limit={pairs}", "iterations=2", "baselines=[ai_only,random]",
                       "reward_model.embedding_head.num_actors=1"])
    init_ray(RayConfig(num_cpus=2))
    t_ray = time.time()
    RLTHFLoop(cfg, out).run_loop()
    t_end = time.time()
    stop.set()
    steps = json.loads((out / "manifest.json").read_text())["steps"]
    bounds = [("ray_init", t_start, t_ray)]
    prev = t_ray
    for name, info in sorted(steps.items(), key=lambda kv: kv[1]["finished_at"]):
        bounds.append((name, prev, info["finished_at"]))
        prev = info["finished_at"]
    phases: dict[str, dict] = {}
    for name, a, b in bounds:
        key = "iterations" if name.startswith("iter_") else name
        ph = phases.setdefault(key, {"s": 0.0, "peak_mb": 0.0})
        ph["s"] += b - a
        peak = max((r for t, r in samples if a <= t <= b), default=0)
        ph["peak_mb"] = max(ph["peak_mb"], peak / 2**20)
    return {"pairs": pairs, "total_s": t_end - t_start, "phases": phases}


def scaling(base: int, scales: list[int]) -> str:
    results = []
    for k in scales:
        with tempfile.TemporaryDirectory() as d:
            env = {**os.environ, "RAYALIGN_CACHE_DIR": str(Path(d) / "xcache"),
                   "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
            env.pop("RAY_ADDRESS")
            proc = subprocess.run([sys.executable, __file__, "--part", "_one", "--pairs", str(base * k),
                                   "--out", str(Path(d) / "run")], env=env, capture_output=True,
                                  text=True, timeout=1800)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SCALE ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(f"scale {k}x failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results.append(json.loads(line[-1][6:]))
            print(f"  {k}x ({base * k} pairs): {results[-1]['total_s']:.1f} s", flush=True)
    names = [n for n in results[-1]["phases"]]
    out = ["| phase | " + " | ".join(f"{r['pairs']} pairs: s / peak MB" for r in results) + " | growth exponent (last 2) |",
           "|---|" + "---|" * (len(results) + 1)]
    flagged = []
    for n in names:
        cells = [f"{r['phases'].get(n, {}).get('s', 0):.1f} / {r['phases'].get(n, {}).get('peak_mb', 0):.0f}"
                 for r in results]
        t1, t2 = (results[-2]["phases"].get(n, {}).get("s", 0), results[-1]["phases"].get(n, {}).get("s", 0))
        ratio = results[-1]["pairs"] / results[-2]["pairs"]
        expo = math.log(t2 / t1) / math.log(ratio) if t1 > 0.05 and t2 > 0 else float("nan")
        flag = " **superlinear**" if expo > 1.3 and t2 > 1.0 else ""
        if flag:
            flagged.append(n)
        out.append(f"| {n} | " + " | ".join(cells) + f" | {expo:.2f}{flag} |")
    out.append("| total | " + " | ".join(f"{r['total_s']:.1f}" for r in results) + " | |")
    out.append("")
    out.append("superlinear phases (exponent > 1.3 and > 1 s at the largest size): "
               + (", ".join(flagged) if flagged else "none"))
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "units", "project", "scaling", "_one"], default="all")
    p.add_argument("--units-json", help="reuse unit costs from this file (written by --part units)")
    p.add_argument("--base", type=int, default=50, help="pairs at 1x of the scaling run")
    p.add_argument("--scales", default="1,2,4,8")
    p.add_argument("--pairs", type=int)
    p.add_argument("--out")
    g = p.add_argument_group("projection assumptions")
    g.add_argument("--gpu-nodes", type=int, default=4)
    g.add_argument("--cpu-cores-per-node", type=int, default=16)
    g.add_argument("--gpu-usd-per-hour", type=float, default=2.5)
    g.add_argument("--gpu-embed-texts-per-s", type=int, default=4000)
    g.add_argument("--texts-per-pair", type=int, default=3)
    g.add_argument("--calls-per-pair", type=int, default=2)
    g.add_argument("--prompt-tokens", type=int, default=700)
    g.add_argument("--output-tokens", type=int, default=30)
    g.add_argument("--vllm-tokens-per-s", type=int, default=20000)
    g.add_argument("--api-usd-per-m-in", type=float, default=0.15)
    g.add_argument("--api-usd-per-m-out", type=float, default=0.60)
    g.add_argument("--api-rpm", type=int, default=10_000)
    g.add_argument("--api-tpm", type=int, default=10_000_000)
    g.add_argument("--api-connections", type=int, default=256)
    g.add_argument("--api-latency-s", type=float, default=1.5)
    g.add_argument("--iterations", type=int, default=3)
    g.add_argument("--cross-fit-folds", type=int, default=5)
    g.add_argument("--baselines", type=int, default=4)
    g.add_argument("--human-pct", type=float, default=2.0)
    g.add_argument("--human-usd-per-label", type=float, default=0.40)
    a = p.parse_args()
    for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                 "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    if a.part == "_one":
        print("SCALE " + json.dumps(one_scale(a.pairs, Path(a.out))), flush=True)
        return
    t0 = time.time()
    units = None
    if a.units_json and Path(a.units_json).is_file():
        units = json.loads(Path(a.units_json).read_text())
    if a.part in ("all", "units") or (a.part == "project" and units is None):
        units = measure_units()
        print("unit costs (measured here):\n" + "\n".join(f"- {k}: {v:.3f}" for k, v in units.items()))
        if a.units_json:
            Path(a.units_json).write_text(json.dumps(units, indent=2))
    if a.part in ("all", "project"):
        print("\n" + project(units, a))
    if a.part in ("all", "scaling"):
        print("\nmeasured scaling run (quick-start settings, iterations 2, baselines ai_only+random):")
        print(scaling(a.base, [int(s) for s in a.scales.split(",")]))
    print(f"\n(benchmark wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
