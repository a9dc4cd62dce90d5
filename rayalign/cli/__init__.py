"""The ``rayalign`` console script: one table of commands, one spelling each.

Each row of :data:`COMMANDS` is a command's words, its help line, and the function that
adds its arguments and handler (``module:function``, imported when the parser is built).
Job commands also get the shared ``--config/--set/--run-dir/--resume|--new`` arguments, so a
flag means the same everywhere. Command modules keep heavy imports (torch, ray) inside their
handlers: building the parser stays cheap. Like TRL's ``get_commands()``, adding a command
is adding a row.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    words: str                 # "rlthf run"
    help: str
    add: str                   # "rayalign.cli.rlthf:add_run": adds arguments + handler
    job_example: str = ""      # set for job commands: the example config in their --config help


COMMANDS: tuple[Command, ...] = (
    Command("rlthf run", "run (or resume) the RLTHF loop", "rayalign.cli.rlthf:add_run",
            "jobs/configs/quickstart.yaml"),
    Command("label", "AI-label preference pairs with a judge (Ray Data fan-out, cached)",
            "rayalign.cli.label:add_label", "jobs/configs/label_hh_smollm2.yaml"),
    Command("generate", "sample candidate answers for prompts (Ray Data fan-out)",
            "rayalign.cli.generate:add_generate", "jobs/configs/generate_smollm2.yaml"),
    Command("rm train", "train a LoRA Bradley-Terry RM (TRL RewardTrainer on Ray Train)",
            "rayalign.cli.rm:add_train", "jobs/configs/rm_tiny.yaml"),
    Command("rm score", "score preference pairs with a trained RM (Ray Data; JSONL out)",
            "rayalign.cli.rm:add_score"),
    Command("rm serve", "serve a trained reward model over HTTP (Ray Serve)",
            "rayalign.cli.serve:add_rm_serve"),
    Command("sft", "supervised fine-tuning (TRL SFTTrainer on Ray Train)",
            "rayalign.cli.train:add_sft", "jobs/configs/sft_tiny.yaml"),
    Command("dpo", "DPO training (TRL DPOTrainer on Ray Train)",
            "rayalign.cli.train:add_dpo", "jobs/configs/dpo_tiny.yaml"),
    Command("bon", "best-of-N with a reward model: best as SFT data, best vs worst as DPO pairs",
            "rayalign.cli.bon:add_bon", "jobs/configs/bon_cpu_demo.yaml"),
    Command("rl", "online RL against a reward model (TRL GRPO / RLOO on Ray Train)",
            "rayalign.cli.rl:add_rl", "jobs/configs/rl_cpu.yaml"),
    Command("align", "self-reward / teacher-reward / teacher-demo DPO loops (M1 -> M2 -> M3)",
            "rayalign.cli.align:add_align", "jobs/configs/align_cpu_demo.yaml"),
    Command("cai", "Constitutional AI: critique/revision SFT data + AI preference labels",
            "rayalign.cli.cai:add_cai", "jobs/configs/cai_cpu.yaml"),
    Command("llm serve", "OpenAI-compatible /v1/chat/completions over a local model (Ray Serve)",
            "rayalign.cli.serve:add_llm_serve"),
    Command("annotate serve", "serve the annotation page and its JSON API (Ray Serve)",
            "rayalign.cli.serve:add_annotate_serve"),
    Command("annotate export", "export a human batch for Label Studio or Argilla",
            "rayalign.cli.annotate:add_export"),
    Command("annotate import", "import answers made in Label Studio or Argilla",
            "rayalign.cli.annotate:add_import"),
    Command("annotate status", "progress of every batch in a run's annotation queue",
            "rayalign.cli.annotate:add_status"),
    Command("eval judge", "a judge's agreement with reference labels (HH, AlpacaEval, JSONL)",
            "rayalign.cli.label:add_eval_judge"),
    Command("eval rm", "reward-modelling metrics of LLM judges vs human ranks (OASST)",
            "rayalign.cli.evaluate:add_eval_rm"),
    Command("eval h2h", "head-to-head of two models, judged in both orders",
            "rayalign.cli.evaluate:add_eval_h2h"),
    Command("eval alpaca", "win rate vs the AlpacaEval reference outputs",
            "rayalign.cli.evaluate:add_eval_alpaca"),
    Command("eval policy", "a policy before vs after training under a reward model (reward, win rate, KL)",
            "rayalign.cli.evaluate:add_eval_policy"),
    Command("data inspect", "counts, fields, a sample and every bad row of a data file",
            "rayalign.cli.data:add_inspect"),
    Command("report", "write a run's report (self-contained HTML + Markdown)",
            "rayalign.cli.report:add_report"),
    Command("submit", "submit a job config to a Ray cluster (Ray Jobs)", "rayalign.cli.jobs:add_submit"),
    Command("status", "status of a submitted Ray job", "rayalign.cli.jobs:add_status"),
    Command("logs", "logs of a submitted Ray job", "rayalign.cli.jobs:add_logs"),
)

#: Help lines of the command groups (the first word of multi-word commands).
GROUPS = {
    "rlthf": "RLTHF: targeted human feedback for reward models",
    "rm": "reward models: train (Ray Train), score (Ray Data), serve (Ray Serve)",
    "llm": "local LLM endpoints",
    "annotate": "human annotation: page, export/import, status",
    "eval": "evaluate judges and models",
    "data": "inspect preference data files",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rayalign")
    except PackageNotFoundError:
        return "unknown"


def _verbose_parent() -> argparse.ArgumentParser:
    """``-v`` accepted after any command too (``rayalign rlthf run -v``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging")
    return p


def build_parser() -> argparse.ArgumentParser:
    from rayalign.cli.common import add_job_arguments

    parser = argparse.ArgumentParser(
        prog="rayalign", allow_abbrev=False,
        description="Align language models with as little human effort as possible, on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"rayalign {_version()}")
    top = parser.add_subparsers(dest="command", metavar="<command>")
    verbose = _verbose_parent()
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd in COMMANDS:
        words = cmd.words.split()
        where = top
        if len(words) == 2:
            if words[0] not in groups:
                g = top.add_parser(words[0], help=GROUPS[words[0]], parents=[verbose], allow_abbrev=False)
                g.set_defaults(func=lambda _a, g=g: (g.print_help(), 0)[1])
                groups[words[0]] = g.add_subparsers(dest=f"{words[0]}_command", metavar="<subcommand>")
            where = groups[words[0]]
        # No abbreviations: `--run` must not silently mean `--run-dir`.
        p = where.add_parser(words[-1], help=cmd.help, description=cmd.help, parents=[verbose],
                             allow_abbrev=False)
        if cmd.job_example:
            add_job_arguments(p, cmd.job_example)
        module, func = cmd.add.split(":")
        getattr(importlib.import_module(module), func)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Offline by default: nothing reaches a model hub unless the user unsets these.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # No per-model "Loading weights" bars from every Ray worker in the user's log (inherited
    # by the local cluster's workers); the CLI prints its own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the run directory",
              file=sys.stderr)
        return 130
    except Exception as err:
        # Errors the user fixes (also when raised inside a Ray actor): one line, no traceback.
        from rayalign.errors import user_message

        msg = user_message(err)
        if msg is None or getattr(args, "verbose", False):
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)
