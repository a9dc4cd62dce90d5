"""MiniLM embedding throughput (texts/s) on the bundled HH-RLHF replies, CPU.

Prints one summary table. Usage:
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/embedding_speed.py [--n 512] [--threads 2]

WHY: the embedding-head reward model embeds every (prompt, response) once per RLTHF run,
so texts/s sets the cost of the whole loop on CPU.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="texts per measurement")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--batch-sizes", default="16,32,64,128")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from rayalign.data.bundled import load_bundled
    from rayalign.models.encoders import SentenceEncoder

    pairs = load_bundled("hh_rlhf_harmless")
    sets = {
        "replies": [p.chosen for p in pairs][: args.n],
        "prompt+reply": [p.prompt + " " + p.chosen for p in pairs][: args.n],
    }
    enc = SentenceEncoder("minilm")
    t0 = time.perf_counter()
    enc.encode(["warm up"])
    load_s = time.perf_counter() - t0

    rows = []
    for name, texts in sets.items():
        chars = sum(len(t) for t in texts) / len(texts)
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            t, c = time.perf_counter(), time.process_time()
            enc.encode(texts, batch_size=bs)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            rows.append((name, f"{chars:.0f}", bs, len(texts), f"{dt:.2f}", f"{len(texts) / dt:.1f}",
                         f"{len(texts) / dc:.1f}"))

    # The CPU-second column is what the machine could do uncontended (per core-second of this
    # process); wall texts/s depends on whatever else shares the cores.
    print(f"MiniLM-L6-v2 on CPU, torch threads={args.threads}, os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}, model load {load_s:.1f} s, "
          f"max_seq_length={enc.model.max_seq_length}")
    head = ("texts", "mean chars", "batch", "n", "wall s", "texts/s", "texts/cpu-s")
    print(" | ".join(f"{h:>12}" for h in head))
    for r in rows:
        print(" | ".join(f"{str(c):>12}" for c in r))


if __name__ == "__main__":
    main()
