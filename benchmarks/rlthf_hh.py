"""RLTHF vs Random vs AI-only vs full-human on the real HH-RLHF pairs (bundled slice).

The AI labeller and the human are SIMULATIONS (see rayalign/feedback/simulated.py and
rayalign/humans/simulated.py): a labeller at 75 % agreement with the ground truth, with
either length-biased ("length", the hard case) or uniform errors, and a human who replays
the ground truth. Ground truth follows the paper's cleaned protocol (25 % of HH's own
labels flipped by a cross-fitted RM) unless --ground-truth raw.

Prints one table: method × human % × curated-label accuracy × RM test accuracy × ROI
(accuracy points gained over AI-only per 1 % of the corpus human-labelled), mean ± sd
over seeds. Run:  python benchmarks/rlthf_hh.py [--seeds 0 1 2] [--errors length uniform]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_one(seed: int, errors: str, gt_mode: str, audit: int, args, cache: Path, root: Path) -> dict:
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, {
        "name": f"bench-{errors}-{gt_mode}-{seed}-audit{audit}", "seed": seed, "flip_audit": audit,
        "data": {"path": "bundled:hh_rlhf_harmless", "test_fraction": 0.2, "shards": args.shards},
        "labeller": {"kind": "simulated", "simulated": {"target_agreement": args.agreement,
                                                        "errors": errors, "seed": seed}},
        "ground_truth": {"mode": gt_mode},
        "reward_model": {"embedding_head": {"cache_dir": str(cache), "num_actors": args.actors,
                                            "precision": args.precision}},
        "iterations": args.iterations, "human_budget_pct": args.budget,
        "cross_fit_folds": args.cross_fit,
        "baselines": ["ai_only", "random", "full_human"] if audit == args.flip_audit[0] else [],
        "final_relabel": True,
    })
    loop = RLTHFLoop(cfg, root / cfg.name)
    return loop.run_loop()


def fmt(vals: list[float], scale: float = 100.0) -> str:
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):6.1f} ± {sd:4.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--errors", nargs="+", default=["length", "uniform"], choices=["length", "uniform"])
    ap.add_argument("--ground-truth", nargs="+", default=["cleaned"], choices=["cleaned", "raw"])
    ap.add_argument("--agreement", type=float, default=0.75)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--budget", type=float, default=2.0, help="human %% of the shard per iteration")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--cross-fit", type=int, default=None, help="folds (default: the config's auto = 5)")
    ap.add_argument("--flip-audit", type=int, nargs="+", default=[0, 6],
                    help="human labels per iteration spent auditing flips (0 = the paper's algorithm)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="encoder precision (bf16 = opt-in autocast; compare over seeds)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/rayalign/embeddings"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=os.cpu_count()))
    cache = Path(args.cache)
    t0 = time.time()
    results: dict[tuple, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gt_mode in args.ground_truth:
            for errors in args.errors:
                for seed, audit in [(s, a) for a in args.flip_audit for s in args.seeds]:
                    s = run_one(seed, errors, gt_mode, audit, args, cache, Path(tmp))
                    ai = s["iterations"][0]
                    last = s["iterations"][-1]
                    rows = {("AI-only", 0): (ai["curated_acc"], ai["rm_test_acc"], 0.0, None)} if s["baselines"] else {}
                    name = "RLTHF" if audit == 0 else f"RLTHF+audit{audit}"
                    for r in s["iterations"][1:]:
                        final = s["final"].get("relabel_acc") if r is s["iterations"][-1] else None
                        rows[(name, r["iteration"])] = (r["curated_acc"], r["rm_test_acc"], r["human_pct"], final)
                    rand = [b for b in s["baselines"] if b["method"] == "random"]
                    for i, b in enumerate(sorted(rand, key=lambda b: b["human_count"]), 1):
                        rows[("Random", i)] = (b["curated_acc"], b["rm_test_acc"], b["human_pct"], None)
                    full = [b for b in s["baselines"] if b["method"] == "full_human"]
                    if full:
                        rows[("Full-human", 0)] = (full[0]["curated_acc"], full[0]["rm_test_acc"], full[0]["human_pct"], None)
                    for (method, k), (cur, test, hp, relabel) in rows.items():
                        roi = (cur - ai["curated_acc"]) * 100 / hp if hp else None
                        d = results.setdefault((gt_mode, errors, method, k),
                                               {"cur": [], "test": [], "hp": [], "roi": [], "relabel": []})
                        d["cur"].append(cur); d["test"].append(test); d["hp"].append(hp); d["roi"].append(roi)
                        d["relabel"].append(relabel)
                    print(f"[{time.time() - t0:5.0f}s] {gt_mode}/{errors}/seed {seed}/audit {audit}: AI {100 * ai['curated_acc']:.1f}% "
                          f"-> RLTHF {100 * last['curated_acc']:.1f}% at {last['human_pct']:.1f}% human",
                          file=sys.stderr)

    print()
    print(f"RLTHF on HH-RLHF harmless ({len(args.seeds)} seeds; SIMULATED labeller at "
          f"{100 * args.agreement:.0f}% agreement, SIMULATED human; shard 1/{args.shards}, {args.budget}% of "
          f"shard per iteration; RM: MiniLM + Bradley-Terry head; curated-label acc is over the shard, "
          f"human % and final relabel acc over the whole train split)")
    hdr = f"| {'ground truth':<12} | {'labeller errors':<15} | {'method':<14} | {'iter':>4} | {'human %':>7} | {'curated-label acc %':>19} | {'RM test acc %':>15} | {'ROI (pts / 1% human)':>20} | {'final relabel acc %':>19} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    order = {"AI-only": 0, "RLTHF": 1, "Random": 3, "Full-human": 4}
    for key in sorted(results, key=lambda k: (k[0], k[1], order.get(k[2], 2), k[2], k[3])):
        gt_mode, errors, method, k = key
        d = results[key]
        hp = statistics.mean(d["hp"])
        roi = [r for r in d["roi"] if r is not None]
        roi_s = fmt(roi, 1.0) if roi else "-"
        it = str(k) if method.startswith("RLTHF") or method == "Random" else ""
        print(f"| {gt_mode:<12} | {errors:<15} | {method:<14} | {it:>4} | {hp:7.1f} | {fmt(d['cur']):>19} | "
              f"{fmt(d['test']):>15} | {roi_s:>20} | {fmt(d['relabel']) if any(d['relabel']) else '':>19} |")
    print(f"\ntotal {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
