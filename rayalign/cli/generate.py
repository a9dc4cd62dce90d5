"""``rayalign generate --config``: n candidates per prompt through the Ray Data pipeline.

Writes ``candidates.jsonl`` (one row per prompt, in input order, failures as rows with
``error``) into the run directory.
"""

from __future__ import annotations

import argparse

from rayalign.cli.common import check_run_mode


def add_generate(g: argparse.ArgumentParser) -> None:
    g.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    import json

    from rayalign.config import load_config
    from rayalign.data.schema import PromptRecord
    from rayalign.feedback.config import GenerateJobConfig
    from rayalign.feedback.pipeline import generate_candidates_with_stats
    from rayalign.ray_utils import init_ray
    from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

    cfg = load_config(GenerateJobConfig, args.config, args.overrides)
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="generate", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    if run.is_done("generate"):
        print(f"already done: {run.file('candidates.jsonl')}")
        return 0
    prompts = []
    for i, row in enumerate(read_jsonl(cfg.input)):
        text = row.get("prompt") or row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{cfg.input}: row {i + 1}: field prompt: missing or empty")
        prompts.append(PromptRecord(id=str(row.get("id") or f"p{i}"), prompt=text))
        if cfg.limit and len(prompts) >= cfg.limit:
            break
    init_ray(cfg.ray)
    cands, stats = generate_candidates_with_stats(
        prompts, cfg.engine, n=cfg.n, concurrency=cfg.concurrency, batch_size=cfg.actor_batch_size,
        system_prompt=cfg.system_prompt, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
    write_jsonl(run.file("candidates.jsonl"), cands)
    atomic_write_json(run.file("stats.json"), stats.as_dict())
    run.mark_done("generate", n=len(cands), errors=stats.n_errors)
    run.finish()
    print(json.dumps({k: v for k, v in stats.as_dict().items() if v}, indent=1))
    print(f"candidates: {run.file('candidates.jsonl')}")
    return 0
