"""RLTHF against real judge labels (PandaLM) and the simulated HH labeller, for both RM backends.

Datasets (``--datasets``):

* ``pandalm-gpt35``: the 999 PandaLM pairs, AI labels = the RECORDED gpt-3.5-turbo verdicts,
  ground truth = the majority of three RECORDED human votes, the "human" = a recorded human
  answering from those votes (real people's answers, replayed — not a simulation);
* ``pandalm-7b``: the same pairs with the RECORDED PandaLM-7B verdicts as AI labels;
* ``hh``: the bundled HH-RLHF harmless slice, SIMULATED labeller at 75 % agreement with
  length-biased errors, SIMULATED human replaying the cleaned ground truth.

RM backends (``--backends``): ``embedding_head`` (frozen MiniLM + linear BT head) and
``finetune`` (top layer of pretrained MiniLM fine-tuned as the BT RM).

One table per dataset × backend: method (AI-only, RLTHF per iteration, RLTHF without flips,
Random, Random + flips, full-human) × human % × RM test acc (the paper's metric, first) ×
curated-label acc × ROI on human answers only (accuracy points per 1 % of the corpus answered
by people, over AI-only; flips, which cost nothing, are credited to neither side: see
``roi`` below), mean ± sd over seeds.

Run:  python benchmarks/rlthf_real.py --datasets pandalm-gpt35 --backends embedding_head --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PANDALM = Path(os.environ.get("RAYALIGN_PANDALM_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "pandalm"))

#: how each dataset is fed to the loop (config fragments of ``RLTHFConfig``); budgets: the
#: PandaLM goal is stated at <= 10 % human answers (3 x 3 %), the HH one at <= 6 % (3 x 2 %).
_PANDALM = {
    "data": {"kind": "pandalm", "path": "bundled:pandalm", "test_fraction": 0.2},
    "human": {"kind": "recorded", "mode": "majority"},
    "ground_truth": {"mode": "raw"},
    "human_budget_pct": 3.0,
}
DATASETS: dict[str, dict[str, Any]] = {
    "pandalm-gpt35": {**_PANDALM, "labeller": {"kind": "replay", "replay_path": "bundled:pandalm_gpt35"}},
    "pandalm-7b": {**_PANDALM, "labeller": {"kind": "replay", "replay_path": "bundled:pandalm_7b"}},
    "hh": {
        "data": {"path": "bundled:hh_rlhf_harmless", "test_fraction": 0.2},
        "labeller": {"kind": "simulated", "simulated": {"target_agreement": 0.75, "errors": "length"}},
        "ground_truth": {"mode": "cleaned"},
        "human": {"kind": "simulated"},
        "human_budget_pct": 2.0,
    },
}

TITLES = {
    "hh": "HH-RLHF harmless (bundled slice): SIMULATED labeller (75 % agreement, length-biased errors), "
          "SIMULATED human, cleaned ground truth (25 %)",
    "pandalm-gpt35": "PandaLM (999 pairs): RECORDED gpt-3.5-turbo verdicts as AI labels, RECORDED human votes "
                     "(ground truth = majority of 3)",
    "pandalm-7b": "PandaLM (999 pairs): RECORDED PandaLM-7B verdicts as AI labels, RECORDED human votes "
                  "(ground truth = majority of 3)",
}

METHOD_NAMES = {"ai_only": "AI-only", "rlthf": "RLTHF", "rlthf_no_flips": "RLTHF without flips",
                "random": "Random", "random_flips": "Random + flips", "full_human": "Full-human"}
ORDER = ["AI-only", "RLTHF", "RLTHF without flips", "Random", "Random + flips", "Full-human"]


def loop_config(dataset: str, backend: str, seed: int, apply_flips: bool, args, cache: Path) -> dict[str, Any]:
    frag = json.loads(json.dumps(DATASETS[dataset]))
    if frag["labeller"]["kind"] == "simulated":
        frag["labeller"]["simulated"]["seed"] = seed
    rm: dict[str, Any] = {"backend": backend}
    if backend == "embedding_head":
        rm["embedding_head"] = {"cache_dir": str(cache), "num_actors": args.actors}
    else:
        rm["finetune"] = {"cache_dir": str(cache), "seed": seed}
    if args.budget is not None:
        frag["human_budget_pct"] = args.budget
    return {
        "name": f"real-{dataset}-{backend}-{seed}-flips{int(apply_flips)}", "seed": seed, **frag,
        "reward_model": rm, "iterations": args.iterations, "apply_flips": apply_flips,
        "cross_fit_folds": args.cross_fit if backend == "embedding_head" else args.cross_fit_finetune,
        "baselines": list(args.baselines) if apply_flips else [], "final_relabel": False,
    }


def shared_ground_truth(dataset: str, seed: int, args, cache: Path, root: Path) -> Path:
    """One ground truth per (dataset, seed) for every backend and ablation, so rows compare.

    HH's cleaned ground truth is made by a cross-fitted RM; it is always the embedding
    head's (cheap, and the same truth whichever RM the loop then trains).
    """
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, {**loop_config(dataset, "embedding_head", seed, True, args, cache),
                                        "name": f"gt-{dataset}-{seed}"})
    loop = RLTHFLoop(cfg, root / cfg.name)
    loop.prepare()
    return loop.run.file("data", "ground_truth.json")


def run_one(dataset: str, backend: str, seed: int, apply_flips: bool, gt_path: Path, args, cache: Path,
            root: Path) -> dict:
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, loop_config(dataset, backend, seed, apply_flips, args, cache))
    loop = RLTHFLoop(cfg, root / cfg.name)
    if not loop.run.is_done("ground_truth"):
        shutil.copyfile(gt_path, loop.run.file("data", "ground_truth.json"))
        loop.run.mark_done("ground_truth", copied_from=str(gt_path))
    t0 = time.time()
    summary = loop.run_loop()
    summary["seconds"] = time.time() - t0
    return summary


def rows_of(summary: dict) -> list[dict]:
    """(method, step, human %, RM test acc, curated acc, human-answer gain) rows of one run."""
    out = []
    for r in summary["iterations"]:
        method = "AI-only" if r["iteration"] == 0 else ("RLTHF" if r.get("apply_flips", True) else "RLTHF without flips")
        out.append({"method": method, "step": r["iteration"], **_metrics(r)})
    steps: dict[str, int] = {}
    for b in sorted(summary["baselines"], key=lambda b: (b["method"], b["human_count"])):
        name = METHOD_NAMES.get(b["method"], b["method"])
        if name == "AI-only":
            continue  # iteration 0 is the AI-only row (same labels, same RM)
        steps[name] = steps.get(name, 0) + (1 if b["human_count"] else 0)
        out.append({"method": name, "step": steps[name] if name not in ("Full-human",) else 0, **_metrics(b)})
    return out


def _metrics(r: dict) -> dict:
    return {"human_pct": r.get("human_pct", 0.0), "test": r.get("rm_test_acc"), "cur": r.get("curated_acc"),
            "human_gain": r.get("gain_from_humans"), "flip_gain": r.get("gain_from_flips")}


def roi(row: dict, ai: dict, key: str) -> float | None:
    """Points of ``key`` accuracy per 1 % human over AI-only.

    For curated-label accuracy the gain counted is the human answers' own (labels they
    corrected minus labels they broke, ``gain_from_humans``, rlthf/accounting.py); flips
    are free and not credited. RM test accuracy cannot be split that way: its ROI is the
    whole gain, so read it on the rows without flips (RLTHF without flips, Random).
    """
    hp = row["human_pct"]
    if not hp or row.get(key) is None or ai.get(key) is None:
        return None
    if key == "cur" and row.get("human_gain") is not None:
        return 100.0 * row["human_gain"] / hp
    return 100.0 * (row[key] - ai[key]) / hp


def fmt(vals: list[float | None], scale: float = 100.0) -> str:
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):5.1f} ± {sd:3.1f}"


def table(dataset: str, backend: str, runs: list[dict]) -> str:
    """``runs``: per seed, the RLTHF summary with the no-flips run's iterations added."""
    cols = ("hp", "test", "cur", "flip", "roi_t", "roi_c")
    agg: dict[tuple[str, int], dict[str, list]] = {}
    for s in runs:
        rows = rows_of(s)
        ai = next(r for r in rows if r["method"] == "AI-only")
        for r in rows:
            d = agg.setdefault((r["method"], r["step"]), {k: [] for k in cols})
            d["hp"].append(r["human_pct"]); d["test"].append(r["test"]); d["cur"].append(r["cur"])
            d["flip"].append(r["flip_gain"])
            d["roi_t"].append(roi(r, ai, "test")); d["roi_c"].append(roi(r, ai, "cur"))
    rm = {"embedding_head": "frozen MiniLM + linear BT head (cross-fitted margins)",
          "finetune": "pretrained MiniLM, top layer fine-tuned as the BT RM"}[backend]
    secs = statistics.mean(s["seconds"] for s in runs)
    lines = [f"### {TITLES.get(dataset, dataset)}; RM: {rm}; seeds {sorted(s['seed'] for s in runs)} "
             f"({secs:.0f} s per seed, both loops)", "",
             "| method | iter | human % | RM test acc % | curated-label acc % | of which flips (free, pts) "
             "| ROI human answers, curated (pts / 1 %) | ROI on RM test acc (pts / 1 %) |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(agg, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[0], k[1])):
        d = agg[key]
        step = str(key[1]) if key[0] not in ("AI-only", "Full-human") else ""
        lines.append(f"| {key[0]} | {step} | {statistics.mean(d['hp']):.1f} | {fmt(d['test'])} | {fmt(d['cur'])} | "
                     f"{fmt(d['flip'])} | {fmt(d['roi_c'], 1.0)} | {fmt(d['roi_t'], 1.0)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["pandalm-gpt35", "pandalm-7b", "hh"])
    ap.add_argument("--backends", nargs="+", default=["embedding_head", "finetune"],
                    choices=["embedding_head", "finetune"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--finetune-seeds", type=int, nargs="*", default=None,
                    help="seeds for the (slower) finetune backend; default: --seeds")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--budget", type=float, default=None,
                    help="human %% of the shard per iteration (default: 3 for PandaLM, 2 for HH)")
    ap.add_argument("--skip-no-flips", action="store_true", help="do not run the RLTHF-without-flips loop")
    ap.add_argument("--cross-fit", type=int, default=None, help="embedding_head folds (default: auto = 5)")
    ap.add_argument("--cross-fit-finetune", type=int, default=0, help="finetune folds (default 0: plain margins)")
    ap.add_argument("--baselines", nargs="+", default=["ai_only", "random", "random_flips", "full_human"])
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/rayalign/embeddings"))
    ap.add_argument("--out", default=None, help="also append the tables to this file")
    ap.add_argument("--keep", default=None, help="keep run directories here (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        ap.error(f"datasets {unknown} are not available in this checkout (have: {sorted(DATASETS)})")

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=os.cpu_count()))
    t0 = time.time()
    tables = []
    gts: dict[tuple[str, int], Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        for dataset in args.datasets:
            for backend in args.backends:
                seeds = args.finetune_seeds if (backend == "finetune" and args.finetune_seeds is not None) else args.seeds
                runs = []
                for seed in seeds:
                    gt = gts.get((dataset, seed)) or shared_ground_truth(dataset, seed, args, Path(args.cache), root)
                    gts[(dataset, seed)] = gt
                    s = run_one(dataset, backend, seed, True, gt, args, Path(args.cache), root)
                    if not args.skip_no_flips:
                        nf = run_one(dataset, backend, seed, False, gt, args, Path(args.cache), root)
                        s["iterations"] = s["iterations"] + nf["iterations"][1:]
                        s["seconds"] += nf["seconds"]
                    s["seed"] = seed
                    runs.append(s)
                    last = [r for r in s["iterations"] if r.get("apply_flips", True)][-1]
                    print(f"[{time.time() - t0:5.0f}s] {dataset}/{backend}/seed {seed}: "
                          f"AI {100 * s['iterations'][0]['curated_acc']:.1f}% -> RLTHF {100 * last['curated_acc']:.1f}% "
                          f"curated, RM test {100 * s['iterations'][0]['rm_test_acc']:.1f} -> "
                          f"{100 * last['rm_test_acc']:.1f}% at {last['human_pct']:.1f}% human ({s['seconds']:.0f}s)",
                          file=sys.stderr, flush=True)
                if runs:
                    t = table(dataset, backend, runs)
                    tables.append(t)
                    print("\n" + t + "\n", flush=True)
                    if args.out:
                        with open(args.out, "a") as fh:
                            fh.write(t + "\n\n")
    print(f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
