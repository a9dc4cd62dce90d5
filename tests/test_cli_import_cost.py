"""Building the CLI parser stays cheap: no torch, no ray.serve (issue 17, fixed costs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayalign.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def test_parser_does_not_import_torch_or_ray_serve():
    code = ("import sys, rayalign.cli as c; c.build_parser(); "
            "heavy = [m for m in ('torch', 'ray.serve', 'transformers', 'matplotlib', "
            "'sentence_transformers') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_serve_command_parses_without_importing_serve_and_runs_the_app(capsys):
    args = build_parser().parse_args(["rm", "serve", "--model-dir", "/nowhere", "--port", "9"])
    assert (args.model_dir, args.port) == ("/nowhere", 9)
    with pytest.raises((FileNotFoundError, ValueError), match="nowhere"):  # the real command ran
        args.func(args)
