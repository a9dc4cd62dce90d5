"""``rayalign serve <app>``: long-lived Ray Serve endpoints.

Each app lives in its own module and contributes its sub-command through a function
``add_serve_command(subparsers)``; this file only lists (name, module) pairs and looks them
up with importlib, like ``rayalign/cli.py`` does for areas. To add ``serve annotate`` or
``serve llm``: define ``add_serve_command`` in your module — it is picked up from the list
below (a module not written yet, or without the function, is skipped).
"""

from __future__ import annotations

import importlib
import importlib.util

SERVE_APPS: list[tuple[str, str]] = [
    ("rm", "rayalign.serve.reward_app"),
    ("annotate", "rayalign.serve.annotate_app"),
    ("llm", "rayalign.serve.llm_app"),
]


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve models and pages over HTTP (Ray Serve)")
    sub = serve.add_subparsers(dest="serve_app", metavar="<app>")
    for _name, module in SERVE_APPS:
        if importlib.util.find_spec(module) is None:
            continue
        add = getattr(importlib.import_module(module), "add_serve_command", None)
        if add is not None:
            add(sub)
    serve.set_defaults(func=lambda _a: (serve.print_help(), 0)[1])
