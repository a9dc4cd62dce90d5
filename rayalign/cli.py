"""The ``rayalign`` console script: one sub-command per job.

Each area registers its own sub-commands (``rayalign/<area>/commands.py`` with a
``register(subparsers)`` function), so this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys

# Areas that contribute sub-commands, in --help order. An area not written yet is absent.
COMMAND_MODULES = [
    "rayalign.data.commands",
    "rayalign.rlthf.commands",
    "rayalign.feedback.commands",
    "rayalign.engines.commands",
    "rayalign.rewards.commands",
    "rayalign.policy.commands",
    "rayalign.policy.align_commands",
    "rayalign.evaluation.commands",
    "rayalign.humans.commands",
    "rayalign.serve.commands",
    "rayalign.reports.commands",
    "rayalign.jobs_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rayalign",
        description="Align language models with as little human effort as possible, on Ray.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Offline by default: nothing reaches a model hub unless the user unsets these.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
        if msg is None or args.verbose:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
