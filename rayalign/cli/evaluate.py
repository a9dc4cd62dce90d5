"""``rayalign eval rm|h2h|alpaca|policy``: judge metrics, head-to-head, AlpacaEval-style win
rate, and a policy before/after training scored by a reward model.

``rayalign eval judge`` (a judge's agreement with reference labels) is in ``cli/label.py``.
AlpacaEval data (CC BY-NC 4.0) is never bundled: ``--data-dir`` names the user's copy.

Each command writes ``<out>/<name>.json``, ``<out>/<name>.md`` and ``<out>/<name>.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

def add_eval_rm(rm: argparse.ArgumentParser) -> None:
    rm.add_argument("--model", action="append", default=[],
                    help="model spec judging with the 5-point rubric (repeatable): smollm2, tiny, a dir")
    rm.add_argument("--judge-config", action="append", default=[],
                    help="JudgeConfig YAML with template additive_rubric (repeatable)")
    rm.add_argument("--data", help="OASST-style ranked answers JSONL (default: the bundled slice)")
    rm.add_argument("--groups", type=int, default=16, help="held-out questions to evaluate")
    rm.add_argument("--max-answers", type=int, default=4)
    rm.add_argument("--seed", type=int, default=0, help="same seed as the align run = same questions")
    rm.add_argument("--judge-tokens", type=int, default=160, help="max tokens of each judge answer")
    _common(rm, "rm_metrics")
    rm.set_defaults(func=_rm)


def add_eval_h2h(h: argparse.ArgumentParser) -> None:
    h.add_argument("--model-a", help="model spec generating answers A")
    h.add_argument("--model-b", help="model spec generating answers B")
    h.add_argument("--outputs-a", help="AlpacaEval-format outputs JSONL of model A")
    h.add_argument("--outputs-b", help="AlpacaEval-format outputs JSONL of model B")
    h.add_argument("--data-dir", help="AlpacaEval folder (prompts; CC BY-NC 4.0, never bundled)")
    _prompt_args(h)
    _judge_args(h)
    _gen_args(h)
    _common(h, "head_to_head")
    h.set_defaults(func=_h2h)


def add_eval_alpaca(a: argparse.ArgumentParser) -> None:
    a.add_argument("--data-dir",
                   help="folder with the AlpacaEval JSONL files (CC BY-NC: never bundled)")
    a.add_argument("--model", action="append", default=[], help="model spec to generate answers (repeatable)")
    a.add_argument("--outputs", action="append", default=[],
                   help="AlpacaEval-format outputs JSONL of a model (repeatable)")
    a.add_argument("--annotations", action="append", default=[],
                   help="stored pairwise judgments JSONL: win rate of output_2 from them (repeatable)")
    _prompt_args(a)
    a.add_argument("--one-order", action="store_true", help="judge once (model first) instead of both orders")
    _judge_args(a)
    _gen_args(a)
    _common(a, "alpaca_eval")
    a.set_defaults(func=_alpaca)


def add_eval_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--before", required=True, help="policy before training (model spec or dir)")
    p.add_argument("--after", required=True, help="policy after training (model spec or dir)")
    p.add_argument("--rm", required=True, help="reward model dir (HF RM or RLTHF embedding-head RM)")
    p.add_argument("--reference", help="KL reference policy (default: --before)")
    p.add_argument("--prompts", default="bundled:hh_rlhf_harmless",
                   help="prompts JSONL or preference file, or bundled:<name>")
    p.add_argument("--offset", type=int, default=0,
                   help="skip the first prompts (e.g. those the policy was trained on): held-out")
    p.add_argument("--limit", type=int, default=16, help="prompts to evaluate")
    p.add_argument("--samples", type=int, default=1, help="sampled answers per prompt and policy")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature (1.0 with top-p 1: the KL estimate is unbiased)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    _gen_args(p)
    _common(p, "policy_eval")
    p.set_defaults(func=_policy)


def _common(p, default_name: str) -> None:
    p.add_argument("--out", default="runs/eval", help="output folder")
    p.add_argument("--name", default=default_name, help="file stem of the table and plot")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)


def _prompt_args(p) -> None:
    """Which AlpacaEval prompts: shared by ``h2h`` and ``alpaca`` (both read them the same way)."""
    p.add_argument("--reference-file", default="outputs_reference_gpt4_1106_preview.jsonl")
    p.add_argument("--subset", type=int, default=20, help="number of prompts (0 = all 805)")
    p.add_argument("--datasets", nargs="*", help="only these AlpacaEval sources (e.g. oasst koala)")


def _judge_args(p) -> None:
    p.add_argument("--judge-config", help="JudgeConfig YAML (pairwise template; both orders are "
                                          "done here, so both_orders is forced off)")
    p.add_argument("--judge-model", help="model spec of a local pairwise judge (hf_local)")
    p.add_argument("--judge-template", default="alpaca_pairwise",
                   help="template for --judge-model (alpaca_pairwise, rlthf_pairwise)")


def _gen_args(p) -> None:
    p.add_argument("--max-tokens", type=int, default=128, help="answer length when generating")


def _engine(spec: str, args):
    from rayalign.engines.config import EngineConfig
    from rayalign.engines.factory import build_engine
    from rayalign.models.registry import model_dir

    return build_engine(EngineConfig(kind="hf_local", model=model_dir(spec),
                                     device=args.device, batch_size=args.batch_size))


def _pairwise_judge(args):
    from rayalign.config import load_config
    from rayalign.feedback.config import JudgeConfig, build_judge
    from rayalign.feedback.judges import PairwiseJudge
    from rayalign.feedback.templates import get_template

    if args.judge_config:
        cfg = load_config(JudgeConfig, args.judge_config)
        if cfg.kind in ("openai", "hf_local", "vllm"):
            cfg = cfg.model_copy(update={"both_orders": False})
        return build_judge(cfg)
    if args.judge_model:
        return PairwiseJudge(_engine(args.judge_model, args), get_template(args.judge_template),
                             both_orders=False, parse_retries=0)
    raise ValueError("give a judge: --judge-config FILE or --judge-model SPEC")


def generate_answers(engine, prompts: list[str], max_tokens: int) -> list[str]:
    """Greedy answers to bare prompts (the evaluation setting: no answer template)."""
    from rayalign.engines.base import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    res = engine.generate([GenerationRequest(id=str(i), messages=[{"role": "user", "content": p}],
                                             params=params) for i, p in enumerate(prompts)])
    return [r.texts[0] if r.texts else "" for r in res]


def _rm(args) -> int:
    from rayalign.config import load_config
    from rayalign.evaluation.tables import bar_plot, write_table
    from rayalign.feedback.config import JudgeConfig, build_judge
    from rayalign.evaluation.metrics import judge_metrics
    from rayalign.policy.sft_data import load_ranked
    from rayalign.policy.self_reward import RubricScorer
    from rayalign.policy.sft_data import rm_eval_groups, split_by_question

    if not args.model and not args.judge_config:
        raise ValueError("give at least one --model or --judge-config")
    split = split_by_question(load_ranked(args.data), args.groups, seed=args.seed)
    groups = rm_eval_groups(split.eval, args.max_answers)
    rows = []
    for spec in args.model:
        from rayalign.engines.base import SamplingParams

        scorer = RubricScorer(_engine(spec, args), name=f"self:{spec}",
                              params=SamplingParams(max_tokens=args.judge_tokens, temperature=0.0))
        m = judge_metrics(scorer, groups)
        rows.append({"judge": spec, **m})
    for path in args.judge_config:
        judge = build_judge(load_config(JudgeConfig, path))
        rows.append({"judge": judge.name, **judge_metrics(RubricScorer.from_judge(judge), groups)})
    cols = ["judge", "pairwise_accuracy", "best_of_n", "perfect_score_best", "exact_match",
            "spearman", "kendall_tau", "n_groups", "n_unparsed"]
    paths = write_table(rows, args.out, args.name, "Reward-modelling ability vs human ranks (OASST)",
                        cols, notes=[f"{len(groups)} held-out questions, up to {args.max_answers} answers each"])
    bar_plot([r["judge"] for r in rows],
             {k: [r[k] for r in rows] for k in ("pairwise_accuracy", "best_of_n", "exact_match",
                                                "spearman", "kendall_tau")},
             Path(args.out) / f"{args.name}.png", "Judge metrics vs human ranks")
    print(paths["md"].read_text())
    return 0


def _alpaca_records(args):
    from rayalign.evaluation.alpaca_eval import load_reference

    if not args.data_dir:
        raise ValueError("--data-dir: give the folder with AlpacaEval's JSONL files "
                         "(CC BY-NC 4.0: rayalign never bundles them)")
    return load_reference(args.data_dir, args.subset or None, datasets=args.datasets or None,
                          reference_file=args.reference_file)


def _answers_from(spec: str | None, outputs: str | None, ref, args) -> tuple[str, list[str]]:
    from rayalign.data.loaders import load_alpaca_eval_outputs
    from rayalign.evaluation.alpaca_eval import match_outputs

    if outputs:
        return Path(outputs).stem, match_outputs(ref, list(load_alpaca_eval_outputs(outputs)))
    if spec:
        return spec, generate_answers(_engine(spec, args), [r.prompt for r in ref], args.max_tokens)
    raise ValueError("each side needs a model spec or an outputs file")


def _h2h(args) -> int:
    from rayalign.evaluation.head_to_head import head_to_head, write_h2h
    from rayalign.runs import write_jsonl

    ref = _alpaca_records(args)
    name_a, ans_a = _answers_from(args.model_a, args.outputs_a, ref, args)
    name_b, ans_b = _answers_from(args.model_b, args.outputs_b, ref, args)
    rows, s = head_to_head(_pairwise_judge(args), [r.prompt for r in ref], ans_a, ans_b, name_a, name_b)
    write_jsonl(Path(args.out) / f"{args.name}.rows.jsonl", rows)
    paths = write_h2h([s], args.out, args.name)
    print(paths["md"].read_text())
    return 0


def _alpaca(args) -> int:
    from rayalign.data.loaders import load_alpaca_eval_annotations
    from rayalign.evaluation.alpaca_eval import alpaca_win_rate, win_rate_from_annotations, write_alpaca
    from rayalign.runs import write_jsonl

    results: dict[str, dict] = {}
    notes = []
    for path in args.annotations:
        results[Path(path).stem] = win_rate_from_annotations(load_alpaca_eval_annotations(path))
        notes.append(f"{Path(path).stem}: stored judgments (output_2 is the model)")
    if args.model or args.outputs:
        ref = _alpaca_records(args)
        judge = _pairwise_judge(args)
        sides = [(m, None) for m in args.model] + [(None, o) for o in args.outputs]
        for spec, outputs in sides:
            name, answers = _answers_from(spec, outputs, ref, args)
            rows, s = alpaca_win_rate(judge, ref, answers, name, both_orders=not args.one_order)
            write_jsonl(Path(args.out) / f"{args.name}.{Path(name).name}.rows.jsonl", rows)
            results[name] = s.as_row()
        notes.append(f"{len(ref)} prompts; judge {getattr(judge, 'name', '?')}; "
                     f"{'one order' if args.one_order else 'both orders, disagreement = tie'}")
    if not results:
        raise ValueError("nothing to evaluate: give --model, --outputs or --annotations")
    paths = write_alpaca(results, args.out, args.name, notes=notes)
    print(paths["md"].read_text())
    print(json.dumps({k: v.get("win_rate") for k, v in results.items()}))
    return 0


def _policy(args) -> int:
    from rayalign.engines.base import SamplingParams
    from rayalign.evaluation.tables import write_table
    from rayalign.policy.best_of_n import load_prompts
    from rayalign.policy.rm_eval import evaluate_policy
    from rayalign.runs import write_jsonl

    prompts = load_prompts(args.prompts, args.offset + args.limit)[args.offset:]
    if not prompts:
        raise ValueError(f"{args.prompts}: no prompts after --offset {args.offset}")
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature,
                            top_p=args.top_p, seed=args.seed)
    ev = evaluate_policy(prompts, args.before, args.after, args.rm, reference=args.reference,
                         samples=args.samples, params=params, batch_size=args.batch_size,
                         device=args.device)
    write_jsonl(Path(args.out) / f"{args.name}.rows.jsonl", ev.rows)
    s = ev.summary()
    cols = ["prompts", "samples", "reward_before", "reward_after", "win_rate_after",
            "kl_after_to_reference", "kl_stderr", "mean_chars_before", "mean_chars_after"]
    paths = write_table([s], args.out, args.name, "Policy before vs after, scored by the reward model",
                        cols, notes=[f"RM {args.rm}; before {args.before}; after {args.after}; "
                                     f"KL reference {ev.reference}; ties count 1/2 in the win rate"])
    print(paths["md"].read_text())
    return 0
