"""RLTHF vs its ablations and baselines on the real HH-RLHF pairs (bundled slice).

The AI labeller and the human are SIMULATIONS (see rayalign/feedback/simulated.py and
rayalign/humans/simulated.py): a labeller at 75 % agreement with the ground truth, with
either length-biased ("length", the hard case) or uniform errors, and a human who replays
the ground truth. Ground truth follows the paper's cleaned protocol (25 % of HH's own
labels flipped by a cross-fitted RM) unless --ground-truth raw.

Prints one table, honest accounting (issue 13): method (AI-only, RLTHF, RLTHF without
flips, Random, Random + the same flip step as RLTHF's iteration 0, full-human) × human %
× RM test accuracy (the paper's metric, first) × curated-label accuracy × the curated gain
split into flips (free) and human answers (paid) × ROI on human answers alone (points of
curated-label accuracy per 1 % of the corpus human-labelled) × ROI on RM test accuracy ×
accuracy of the DPO corpus written, mean ± sd over seeds.
Run:  python benchmarks/rlthf_hh.py [--seeds 0 1 2] [--errors length uniform]
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


def run_one(seed: int, errors: str, gt_mode: str, audit: int, apply_flips: bool, baselines: bool,
            args, cache: Path, root: Path) -> dict:
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, {
        "name": f"bench-{errors}-{gt_mode}-{seed}-audit{audit}-flips{int(apply_flips)}", "seed": seed,
        "flip_audit": audit, "apply_flips": apply_flips,
        "data": {"path": "bundled:hh_rlhf_harmless", "test_fraction": 0.2, "shards": args.shards,
                 "limit": args.limit},
        "labeller": {"kind": "simulated", "simulated": {"target_agreement": args.agreement,
                                                        "errors": errors, "seed": seed}},
        "ground_truth": {"mode": gt_mode},
        "reward_model": {"embedding_head": {"cache_dir": str(cache), "num_actors": args.actors}},
        "iterations": args.iterations, "human_budget_pct": args.budget,
        "cross_fit_folds": args.cross_fit,
        "baselines": ["ai_only", "random", "random_flips", "full_human"] if baselines else [],
        "final_relabel": apply_flips and audit == 0,
    })
    return RLTHFLoop(cfg, root / cfg.name, write_report=False).run_loop()


def fmt(vals: list[float], scale: float = 100.0) -> str:
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):6.1f} ± {sd:4.1f}"


METHODS = {"ai_only": "AI-only", "random": "Random", "random_flips": "Random + flips",
           "full_human": "Full-human"}
ORDER = ["AI-only", "RLTHF", "RLTHF without flips", "Random", "Random + flips", "Full-human"]


def collect_rows(s: dict, name: str) -> dict[tuple[str, int], dict]:
    """One run's rows keyed by (method, step), with the accounting columns of the table."""
    rows: dict[tuple[str, int], dict] = {}
    iters = s["iterations"]
    for r in iters[1:]:
        rows[(name, r["iteration"])] = r
    if name == "RLTHF" and iters:
        rows[(name, iters[-1]["iteration"])] = {**iters[-1], "final": (s.get("final") or {}).get("written_acc")}
    steps: dict[str, int] = {}
    for b in sorted(s["baselines"], key=lambda b: b["human_count"]):
        m = METHODS.get(b["method"], b["method"])
        steps[m] = steps.get(m, 0) + 1
        rows[(m, steps[m] if m.startswith("Random") else 0)] = b
    return rows


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
    ap.add_argument("--flip-audit", type=int, nargs="+", default=[0],
                    help="human labels per iteration spent auditing flips (0 = the paper's algorithm)")
    ap.add_argument("--no-ablation", action="store_true", help="skip the RLTHF-without-flips runs")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pairs (smoke runs)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/rayalign/embeddings"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=os.cpu_count()))
    cache = Path(args.cache)
    t0 = time.time()
    results: dict[tuple, dict[str, list]] = {}
    keys = ("test", "cur", "flips", "humans", "roi", "roi_test", "hp", "final")
    with tempfile.TemporaryDirectory() as tmp:
        for gt_mode in args.ground_truth:
            for errors in args.errors:
                for seed in args.seeds:
                    runs = [(a, True, a == args.flip_audit[0]) for a in args.flip_audit]
                    if not args.no_ablation:
                        runs.append((0, False, False))
                    ai = None
                    for audit, flips, baselines in runs:
                        s = run_one(seed, errors, gt_mode, audit, flips, baselines, args, cache, Path(tmp))
                        name = "RLTHF" if flips else "RLTHF without flips"
                        if audit:
                            name += f" + audit{audit}"
                        rows = collect_rows(s, name)
                        ai = next((b for b in s["baselines"] if b["method"] == "ai_only"), ai)
                        for (method, k), r in rows.items():
                            hp = r.get("human_pct") or 0.0
                            d = results.setdefault((gt_mode, errors, method, k), {c: [] for c in keys})
                            d["test"].append(r.get("rm_test_acc")); d["cur"].append(r.get("curated_acc"))
                            d["flips"].append(r.get("gain_from_flips")); d["humans"].append(r.get("gain_from_humans"))
                            d["roi"].append(100 * r["gain_from_humans"] / hp if hp and r.get("gain_from_humans") is not None else None)
                            d["roi_test"].append(100 * (r["rm_test_acc"] - ai["rm_test_acc"]) / hp
                                                 if hp and ai and r.get("rm_test_acc") is not None else None)
                            d["hp"].append(hp); d["final"].append(r.get("final"))
                        last = s["iterations"][-1]
                        print(f"[{time.time() - t0:5.0f}s] {gt_mode}/{errors}/seed {seed}/{name}: RM test acc "
                              f"{100 * last['rm_test_acc']:.1f}%, curated {100 * last['curated_acc']:.1f}% at "
                              f"{last['human_pct']:.1f}% human", file=sys.stderr)

    print()
    print(f"RLTHF on HH-RLHF harmless ({len(args.seeds)} seed(s); SIMULATED labeller at "
          f"{100 * args.agreement:.0f}% agreement, SIMULATED human; shard 1/{args.shards}, {args.budget}% of "
          f"shard per iteration{f', first {args.limit} pairs' if args.limit else ''}; RM: MiniLM + Bradley-Terry "
          f"head). RM test acc: held-out split; curated-label acc and its gain (flips: free, humans: paid) over "
          f"the shard; ROI = points per 1% of the corpus human-labelled (curated: human answers alone; RM test: "
          f"whole gain over AI-only, compare RLTHF with Random + flips); DPO corpus: final/relabelled_trl.jsonl")
    cols = ["ground truth", "labeller errors", "method", "iter", "human %", "RM test acc %", "curated-label acc %",
            "gain flips (pts)", "gain humans (pts)", "ROI humans, curated", "ROI, RM test", "DPO corpus acc %"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    rank = {m: n for n, m in enumerate(ORDER)}
    for key in sorted(results, key=lambda k: (k[0], k[1], rank.get(k[2], 2.5), k[2], k[3])):
        gt_mode, errors, method, k = key
        d = results[key]
        it = str(k) if method.startswith(("RLTHF", "Random")) else ""
        print(f"| {gt_mode} | {errors} | {method} | {it} | {statistics.mean(d['hp']):.1f} | {fmt(d['test'])} | "
              f"{fmt(d['cur'])} | {fmt(d['flips'])} | {fmt(d['humans'])} | {fmt(d['roi'], 1.0)} | "
              f"{fmt(d['roi_test'], 1.0)} | {fmt(d['final'])} |")
    print(f"\ntotal {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
