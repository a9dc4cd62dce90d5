"""``rayalign serve <app>``: long-lived Ray Serve endpoints.

Each app lives in its own module and contributes its sub-command through a function
``add_serve_command(subparsers)``; this file only lists (name, module, help) and looks them
up with importlib, like ``rayalign/cli.py`` does for areas. To add an app: define
``add_serve_command`` in your module and list it below (a module not written yet is skipped).

WHY lazy: every app module imports ``ray.serve`` (~0.5-1 s, plus pandas) at import time, and
building the CLI parser for *any* command used to pay that. Here ``serve <app>`` is a stub
that takes the rest of the command line as it is; the app's module is imported, and its
real parser built and run, only when that app is the command being run (``--help`` too).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util

SERVE_APPS: list[tuple[str, str, str]] = [
    ("rm", "rayalign.serve.reward_app", "serve a trained reward model over HTTP (Ray Serve)"),
    ("annotate", "rayalign.serve.annotate_app", "serve the human annotation page (Ray Serve)"),
    ("llm", "rayalign.serve.llm_app", "OpenAI-compatible chat endpoint over a local model (Ray Serve)"),
]


def app_parser(name: str, module: str) -> argparse.ArgumentParser:
    """The app's real parser (``rayalign serve <name> ...``): imports the app module."""
    parser = argparse.ArgumentParser(prog="rayalign serve")
    sub = parser.add_subparsers(dest="serve_app", metavar="<app>")
    importlib.import_module(module).add_serve_command(sub)
    if name not in sub.choices:
        raise RuntimeError(f"{module}.add_serve_command did not add the sub-command {name!r}")
    return parser


def _run_app(name: str, module: str, args: argparse.Namespace) -> int:
    real = app_parser(name, module).parse_args([name, *args.serve_argv])
    for key, value in vars(args).items():  # global flags (-v, ...) carry over
        if key not in ("func", "serve_argv") and not hasattr(real, key):
            setattr(real, key, value)
    return real.func(real)


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve models and pages over HTTP (Ray Serve)")
    sub = serve.add_subparsers(dest="serve_app", metavar="<app>")
    for name, module, help_ in SERVE_APPS:
        if importlib.util.find_spec(module) is None:
            continue
        # No option characters: every token after the app name is kept for the real parser.
        stub = sub.add_parser(name, help=help_, add_help=False, prefix_chars="\x00")
        stub.add_argument("serve_argv", nargs=argparse.REMAINDER)
        stub.set_defaults(func=functools.partial(_run_app, name, module))
    serve.set_defaults(func=lambda _a: (serve.print_help(), 0)[1])
