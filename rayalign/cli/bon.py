"""``rayalign bon --config``: best-of-N with a reward model -> SFT data and DPO pairs.

Writes into the run directory ``candidates.jsonl`` and ``scores.jsonl`` (the paid steps,
append-only: a rerun pays for nothing twice), then ``sft.jsonl`` (TRL prompt/completion,
for ``rayalign sft``), ``pairs.jsonl`` (best vs worst, for ``rayalign dpo`` or the RM
trainer), ``selection.jsonl`` (every candidate's reward) and ``stats.json``.
"""

from __future__ import annotations

import argparse

from rayalign.cli.common import check_run_mode, resolve_config_path


def add_bon(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_bon)


def _bon(args: argparse.Namespace) -> int:
    import json

    from rayalign.config import load_config
    from rayalign.policy.best_of_n import BestOfNJobConfig, run_best_of_n
    from rayalign.runs import RunDir

    cfg = load_config(BestOfNJobConfig, args.config, args.overrides)
    cfg = cfg.model_copy(update={
        "input": cfg.input if cfg.input.startswith("bundled:")
        else resolve_config_path(cfg.input, args.config),
        "rm": resolve_config_path(cfg.rm, args.config),
        "engine": cfg.engine.model_copy(update={"model": resolve_config_path(cfg.engine.model, args.config)})
        if cfg.engine.kind != "openai" else cfg.engine})
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="bon", config=cfg,
                                resume=check_run_mode(args.run_mode, run_dir))
    stats = run_best_of_n(cfg, run.path)
    run.mark_done("bon", prompts=stats.prompts, pairs=stats.pairs, sft=stats.sft_examples,
                  generation_errors=stats.generation_errors)
    run.finish(status="finished" if not stats.generation_errors else "incomplete")
    print(json.dumps({k: v for k, v in stats.as_dict().items() if v not in (None, {}, "")}, indent=1))
    if stats.generation_errors:
        print(f"{stats.generation_errors} prompts failed to generate; rerun the same command to retry them")
    print(f"sft: {run.file('sft.jsonl')}\npairs: {run.file('pairs.jsonl')}")
    return 0 if not stats.generation_errors else 1
