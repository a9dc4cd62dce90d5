"""Where does each human label go? RLTHF's targeting against Random, on real judge labels.

RLTHF exists to make each human label count, so the number that matters is **judge errors
found per 100 human labels**, side by side with Random annotation at the same budget, over
several seeds; then what those labels buy: curated-label accuracy, the flips' net effect,
and RM test accuracy (the iteration's own RM, and an RM fit on the whole curated set as the
baselines are).

Methods, each at the same human budget:

* **RLTHF, error model** (``targeting: error_model``, the default): people are asked where
  P(AI label wrong) is highest, from every signal (order contradictions, extra judges,
  confidence, cross-fitted margin), refit on every answer; flips only through the gate.
* **RLTHF, paper** (``targeting: paper``): the paper's curve policy.
* **Random**: random pairs (the ``random`` baseline of the error-model run).
* **AI-only**: no human labels.

Datasets (``--datasets``):

* ``pandalm-gpt35``: PandaLM's pairs, AI labels = the RECORDED gpt-3.5-turbo verdicts, second
  judge = the RECORDED PandaLM-7B verdicts, ground truth = the majority of three RECORDED
  human votes, the "human" = a recorded human answering from those votes (real people's
  answers, replayed — not a simulation);
* ``pandalm-7b``: the same pairs, PandaLM-7B labelling and gpt-3.5-turbo as second judge;
* ``hh``: the bundled HH-RLHF harmless slice, a SIMULATED labeller (75 % agreement,
  length-biased errors, a SIMULATED position bias, asked in both orders), a SIMULATED second
  judge whose errors are partly the first's, a SIMULATED human replaying the cleaned truth;
* ``--config FILE.yaml`` (repeatable): any RLTHF config, e.g. your own votes JSONL with a
  judge's verdicts in both orders and a second judge's; it runs as written, with only the
  seed, targeting and bookkeeping fields set here.

Run:  python benchmarks/rlthf_real.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_PANDALM = {
    "data": {"kind": "pandalm", "path": "bundled:pandalm", "test_fraction": 0.2},
    "human": {"kind": "recorded", "mode": "majority"},
    "ground_truth": {"mode": "raw"},
    "human_budget_pct": 3.0,
}


def _replay(name: str, path: str, extra: str, extra_path: str) -> dict:
    return {"kind": "replay", "name": name, "replay_path": path,
            "extra_judges": [{"kind": "replay", "name": extra, "replay_path": extra_path}]}


DATASETS: dict[str, dict[str, Any]] = {
    "pandalm-gpt35": {**_PANDALM, "labeller": _replay("gpt-3.5-turbo", "bundled:pandalm_gpt35",
                                                      "pandalm-7b", "bundled:pandalm_7b")},
    "pandalm-7b": {**_PANDALM, "labeller": _replay("pandalm-7b", "bundled:pandalm_7b",
                                                   "gpt-3.5-turbo", "bundled:pandalm_gpt35")},
    "hh": {
        "data": {"path": "bundled:hh_rlhf_harmless", "test_fraction": 0.2},
        "labeller": {"kind": "simulated", "name": "simulated-judge",
                     "simulated": {"target_agreement": 0.75, "errors": "length", "length_bias": 2.0,
                                   "position_bias": 1.0, "both_orders": True},
                     "extra_judges": [{"kind": "simulated", "name": "simulated-second-judge",
                                       "simulated": {"target_agreement": 0.72, "errors": "length",
                                                     "length_bias": 1.0, "shared_noise": 0.3}}]},
        "ground_truth": {"mode": "cleaned"},
        "human": {"kind": "simulated"},
        "human_budget_pct": 2.0,
    },
}
TITLES = {
    "hh": "HH-RLHF harmless (bundled): SIMULATED judge (75 %, length bias, SIMULATED position bias, both "
          "orders), SIMULATED second judge (72 %, errors partly shared), SIMULATED human, cleaned truth",
    "pandalm-gpt35": "PandaLM: RECORDED gpt-3.5-turbo labels, RECORDED PandaLM-7B as second judge, RECORDED "
                     "human votes (truth = majority of 3)",
    "pandalm-7b": "PandaLM: RECORDED PandaLM-7B labels, RECORDED gpt-3.5-turbo as second judge, RECORDED "
                  "human votes (truth = majority of 3)",
}


def loop_config(base: dict, seed: int, targeting: str, args) -> dict[str, Any]:
    cfg = json.loads(json.dumps(base))
    lab = cfg.get("labeller", {})
    for k, src in enumerate([lab, *lab.get("extra_judges", [])]):  # seed the simulations per run
        if src.get("kind") == "simulated":
            sim = src.setdefault("simulated", {})
            sim["seed"] = seed + 1000 * k
            if k and sim.get("shared_noise"):
                sim["noise_seed"] = seed
    if args.budget is not None:
        cfg["human_budget_pct"] = args.budget
    cfg.update(name=f"{cfg.get('name', 'bench')}-{seed}-{targeting}", seed=seed, targeting=targeting,
               iterations=args.iterations, final_relabel=False,
               baselines=["ai_only", "random"] if targeting == "error_model" else [])
    cfg.setdefault("reward_model", {"backend": "embedding_head"})
    return cfg


def run_one(base: dict, seed: int, targeting: str, args, root: Path) -> dict:
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, loop_config(base, seed, targeting, args))
    t0 = time.time()
    summary = RLTHFLoop(cfg, root / cfg.name).run_loop()
    summary["seconds"] = time.time() - t0
    return summary


def final_rows(rlthf: dict, paper: dict) -> dict[str, dict]:
    """Per method, the row at the full budget (and the iteration rows' round counts)."""
    def last(s):
        return sorted(s["iterations"], key=lambda r: r["iteration"])[-1]

    def flips(s):
        rows = s["iterations"]
        applied = sum(r.get("flips") or 0 for r in rows)
        right = sum(r.get("flips_correct") or 0 for r in rows)
        return applied, right
    out = {}
    for name, s in (("RLTHF, error model", rlthf), ("RLTHF, paper", paper)):
        r, (applied, right) = dict(last(s)), flips(s)
        r.update(flips_applied=applied, flips_right=right)
        tgt = [x for x in s["iterations"] if x.get("targeted")]
        r["precision_at_budget"] = (sum(x["targeted_ai_wrong"] or 0 for x in tgt) / sum(x["targeted"] for x in tgt)
                                    if tgt else None)
        out[name] = r
    base = {b["method"]: b for b in rlthf["baselines"]}
    rand = max((b for b in rlthf["baselines"] if b["method"] == "random"), key=lambda b: b["human_count"])
    out["Random"] = {**rand, "rm_test_acc_curated": rand.get("rm_test_acc"), "flips_applied": 0, "flips_right": 0}
    ai = base["ai_only"]
    out["AI-only"] = {**ai, "rm_test_acc_curated": ai.get("rm_test_acc"), "flips_applied": 0, "flips_right": 0}
    return out


def fmt(vals: list, scale: float = 1.0, digits: int = 1) -> str:
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def table(title: str, per_seed: list[dict[str, dict]], seeds: list[int], secs: float) -> str:
    methods = ["RLTHF, error model", "RLTHF, paper", "Random", "AI-only"]
    rand = [s["Random"].get("errors_per_100_labels") for s in per_seed]
    lines = [f"### {title}; seeds {seeds} ({secs:.0f} s per seed, both loops)", "",
             "| method | human % | judge errors / 100 human labels | × Random | curated-label acc % | "
             "flips applied (right) | net flip effect (pts) | precision at budget % | RM test acc % (iteration RM) | "
             "RM test acc % (RM on the curated set) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        rows = [s[m] for s in per_seed]
        e100 = [r.get("errors_per_100_labels") for r in rows]
        ratio = [e / r for e, r in zip(e100, rand) if e is not None and r]
        fl = f"{statistics.mean(r['flips_applied'] for r in rows):.0f} ({statistics.mean(r['flips_right'] for r in rows):.0f})"
        net = [r.get("gain_from_flips") or 0.0 for r in rows]
        lines.append(f"| {m} | {statistics.mean(r.get('human_pct', 0.0) for r in rows):.1f} | {fmt(e100)} | "
                     f"{fmt(ratio, digits=2) if m != 'AI-only' else '-'} | {fmt([r.get('curated_acc') for r in rows], 100)} | "
                     f"{fl} | {fmt(net, 100)} | {fmt([r.get('precision_at_budget') for r in rows], 100)} | "
                     f"{fmt([r.get('rm_test_acc') for r in rows], 100)} | {fmt([r.get('rm_test_acc_curated') for r in rows], 100)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=["pandalm-gpt35", "pandalm-7b", "hh"])
    ap.add_argument("--config", action="append", default=[], help="an RLTHF config YAML to run as a dataset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--budget", type=float, default=None, help="human %% of the shard per iteration")
    ap.add_argument("--out", default=None, help="also append the tables to this file")
    ap.add_argument("--keep", default=None, help="keep run directories here (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        ap.error(f"unknown datasets {unknown} (have: {sorted(DATASETS)}; or pass --config FILE.yaml)")
    from rayalign.config import RayConfig, load_yaml
    from rayalign.ray_utils import init_ray

    todo = [(d, DATASETS[d], TITLES[d]) for d in args.datasets]
    for path in args.config:
        todo.append((Path(path).stem, load_yaml(path), f"{path} (as configured)"))
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        for name, base, title in todo:
            per_seed, secs = [], []
            for seed in args.seeds:
                em = run_one(base, seed, "error_model", args, root / name)
                paper = run_one(base, seed, "paper", args, root / name)
                per_seed.append(final_rows(em, paper))
                secs.append(em["seconds"] + paper["seconds"])
                r = per_seed[-1]
                print(f"[{time.time() - t0:5.0f}s] {name} seed {seed}: errors/100 labels "
                      + ", ".join(f"{m} {r[m].get('errors_per_100_labels') or 0:.0f}" for m in ("RLTHF, error model",
                                                                                              "RLTHF, paper", "Random"))
                      + "; curated " + ", ".join(f"{m} {100 * (r[m].get('curated_acc') or 0):.1f}%" for m in r),
                      file=sys.stderr, flush=True)
            t = table(title, per_seed, args.seeds, statistics.mean(secs))
            print("\n" + t + "\n", flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(t + "\n\n")
    print(f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
