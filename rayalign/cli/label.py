"""``rayalign label --config`` and ``rayalign eval judge``.

``label`` writes into its run directory: ``judgments.jsonl`` (one row per input pair, in
input order, errors included), ``judgments.sqlite`` (the cache, unless ``cache_path`` points
to a shared one), ``stats.json`` and ``agreement.json`` when the inputs carry labels. A rerun
of the same config resumes: everything already judged comes from the cache.
``stats.json`` names the ``judge`` and says ``simulated: true`` when the labels come from a
simulation; the printed summary then opens with a "SIMULATED judge" banner.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rayalign.cli.common import check_run_mode

log = logging.getLogger(__name__)


def add_label(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_label)


def add_eval_judge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-config", help="JudgeConfig YAML")
    p.add_argument("--judge-model", help="shortcut: hf_local judge with this model spec (e.g. smollm2)")
    p.add_argument("--template", default="rlthf_pairwise", help="template for --judge-model")
    p.add_argument("--one-order", action="store_true", help="--judge-model: judge one order only")
    p.add_argument("--data", required=True, help="reference data: HH-RLHF .jsonl.gz, AlpacaEval "
                                                 "annotations .jsonl, or labelled pairwise JSONL")
    p.add_argument("--format", default="auto",
                   choices=["auto", "pairwise_jsonl", "hh_rlhf", "alpaca_annotations", "preferences",
                            "pandalm", "votes", "hh", "pairwise", "alpaca-annotations"],
                   help="input format (hh = hh_rlhf, pairwise = pairwise_jsonl, "
                        "alpaca-annotations = alpaca_annotations)")
    p.add_argument("--limit", type=int, default=50, help="first N pairs (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="A/B placement seed for HH / preferences")
    p.add_argument("--cache", help="judgment cache path (default: <out>/judgments.sqlite)")
    p.add_argument("--concurrency", type=int, help="Ray Data actors (default: the judge config's)")
    p.add_argument("--out", default="runs/eval", help="output folder")
    p.add_argument("--name", default="judge_agreement")
    p.set_defaults(func=_eval_judge)


def _label(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.feedback.agreement import judge_agreement
    from rayalign.feedback.config import LabelJobConfig
    from rayalign.feedback.inputs import load_pairs
    from rayalign.feedback.pipeline import label_pairs_with_stats
    from rayalign.ray_utils import init_ray
    from rayalign.runs import RunDir, atomic_write_json, write_jsonl

    cfg = load_config(LabelJobConfig, args.config, args.overrides)
    cfg.judge.preflight()  # before the run dir, the data and Ray: a missing key fails first
    run_dir = args.run_dir or cfg.run_dir
    run = RunDir.create_or_open(run_dir, job="label", config=cfg, resume=check_run_mode(args.run_mode, run_dir))
    items = load_pairs(cfg.input, cfg.input_format, cfg.limit, cfg.seed)
    if not items:
        raise ValueError(f"{cfg.input}: no pairs to label")
    init_ray(cfg.ray)
    cache = cfg.cache_path or str(run.file("judgments.sqlite"))
    judgments, stats = label_pairs_with_stats(items, cfg.judge, cache_path=cache)
    write_jsonl(run.file("judgments.jsonl"), judgments)
    atomic_write_json(run.file("stats.json"), stats.as_dict())
    agree = judge_agreement(items, judgments) if any(it.label for it in items) else None
    if agree:
        atomic_write_json(run.file("agreement.json"), agree)
    run.log_metrics(step="label", **{k: v for k, v in stats.as_dict().items() if k != "errors_by_kind"})
    run.mark_done("label", n=len(judgments), errors=stats.n_errors)
    run.finish()
    _print_summary("label", stats.as_dict(), agree)
    print(f"judgments: {run.file('judgments.jsonl')}")
    return 0


SIMULATED_BANNER = "SIMULATED judge"


def _print_summary(title: str, stats: dict, agree: dict | None) -> None:
    from rich.table import Table

    from rayalign.output import console

    if stats.get("simulated"):
        # Plain prints (no rich wrapping): the banner must survive narrow terminals and logs.
        bar = "!" * 72
        print(bar)
        print(f"{SIMULATED_BANNER}: {stats.get('judge') or 'unnamed'}")
        print("These labels come from a SIMULATION, not from a real LLM judge or people;")
        print("agreement numbers below measure the simulation's configured error rate.")
        print(bar)

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = {k: v for k, v in stats.items() if k != "errors_by_kind"}
    rows.update({f"agreement.{k}": v for k, v in (agree or {}).items()})
    for k, v in rows.items():
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console().print(t)


def _eval_judge(args: argparse.Namespace) -> int:
    from rayalign.config import load_config
    from rayalign.feedback.agreement import judge_agreement
    from rayalign.feedback.config import JudgeConfig
    from rayalign.feedback.inputs import load_pairs
    from rayalign.feedback.pipeline import label_pairs_with_stats
    from rayalign.runs import atomic_write_json, write_jsonl

    if args.judge_config:
        jcfg = load_config(JudgeConfig, args.judge_config)
    elif args.judge_model:
        jcfg = JudgeConfig(kind="hf_local", model=args.judge_model, template=args.template,
                           both_orders=not args.one_order, concurrency=1)
    else:
        raise ValueError("give a judge: --judge-config FILE or --judge-model SPEC")
    items = [it for it in load_pairs(args.data, args.format, None, args.seed) if it.label in ("A", "B")]
    if args.limit:
        items = items[:args.limit]
    if not items:
        raise ValueError(f"{args.data}: no pairs with an A/B reference label")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judgments, stats = label_pairs_with_stats(items, jcfg, cache_path=args.cache or out / "judgments.sqlite",
                                              concurrency=args.concurrency)
    agree = judge_agreement(items, judgments)
    result = {"judge": jcfg.cache_spec(), "data": str(args.data), "agreement": agree,
              "stats": stats.as_dict()}
    atomic_write_json(out / f"{args.name}.json", result)
    write_jsonl(out / f"{args.name}.judgments.jsonl", judgments)
    _print_summary(f"judge agreement: {Path(args.data).name}", stats.as_dict(), agree)
    print(f"wrote {out / (args.name + '.json')}")
    return 0
