"""Ray Train start-ups: k reward-model fits as k TorchTrainer runs vs one batched run.

WHY (issue 16): a ``TorchTrainer`` start (worker group, process group, imports, model load)
costs far more than a small LoRA RM fit, and the RLTHF loop with the ``lora`` backend and
k-fold cross-fitting fitted k+1 RMs per iteration, each in its own run. ``train_lora_rms``
now trains them in one run (``training.worker.trl_train_many``). This prints both side by
side in one process, on the same data and settings, plus the max reward difference between
the two paths' models (they must be the same models).

Run:  python benchmarks/train_startups.py [--fits 4] [--pairs 64] [--base tiny]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fits", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--base", default="tiny", help="RM base model spec (tiny = the bundled tiny Llama)")
    args = ap.parse_args()

    import numpy as np

    from rayalign.data.schema import PreferencePair
    from rayalign.ray_utils import init_ray
    from rayalign.rewards.lora import LoraRewardBackend, LoraRMConfig, train_lora_rm, train_lora_rms
    from rayalign.training.config import LoraSettings

    def pairs(seed: int) -> list[PreferencePair]:
        rng = np.random.default_rng(seed)
        return [PreferencePair(prompt=f"question {i} about topic {rng.integers(100)}?",
                               chosen=f"a helpful, kind answer number {i}",
                               rejected=f"go away {i}") for i in range(args.pairs)]

    cfg = LoraRMConfig(base_model=args.base, num_epochs=1, effective_batch_size=16, per_device_batch_size=8,
                       max_length=64, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    data = [pairs(s) for s in range(args.fits)]
    init_ray()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        alone = [train_lora_rm(d, cfg, Path(tmp) / f"alone_{i}") for i, d in enumerate(data)]
        rows.append(("one TorchTrainer run per fit (before)", args.fits, time.perf_counter() - t))
        t = time.perf_counter()
        batched = train_lora_rms([(d, Path(tmp) / f"batched_{i}") for i, d in enumerate(data)], cfg)
        rows.append(("all fits in one TorchTrainer run (after)", 1, time.perf_counter() - t))
        backend = LoraRewardBackend(cfg)
        probe = [p.to_pairwise(True) for p in pairs(99)[:16]]
        diff = max(float(np.max(np.abs(backend.reward_diff(a, probe) - backend.reward_diff(b, probe))))
                   for a, b in zip(alone, batched))
    print(f"\n{args.fits} LoRA RM fits of {args.pairs} pairs each, base {args.base}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| path | Ray Train runs | wall s | s per fit |")
    print("|---|---|---|---|")
    for name, runs, wall in rows:
        print(f"| {name} | {runs} | {wall:.1f} | {wall / args.fits:.1f} |")
    print(f"\nspeed-up {rows[0][2] / rows[1][2]:.2f}x; max |reward diff| between the two paths' models: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
