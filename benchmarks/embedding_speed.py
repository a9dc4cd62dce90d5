"""Embedding throughput of the path the RLTHF loop uses, beside plain sentence-transformers
and the FLOP limit of this machine, on the same texts in the same run. Prints one table.

Usage (2-core CPU; ~1-3 min at --n 1200):
    .venv/bin/python benchmarks/embedding_speed.py [--n 1200] [--actors 2] [--bf16]

Rows:
* ``rayalign loop path`` -- ``embed_with_ray`` exactly as the RLTHF driver calls it (the quick
  start's texts: left-cut prompts + both replies, deduplicated; Ray Data actor pool, texts
  longest first, each actor grouping its texts into forward passes of <= --max-batch-tokens
  padded tokens). Wall time includes starting the actors and loading the model in each:
  that is what the loop pays. ``..., 1 actor``: the same with one actor using every CPU.
* ``... fixed batches (issue 17)`` / ``... unsorted (before issue 17)`` -- the earlier loop
  paths: length-sorted fixed batches of --batch-size, and the given (random-length) order.
  Vectors are compared with the first row's (max abs difference).
* ``plain SentenceTransformer.encode`` -- one in-process call, batch 64, all threads, on the
  same texts (model load reported apart, not counted). ``SentenceEncoder.encode, in
  process`` -- rayalign's encoder with token-budget batches, same process, no Ray.
* ``FLOP limit`` -- real tokens (after truncation, specials included) x FLOPs per token of
  MiniLM-L6 (2 x non-embedding parameters + attention) / the fp32 matmul peak measured here
  with the same thread count. bf16 rows (``--bf16``) use the measured bf16 matmul peak.

WHY: the embedding-head RM embeds every distinct text once per run; on CPU this is the
dominant cold cost of the quick start (issues 16 and 17).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def matmul_peak(threads: int, dtype_name: str = "fp32", n: int = 1024, reps: int = 10) -> float:
    """Measured dense matmul GFLOP/s with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def loop_texts(n: int | None, encoder_spec: str) -> list[str]:
    """The distinct texts the quick start's backend embeds (prompts cut as the loop cuts them)."""
    from rayalign.data.bundled import load_bundled
    from rayalign.rewards.embedding_head import MAX_CHARS, EmbeddingHeadBackend, EmbeddingHeadConfig

    pairs = load_bundled("hh_rlhf_harmless")
    backend = EmbeddingHeadBackend(EmbeddingHeadConfig(encoder=encoder_spec), Path(tempfile.mkdtemp()))
    texts = backend.prompt_texts([p.prompt for p in pairs])
    for p in pairs:
        texts += [p.chosen[:MAX_CHARS], p.rejected[:MAX_CHARS]]
    texts = list(dict.fromkeys(texts))
    import random

    random.Random(0).shuffle(texts)  # the loop's order is unrelated to length
    return texts[:n] if n else texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1200, help="distinct texts (0 = all ~5.3k)")
    ap.add_argument("--actors", type=int, default=2, help="Ray Data encoder actors (quick start: 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="CPUs for Ray and plain ST")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-batch-tokens", type=int, default=2048,
                    help="padded tokens per forward pass in the loop path")
    ap.add_argument("--bf16", action="store_true", help="add bf16-autocast rows (loop path and plain)")
    ap.add_argument("--skip-unsorted", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch

    from rayalign.config import RayConfig
    from rayalign.models.encoders import SentenceEncoder
    from rayalign.ray_utils import init_ray
    from rayalign.rewards.embedding_head import embed_with_ray, text_key

    texts = loop_texts(args.n or None, "minilm")
    keyed = {text_key(t): t for t in texts}
    enc = SentenceEncoder("minilm")
    tok = enc.tokenizer
    seq = 256
    lengths = [min(len(tok(t, add_special_tokens=True)["input_ids"]), seq) for t in texts]
    real_tokens = sum(lengths)
    # MiniLM-L6: 6 layers, hidden 384, FFN 1536 -> non-embedding params per layer 4h^2 + 2*h*4h.
    layers, h, ffn = 6, 384, 1536
    n_params = layers * (4 * h * h + 2 * h * ffn)
    mean_len = real_tokens / len(texts)
    flops_per_token = 2 * n_params + 4 * layers * mean_len * h  # + QK^T and AV
    flops = real_tokens * flops_per_token

    def pad_ratio(order: list[int]) -> float:
        """Tokens the model processes / real tokens when consecutive runs of batch_size in
        this order form the batches (each pads to its longest text). An approximation of
        Ray Data's batching: block edges can split a batch."""
        done = 0
        for i in range(0, len(order), args.batch_size):
            chunk = [lengths[j] for j in order[i:i + args.batch_size]]
            done += max(chunk) * len(chunk)
        return done / real_tokens

    by_chars = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    pad = {"sorted": pad_ratio(by_chars), "given": pad_ratio(list(range(len(texts))))}
    from rayalign.models.batching import token_budget_batches

    budget = token_budget_batches(lengths, args.batch_size, args.max_batch_tokens)
    pad["budget"] = sum(max(lengths[i] for i in b) * len(b) for b in budget) / real_tokens

    rows: list[tuple] = []

    def add(name: str, wall: float, note: str = "", padding: str = "") -> None:
        rows.append((name, len(texts), f"{wall:.1f}", f"{len(texts) / wall:.1f}", padding, note))

    # --- Ray Data path (the loop's) ----------------------------------------------------------
    t = time.perf_counter()
    init_ray(RayConfig(num_cpus=args.threads))
    ray_init_s = time.perf_counter() - t
    results = {}
    # (row name, sort by length, precision, max_batch_tokens, actors)
    variants = [("rayalign loop path (token-budget batches)", True, "fp32", args.max_batch_tokens,
                 args.actors)]
    if args.actors != 1:
        variants.append(("rayalign loop path, 1 actor", True, "fp32", args.max_batch_tokens, 1))
    variants.append(("rayalign sorted, fixed batches (issue 17)", True, "fp32", None, args.actors))
    if not args.skip_unsorted:
        variants.append(("rayalign unsorted (before issue 17)", False, "fp32", None, args.actors))
    if args.bf16:
        variants.append(("rayalign loop path, bf16", True, "bf16", args.max_batch_tokens, args.actors))
    for name, sort, prec, mbt, actors in variants:
        t = time.perf_counter()
        keys, vecs = embed_with_ray(keyed, "minilm", actors, args.batch_size, precision=prec,
                                    sort_by_length=sort, max_batch_tokens=mbt)
        wall = time.perf_counter() - t
        results[name] = dict(zip(keys, vecs))
        pad_key = "budget" if mbt else ("sorted" if sort else "given")
        add(name, wall, f"{actors} actor(s) start + model load included", f"{pad[pad_key]:.2f}x")
    ref = results["rayalign loop path (token-budget batches)"]
    notes = {}
    for name, got in results.items():
        if got is ref:
            continue
        d = max(float(np.abs(ref[k] - got[k]).max()) for k in ref)
        cos = min(float(ref[k] @ got[k]) for k in ref)
        notes[name] = f"max|diff| vs sorted {d:.1e}, min cos {cos:.5f}"
    rows = [(*r[:5], notes.get(r[0], r[5])) for r in rows]
    import ray

    ray.shutdown()

    # --- plain sentence-transformers ----------------------------------------------------------
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    enc.encode(["warm up"])
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    plain = enc.model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                             show_progress_bar=False, convert_to_numpy=True)
    add("plain SentenceTransformer.encode", time.perf_counter() - t, f"model load {load_s:.1f} s apart",
        f"{pad['sorted']:.2f}x")
    d = max(float(np.abs(ref[text_key(t_)] - plain[i]).max()) for i, t_ in enumerate(texts))
    rows[-1] = rows[-1][:5] + (rows[-1][5] + f"; max|diff| vs loop path {d:.1e}",)
    t = time.perf_counter()
    enc.encode(texts, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)
    add("SentenceEncoder.encode, in process", time.perf_counter() - t,
        f"token-budget batches ({args.max_batch_tokens} tokens), no Ray", f"{pad['budget']:.2f}x")
    if args.bf16:
        bf = SentenceEncoder("minilm", precision="bf16")
        bf.encode(["warm up"])
        t = time.perf_counter()
        bf.encode(texts, batch_size=args.batch_size)
        add("plain SentenceTransformer.encode, bf16", time.perf_counter() - t, "autocast bf16",
            f"{pad['sorted']:.2f}x")

    # --- FLOP limit ----------------------------------------------------------------------------
    peak = matmul_peak(args.threads, "fp32")
    limit_s = flops / (peak * 1e9)
    add("FLOP limit (fp32)", limit_s, f"matmul peak {peak:.0f} GFLOP/s, {flops_per_token / 1e6:.1f} MFLOP/token",
        "1.00x")
    if args.bf16:
        peak_bf = matmul_peak(args.threads, "bf16")
        add("FLOP limit (bf16)", flops / (peak_bf * 1e9), f"matmul peak {peak_bf:.0f} GFLOP/s", "1.00x")

    by = {r[0]: float(r[3]) for r in rows}
    loop = by["rayalign loop path (token-budget batches)"]
    print(f"MiniLM-L6-v2, {len(texts)} distinct quick-start texts, {mean_len:.0f} real tokens/text "
          f"(max_seq {seq}), {args.actors} Ray Data actor(s), {args.threads} CPU(s), "
          f"os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
          f"ray.init {ray_init_s:.1f} s (not counted)")
    head = ("path", "texts", "wall s", "texts/s", "tokens run / real", "note")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print(f"loop path / plain ST: {loop / by['plain SentenceTransformer.encode']:.2f}x; "
          f"loop path / FLOP limit: {loop / by['FLOP limit (fp32)']:.2f}x")


if __name__ == "__main__":
    main()
