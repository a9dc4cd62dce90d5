"""Does an RM backend's test accuracy follow the quality of its training labels?

For each backend, train on the RLTHF train shard twice — once on the ground-truth labels
("clean") and once on the SIMULATED 75 %-agreement labeller's labels ("noisy", length-biased
errors by default) — and score a held-out split against the ground truth. A backend that
RLTHF can show its worth with has a clear clean − noisy gap; the frozen-encoder head has
a small one. Also prints seconds per fit (what cross-fitting multiplies).

Data, split, ground truth (cleaned HH, or PandaLM's human majority) and AI labels come from
the RLTHF loop's own steps, so the numbers are those the loop sees.

Run:  python benchmarks/rm_label_noise.py [--dataset hh] [--backends embedding_head finetune]
      [--set finetune.train_layers=2 ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def dataset_config(args) -> dict:
    """The loop's config fragment for ``--dataset`` (same data/labels as benchmarks/rlthf_real.py)."""
    if args.dataset == "hh":
        return {"data": {"path": "bundled:hh_rlhf_harmless"},
                "labeller": {"kind": "simulated", "simulated": {"target_agreement": args.agreement,
                                                                "errors": args.errors, "seed": args.seed}}}
    replay = {"pandalm-gpt35": "bundled:pandalm_gpt35", "pandalm-7b": "bundled:pandalm_7b"}[args.dataset]
    return {"data": {"kind": "pandalm", "path": "bundled:pandalm"}, "ground_truth": {"mode": "raw"},
            "human": {"kind": "recorded"}, "labeller": {"kind": "replay", "replay_path": replay}}


def loop_inputs(args, root: Path):
    """The loop's data, ground truth and AI labels (embedding_head cleans HH's ground truth)."""
    from rayalign.config import validate_config
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.driver import RLTHFLoop

    cfg = validate_config(RLTHFConfig, {
        "name": f"noise-{args.dataset}-{args.seed}", "seed": args.seed, **dataset_config(args),
        "reward_model": {"embedding_head": {"cache_dir": args.cache}},
    })
    loop = RLTHFLoop(cfg, root / cfg.name)
    loop.prepare()
    loop._ai_labels()
    return loop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="hh", choices=["hh", "pandalm-gpt35", "pandalm-7b"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agreement", type=float, default=0.75)
    ap.add_argument("--errors", default="length", choices=["length", "uniform"])
    ap.add_argument("--backends", nargs="+", default=["embedding_head", "finetune"])
    ap.add_argument("--train-limit", type=int, default=None, help="fit on the first N train pairs only (timing probes)")
    ap.add_argument("--set", nargs="*", default=[], help="backend.key=value overrides (YAML values)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/rayalign/embeddings"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import yaml

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray
    from rayalign.rewards.base import preference_accuracy
    from rayalign.rewards.factory import make_reward_backend
    from rayalign.rewards.factory import RewardModelConfig

    init_ray(RayConfig(num_cpus=os.cpu_count()))
    overrides: dict = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        sect, key = k.split(".", 1)
        overrides.setdefault(sect, {})[key] = yaml.safe_load(v)
    with tempfile.TemporaryDirectory() as tmp:
        loop = loop_inputs(args, Path(tmp))
        shard = [it for it in loop.shard_items if it.id in loop.ai_labels]  # the judge's ties are left out
        shard = shard[: args.train_limit] if args.train_limit else shard
        truth = [loop.gt.labels[it.id] for it in shard]
        ai = [loop.ai_labels[it.id] for it in shard]
        test_truth = [loop.gt.labels[it.id] for it in loop.test_items]
        noise = sum(a != t for a, t in zip(ai, truth)) / len(truth)
        who = f"SIMULATED labeller ({args.errors} errors)" if args.dataset == "hh" else "RECORDED judge verdicts"
        print(f"{args.dataset} seed {args.seed}: {len(shard)} train pairs, {len(loop.test_items)} test; ground truth "
              f"{loop.gt.tag}; {who} wrong on {100 * noise:.1f}%")
        print("| backend | settings | clean-label RM test acc % | noisy-label RM test acc % | gap (pts) | s / fit |")
        print("|---|---|---|---|---|---|")
        for name in args.backends:
            if name == "lora":
                overrides.setdefault("lora", {}).setdefault("base_model", "minilm")
            rm_cfg = RewardModelConfig.model_validate(
                {"backend": name, name: {**({"cache_dir": args.cache} if name == "embedding_head" else {}),
                                         **overrides.get(name, {})}})
            backend = make_reward_backend(rm_cfg, Path(tmp) / f"cache-{name}")
            t0 = time.perf_counter()
            backend.prepare(list(shard) + list(loop.test_items))
            prep = time.perf_counter() - t0
            accs, secs = [], []
            for kind, labels in (("clean", truth), ("noisy", ai)):
                t0 = time.perf_counter()
                model = backend.fit(shard, labels, [1.0] * len(shard), Path(tmp) / f"rm-{name}-{kind}")
                secs.append(time.perf_counter() - t0)
                accs.append(preference_accuracy(backend.reward_diff(model, loop.test_items), test_truth))
            settings = ", ".join(f"{k}={v}" for k, v in overrides.get(name, {}).items()) or "defaults"
            print(f"| {name} | {settings} | {100 * accs[0]:.1f} | {100 * accs[1]:.1f} | "
                  f"{100 * (accs[0] - accs[1]):+.1f} | {sum(secs) / 2:.0f} (prepare {prep:.0f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
