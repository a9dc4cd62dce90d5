"""Self-reward vs teacher-reward vs teacher-demo vs SFT, at small scale, one table.

Reproduces the *protocol* of the Phi-2 study (Luo et al.) on CPU with a real small model:

1. M1 = SFT of the base model on IFT + EFT seed data (OASST ranked answers), trained once
   and shared by the three recipes;
2. one DPO iteration per recipe from M1 (self-reward: M1 judges its own 4 candidates;
   teacher-reward: the teacher judges them; teacher-demo: teacher answer chosen, student
   answer rejected), each through ``rayalign align`` machinery (Ray actor, Ray Train);
3. every model evaluated with the study's metrics: reward-modelling ability of the model as
   its own 5-point judge against human ranks on held-out OASST questions (pairwise accuracy,
   best-of-N, 5-best, exact match, Spearman, Kendall tau — Table 2), head-to-head against
   M1 judged in both orders (disagreement = tie), and the AlpacaEval-style win rate against
   the gpt4_1106_preview reference outputs on a subset.

Offline there is no model stronger than the student, so (stated in the output):
* the teacher-reward teacher is the original SmolLM2-135M-Instruct (M0), not a stronger one;
* the teacher-demo teacher is SIMULATED: it replays the best human OASST answer;
* the pairwise judge of head-to-head / AlpacaEval is SmolLM2-135M-Instruct (M0), which is
  close to chance and position-biased (DESIGN.md), so most comparisons end as ties.

    python benchmarks/self_teacher.py                       # SmolLM2, CPU, ~tens of minutes
    python benchmarks/self_teacher.py --model tiny --quick  # plumbing check, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RECIPES = ("self-reward", "teacher-reward", "teacher-demo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="base model spec (smollm2, tiny, a dir)")
    p.add_argument("--teacher", default="smollm2", help="teacher-reward judge model spec")
    p.add_argument("--judge", default="smollm2", help="pairwise judge for h2h / AlpacaEval")
    p.add_argument("--out", default="runs/bench-self-teacher")
    p.add_argument("--prompts", type=int, default=8, help="DPO prompts per recipe")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--n-ift", type=int, default=32)
    p.add_argument("--n-eft", type=int, default=32)
    p.add_argument("--sft-epochs", type=float, default=1.0)
    p.add_argument("--sft-lr", type=float, default=2e-5)
    p.add_argument("--eval-groups", type=int, default=8, help="held-out OASST questions (Table 2)")
    p.add_argument("--eval-prompts", type=int, default=8, help="AlpacaEval prompts (h2h + win rate)")
    p.add_argument("--max-tokens", type=int, default=64, help="answer length")
    p.add_argument("--judge-tokens", type=int, default=64, help="rubric judge output length")
    p.add_argument("--alpaca-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"))
    p.add_argument("--quick", action="store_true", help="smallest sizes (plumbing check)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.quick:
        a.prompts, a.n_ift, a.n_eft, a.eval_groups, a.eval_prompts = 3, 4, 4, 2, 2
        a.max_tokens, a.judge_tokens = 16, 16
    return a


def base_config(a, out: Path) -> dict:
    train = {"effective_batch_size": 8, "per_device_batch_size": 4, "max_length": 384,
             "learning_rate": a.sft_lr, "num_epochs": a.sft_epochs}
    return {
        "model": a.model, "iterations": 1, "n_candidates": a.candidates, "seed": a.seed,
        "max_answer_chars": 200,
        "policy_engine": {"kind": "hf_local", "device": "cpu", "dtype": "float32", "batch_size": 8},
        "generation": {"max_tokens": a.max_tokens, "temperature": 0.8, "top_p": 0.95, "seed": a.seed},
        "judge": {"max_tokens": a.judge_tokens, "temperature": 0.0},
        "teacher_generation": {"max_tokens": a.max_tokens, "temperature": 0.0},
        "prompts": {"source": "oasst", "n_prompts": a.prompts},
        "sft": {"n_ift": a.n_ift, "n_eft": a.n_eft, "train": train},
        "dpo": {"learning_rate": 1e-6, "beta": 0.1, "num_epochs": 1, "effective_batch_size": 4,
                "per_device_batch_size": 2, "max_length": 384},
        "eval": {"rm_groups": a.eval_groups, "max_answers": 4, "per_iteration": False},
        "ray": {"num_cpus": 2},
    }


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    from rayalign.data.schema import PairwiseItem  # noqa: F401  (fail early if not installed)
    from rayalign.engines.base import GenerationRequest, SamplingParams
    from rayalign.engines.config import EngineConfig
    from rayalign.engines.factory import build_engine
    from rayalign.evaluation.alpaca_eval import alpaca_win_rate, load_reference
    from rayalign.evaluation.head_to_head import head_to_head, write_h2h
    from rayalign.evaluation.tables import bar_plot, write_table
    from rayalign.feedback.judges import PairwiseJudge
    from rayalign.feedback.templates import ALPACA_PAIRWISE
    from rayalign.policy.align_config import AlignConfig
    from rayalign.models.registry import model_dir
    from rayalign.evaluation.metrics import judge_metrics
    from rayalign.policy.driver import run_align
    from rayalign.policy.sft_data import prepare_data
    from rayalign.policy.self_reward import RubricScorer

    timings: dict[str, float] = {}
    base = base_config(a, out)

    # 1. M1 (SFT), shared by every recipe.
    t0 = time.perf_counter()
    sft_cfg = AlignConfig.model_validate({**base, "recipe": "sft", "run_dir": str(out / "sft")})
    m1 = run_align(sft_cfg)["models"]["M1"]
    timings["sft"] = time.perf_counter() - t0

    # 2. One DPO iteration per recipe from M1.
    models = {"SFT (M1)": m1}
    pair_stats: dict[str, dict] = {}
    teacher_engine = {"kind": "hf_local", "model": a.teacher, "device": "cpu", "dtype": "float32",
                      "batch_size": 8}
    for recipe in RECIPES:
        cfg = {**base, "recipe": recipe, "model": m1, "run_dir": str(out / recipe),
               "sft": {**base["sft"], "enabled": False}}
        if recipe == "teacher-reward":
            cfg["teacher"] = {"kind": "engine", "engine": teacher_engine}
        elif recipe == "teacher-demo":
            cfg["teacher"] = {"kind": "replay"}
        t0 = time.perf_counter()
        s = run_align(AlignConfig.model_validate(cfg))
        timings[recipe] = time.perf_counter() - t0
        models[f"{recipe} (M2)"] = s["models"]["M2"]
        info = json.loads((out / recipe / "manifest.json").read_text())["steps"]["it1.pairs"]
        pair_stats[recipe] = info

    # 3. Evaluation. Held-out OASST questions: the same split the runs held out.
    groups = prepare_data(sft_cfg)["eval_groups"]
    ref = load_reference(a.alpaca_dir, a.eval_prompts, seed=a.seed)
    prompts = [r.prompt for r in ref]
    judge_engine = build_engine(EngineConfig(kind="hf_local", model=model_dir(a.judge),
                                             device="cpu", dtype="float32", batch_size=8))
    judge = PairwiseJudge(judge_engine, ALPACA_PAIRWISE, both_orders=False, parse_retries=0,
                          params=SamplingParams(max_tokens=48, temperature=0.0))
    answers: dict[str, list[str]] = {}
    rows = []
    t0 = time.perf_counter()
    for name, path in models.items():
        eng = build_engine(EngineConfig(kind="hf_local", model=path, device="cpu", dtype="float32",
                                        batch_size=8))
        rm = judge_metrics(RubricScorer(eng, params=SamplingParams(max_tokens=a.judge_tokens)), groups)
        res = eng.generate([GenerationRequest(id=str(i), messages=[{"role": "user", "content": p}],
                                              params=SamplingParams(max_tokens=a.max_tokens))
                            for i, p in enumerate(prompts)])
        answers[name] = [r.texts[0] if r.texts else "" for r in res]
        del eng
        _, win = alpaca_win_rate(judge, ref, answers[name], name)
        row = {"model": name, "pairwise_acc": rm["pairwise_accuracy"], "best_of_n": rm["best_of_n"],
               "5_best": rm["perfect_score_best"], "exact_match": rm["exact_match"],
               "spearman": rm["spearman"], "kendall_tau": rm["kendall_tau"],
               "unparsed_scores": f"{rm['n_unparsed']}/{rm['n_responses']}",
               "alpaca_win_rate": win.win_rate,
               "alpaca_W/T/L/err": f"{win.wins}/{win.ties}/{win.losses}/{win.errors}"}
        rows.append(row)
    h2h = []
    for name in list(models)[1:]:
        _, s = head_to_head(judge, prompts, answers[name], answers["SFT (M1)"], name, "SFT (M1)")
        h2h.append(s)
        next(r for r in rows if r["model"] == name)["h2h_vs_M1_W/T/L/err"] = f"{s.wins}/{s.ties}/{s.losses}/{s.errors}"
    rows[0]["h2h_vs_M1_W/T/L/err"] = "-"
    for r in rows:
        st = pair_stats.get(r["model"].split(" ")[0], {})
        r["dpo_pairs"] = st.get("pairs", "-")
        r["skipped(tie/unparsed)"] = (f"{st.get('skipped_tie', 0)}/{st.get('skipped_unparseable', 0)}"
                                      if "skipped_tie" in st else "-")
        r["wall_s"] = round(timings.get(r["model"].split(" ")[0], timings["sft"]), 1)
    timings["eval"] = time.perf_counter() - t0

    notes = [
        f"base model {a.model}; M1 = SFT on {a.n_ift} IFT + {a.n_eft} EFT OASST examples "
        f"({a.sft_epochs:g} epoch(s), lr {a.sft_lr:g}); one DPO "
        f"iteration per recipe on {a.prompts} OASST prompts x {a.candidates} candidates (lr 1e-6, beta 0.1)",
        f"Table 2 metrics: each model judges {len(groups)} held-out OASST questions (up to 4 human-ranked "
        "answers) with the 5-point rubric; unparseable scores rank last",
        f"h2h and AlpacaEval: {len(prompts)} AlpacaEval prompts, judge {judge.name} in both orders "
        "(disagreement = tie); reference = gpt4_1106_preview outputs",
        f"teacher-reward teacher: {a.teacher} (NOT stronger than the student offline); teacher-demo "
        "teacher: SIMULATED (replays the best OASST human answer)",
        f"timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}",
    ]
    cols = ["model", "pairwise_acc", "best_of_n", "5_best", "exact_match", "spearman", "kendall_tau",
            "unparsed_scores", "h2h_vs_M1_W/T/L/err", "alpaca_win_rate", "alpaca_W/T/L/err", "dpo_pairs",
            "skipped(tie/unparsed)", "wall_s"]
    paths = write_table(rows, out, "self_teacher", "Self-reward vs teacher-guided DPO vs SFT (small scale)",
                        cols, notes)
    write_h2h(h2h, out, "self_teacher_h2h")
    bar_plot([r["model"] for r in rows],
             {k: [r[k] for r in rows] for k in ("pairwise_acc", "best_of_n", "exact_match",
                                                "kendall_tau", "alpaca_win_rate")},
             out / "self_teacher.png", "Self-reward / teacher-guided DPO vs SFT")
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
