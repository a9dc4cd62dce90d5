"""Issue 14 item 19: one line per event, no ANSI colour or 80-column wrap when redirected."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, ray
    from rayalign.ray_utils import init_ray
    from rayalign.config import RayConfig
    from rayalign.output import console

    init_ray(RayConfig(num_cpus=1))

    class Loop:
        def __init__(self):
            # what the RLTHF driver does inside its actor
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
            log = logging.getLogger("rayalign.rlthf.driver")
            log.info("iteration 0: EVENT-INFO")
            log.warning("EVENT-WARN")

        def done(self):
            return 1

    from rayalign.output import quiet_actor

    actor = ray.remote(num_cpus=0)(quiet_actor(Loop)).remote()
    assert ray.get(actor.done.remote()) == 1
    import time; time.sleep(2)  # let Ray forward the worker's lines
    console().print("[bold]iteration 0[/]: " + "x" * 150 + " END")
""")


def test_redirected_output_is_plain_one_line_per_event():
    env = {k: v for k, v in os.environ.items() if k != "RAY_COLOR_PREFIX"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    both = out.stdout + out.stderr
    assert "\x1b[" not in both  # no ANSI colour in a log file
    assert "EVENT-INFO" not in both  # the CLI prints events; the actor's INFO copy is not shown
    assert both.count("EVENT-WARN") == 1  # warnings from the actor still reach the user
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("iteration 0")]
    assert len(line) == 1 and line[0].endswith(" END")  # not wrapped at 80 columns


def test_progress_prints_each_event_once(tmp_path, capsys):
    import json

    from rayalign.output import console
    from rayalign.cli.rlthf import _print_progress

    rows = [{"kind": "iteration", "iteration": 0, "human_count": 5, "human_pct": 1.0,
             "curated_acc": 0.8, "rm_test_acc": 0.7, "flips": 0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: set = set()
    c = console()
    _print_progress(c, seen, tmp_path)
    _print_progress(c, seen, tmp_path)
    assert capsys.readouterr().out.count("iteration 0") == 1
