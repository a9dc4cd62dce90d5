"""What a user reads: one line per event, colour and live progress only on a terminal.

* ``console()``: the rich Console every command prints with. On a terminal it is rich as
  usual; redirected (a log file, CI, ``| tee``) it has no colour and no hard wrap at 80
  columns, so a line stays one line in the log.
* ``plain_ray_prefixes()``: Ray's ``(pid=...)`` prefixes of forwarded worker lines are
  ANSI-coloured unless ``RAY_COLOR_PREFIX=0``; set when stderr is not a terminal.
* ``quiet_actor(cls)``: for loop drivers that run as Ray actors (RLTHF). The CLI prints each
  event once, from the run's ``metrics.jsonl``; the actor's own INFO lines would repeat it
  through Ray's log forwarding, so in that worker only warnings and errors reach the
  terminal. (Ray's ``worker_process_setup_hook`` only applies job-wide, hence a subclass.)
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

#: Width used when redirected: wide enough that rich never breaks a line itself.
_NO_WRAP_WIDTH = 10_000


def is_terminal(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def console(stderr: bool = False):
    """A rich Console: normal on a terminal; no colour, no wrapping when redirected."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if is_terminal(stream):
        return Console(stderr=stderr)
    return Console(stderr=stderr, no_color=True, highlight=False, soft_wrap=True,
                   width=_NO_WRAP_WIDTH, force_terminal=False, emoji=False)


def plain_ray_prefixes() -> None:
    """No ANSI codes around Ray's forwarded-log prefixes when stderr is redirected."""
    if not is_terminal(sys.stderr) or not is_terminal(sys.stdout):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def quiet_actor(cls: type) -> type:
    """``cls`` whose instances first route their process's logging through ``quiet_actor_logging``."""

    class Quiet(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            quiet_actor_logging()
            super().__init__(*args, **kwargs)

    Quiet.__name__ = cls.__name__  # Ray's "(Name pid=...)" prefixes keep the real name
    return Quiet


def quiet_actor_logging() -> None:
    """This process's log lines below WARNING stay off the terminal (and out of Ray's forwarding)."""
    root = logging.getLogger()
    if any(getattr(h, "_rayalign_quiet", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._rayalign_quiet = True  # type: ignore[attr-defined]
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)  # a root handler makes later basicConfig() calls no-ops
    root.setLevel(logging.INFO)
