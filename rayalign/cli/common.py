"""Arguments and helpers every command shares, so one flag means one thing everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_job_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """``--config``, ``--set``, ``--run-dir`` and ``--resume``/``--new`` of every job command."""
    p.add_argument("--config", required=True, help=f"job YAML (e.g. {example})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set seed=1 (repeatable)")
    p.add_argument("--run-dir", default=None,
                   help="run directory (default: the config's run_dir, or runs/<name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", dest="run_mode", action="store_const", const="resume",
                      help="continue an existing run directory (error if there is none)")
    mode.add_argument("--new", dest="run_mode", action="store_const", const="new",
                      help="start a new run (error if the run directory already holds one)")
    p.set_defaults(run_mode="auto")


def add_run_dir_argument(p: argparse.ArgumentParser, required: bool = True,
                         help: str = "run directory (runs/<name>)") -> None:
    """``--run-dir`` for commands that read or extend an existing run."""
    p.add_argument("--run-dir", required=required, help=help)


def check_run_mode(run_mode: str, run_dir: str | Path) -> bool:
    """Apply ``--resume``/``--new`` to ``run_dir`` before any work; returns ``resume``.

    Checked up front, so a wrong guess costs nothing: ``--new`` never touches an existing
    run, ``--resume`` never starts an empty one by mistake.
    """
    exists = (Path(run_dir) / "manifest.json").is_file()
    if run_mode == "new" and exists:
        raise FileExistsError(f"{run_dir} already holds a run; drop --new to resume it, "
                              "or choose another --run-dir")
    if run_mode == "resume" and not exists:
        raise FileNotFoundError(f"--resume: {run_dir} holds no run to continue (no manifest.json)")
    return run_mode != "new"


def resolve_config_path(path: str, config_path: str) -> str:
    """A data/model path from a config: a named model spec as is, else absolute, relative to
    the working directory if it exists there, else relative to the config file's folder."""
    from rayalign.config import resolve_path
    from rayalign.models.registry import is_named_spec

    if is_named_spec(path):
        return path
    p = resolve_path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    return str(resolve_path(path, Path(config_path).parent))


def load_pairs(path: str, limit: int | None):
    """Preference pairs of any supported file, the first ``limit`` of them."""
    from rayalign.data.loaders import load_any

    pairs = list(load_any(path))
    return pairs[:limit] if limit else pairs
