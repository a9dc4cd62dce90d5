"""The ``rayalign rl`` job: prompts -> held-out reward before -> RL -> after -> metrics files.

Every step's result is a file in the run directory, so a rerun after a failure (a killed
worker, the RM endpoint down) redoes only what is missing: the held-out "before" answers are
kept, RL resumes from its latest Ray Train checkpoint, a finished model is not retrained.
The plot and report are ``reports.rl_report.report_rl_run`` (a layer above), from these files.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from rayalign.policy.rl_config import PromptSource, RLJobConfig
from rayalign.runs import RunDir, atomic_write_json, write_jsonl

log = logging.getLogger(__name__)


def load_rl_prompts(src: PromptSource, path: str | None = None) -> list[str]:
    """Distinct prompts of a bundled data set or a ``{"prompt": ...}`` JSONL (order kept)."""
    if src.bundled:
        from rayalign.data.bundled import load_bundled

        prompts = [p.prompt for p in load_bundled(src.bundled)]
    else:
        from rayalign.data.errors import DataError
        from rayalign.data.rows import iter_json_rows

        prompts = []
        for row, line, obj in iter_json_rows(path or src.path):  # type: ignore[arg-type]
            if isinstance(obj, DataError):
                raise obj
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
                raise DataError(path or src.path, "expected an object with a non-empty string 'prompt'",
                                row=row, line=line, field="prompt")
            prompts.append(obj["prompt"])
    return list(dict.fromkeys(prompts))


def split_prompts(prompts: list[str], src: PromptSource, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded shuffle, ``eval_prompts`` held out, ``limit`` for training."""
    order = list(prompts)
    random.Random(seed).shuffle(order)
    heldout = order[:src.eval_prompts]
    train = order[src.eval_prompts:]
    if src.limit:
        train = train[:src.limit]
    if not train:
        raise ValueError(f"prompts: none left for training ({len(prompts)} prompts, "
                         f"{src.eval_prompts} held out)")
    return train, heldout


def run_rl_job(cfg: RLJobConfig, run: RunDir, prompts_path: str | None = None,
               model_spec: str | None = None, *, _fail_at_step: int | None = None) -> dict[str, Any]:
    """The whole job in ``run``; returns the summary written to ``run/rl_summary.json``."""
    from rayalign.policy.rl import RL_META, run_rl, step_metrics
    from rayalign.policy.rl_eval import policy_reward, win_rate
    from rayalign.rewards.trl_reward import RMRewardFunction
    from rayalign.training.ray_train import resolve_model_dir

    model_spec = model_spec or cfg.model
    train, heldout = split_prompts(load_rl_prompts(cfg.prompts, prompts_path), cfg.prompts,
                                   cfg.train.seed)
    new_tokens = cfg.train.max_completion_length
    scorer = RMRewardFunction(cfg.reward) if heldout else None
    before_path = run.file("heldout_before.json")
    if heldout and not before_path.is_file():
        log.info("held-out reward of the starting policy on %d prompts", len(heldout))
        before = policy_reward(resolve_model_dir(model_spec), heldout, cfg.reward, new_tokens, scorer)
        atomic_write_json(before_path, before)
    model_dir = run_rl(train, model_spec, run.path, cfg.train, cfg.reward, ray_cfg=cfg.ray,
                       _fail_at_step=_fail_at_step)
    run.mark_done("rl", model_dir=str(model_dir))
    rows = step_metrics(model_dir)
    write_jsonl(run.file("rl_metrics.jsonl"), rows)
    held = None
    if heldout:
        after = policy_reward(str(model_dir), heldout, cfg.reward, new_tokens, scorer)
        atomic_write_json(run.file("heldout_after.json"), after)
        before = json.loads(before_path.read_text())
        held = {"before": before, "after": after, "win_rate": win_rate(after["rewards"], before["rewards"])}
    meta = json.loads((Path(model_dir) / RL_META).read_text())
    summary = {"model_dir": str(model_dir), "algorithm": cfg.train.algorithm, "steps": len(rows),
               "first_step": rows[0] if rows else None, "last_step": rows[-1] if rows else None,
               "heldout_reward_before": held["before"]["reward_mean"] if held else None,
               "heldout_reward_after": held["after"]["reward_mean"] if held else None,
               "heldout_win_rate": held["win_rate"] if held else None,
               "wall_seconds": meta.get("wall_seconds"),
               # for the report (reports/rl_report.py reads the run dir, not this module)
               "meta": {**meta, "model_dir": str(model_dir)}, "heldout": held}
    atomic_write_json(run.file("rl_summary.json"), summary)
    return summary
