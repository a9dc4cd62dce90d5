"""Building the CLI parser and loading job configs stays cheap: no torch (issue 17, fixed costs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_parser_and_rlthf_config_do_not_import_torch():
    # rlthf.config pulls in the embedding-head config: its module must not import torch.
    code = ("import sys, rayalign.cli as c; c.build_parser(); import rayalign.rlthf.config; "
            "heavy = [m for m in ('torch', 'transformers', 'matplotlib', "
            "'sentence_transformers') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
