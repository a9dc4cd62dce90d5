"""The long-lived Ray Serve endpoints: ``rm serve``, ``llm serve``, ``annotate serve``.

Each starts its Serve app (``rayalign/serve/``) bound to 127.0.0.1 unless told otherwise,
prints where it really listens, and runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from rayalign.cli.annotate import _print_status, _queue
from rayalign.cli.common import add_run_dir_argument

log = logging.getLogger(__name__)


def add_rm_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", help="trained RM directory (e.g. runs/rm/model)")
    add_run_dir_argument(p, required=False, help="an `rm train` run directory (serves its model/)")
    p.add_argument("--config", help="YAML with RMServeConfig fields (replicas, autoscaling, limits)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--replicas", type=int, default=None)
    p.set_defaults(func=_cmd_serve_rm)


def add_llm_serve(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default="smollm2", help="model spec: smollm2, tiny, or a local dir")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8400)
    s.add_argument("--route-prefix", default="/llm")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--num-gpus", type=float, default=0)
    s.set_defaults(func=_cmd_serve_llm)


def add_annotate_serve(s: argparse.ArgumentParser) -> None:
    add_run_dir_argument(s, help="run directory whose annotation queue to serve")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8300)
    s.add_argument("--token", default=None,
                   help="access token (default: $RAYALIGN_ANNOTATE_TOKEN, else generated)")
    s.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    s.add_argument("--exit-when-complete", action="store_true",
                   help="stop once every batch in the queue is complete")
    s.set_defaults(func=_cmd_serve_annotate)


def _cmd_serve_rm(args: argparse.Namespace) -> int:
    from rayalign.config import load_config, validate_config
    from rayalign.serve.reward_app import RMServeConfig, start_reward_server

    if args.run_dir and not args.model_dir:
        model = Path(args.run_dir) / "model"
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"--run-dir {args.run_dir}: no trained model at {model}")
        args.model_dir = str(model)
    if args.config:
        cfg = load_config(RMServeConfig, args.config, args.overrides)
    else:
        if not args.model_dir:
            raise ValueError("rm serve: give --model-dir (a trained RM directory) or --config")
        cfg = validate_config(RMServeConfig, {"model_dir": args.model_dir}, "command line")
    updates = {k: v for k, v in (("model_dir", args.model_dir), ("host", args.host),
                                 ("port", args.port), ("num_replicas", args.replicas)) if v}
    cfg = cfg.model_copy(update=updates)
    cfg = RMServeConfig.model_validate(cfg.model_dump())
    from rayalign.serve.common import describe_bind, is_loopback, running_proxy

    url = start_reward_server(cfg)
    bound = running_proxy() or (cfg.host, cfg.port)
    if not is_loopback(bound[0]):
        log.warning("serving the reward model on %s", describe_bind(*bound))
    print(json.dumps({"url": url, "bound": describe_bind(*bound),
                      "endpoints": ["/score", "/score_pairs", "/health"]}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    from ray import serve

    serve.shutdown()
    return 0


def _cmd_serve_llm(args: argparse.Namespace) -> int:
    from rayalign.serve.llm_app import start_llm_server, stop_llm_server

    url = start_llm_server(args.model, host=args.host, port=args.port, route_prefix=args.route_prefix,
                           device=args.device, batch_size=args.batch_size, num_replicas=args.replicas,
                           num_gpus=args.num_gpus)
    print(f"OpenAI-compatible endpoint ready: {url}  (model {args.model}; Ctrl-C to stop)")
    print(f"judge config: kind: openai, model: {args.model}, base_urls: [{url}]")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_llm_server()
    return 0


def _cmd_serve_annotate(args: argparse.Namespace) -> int:
    from ray import serve

    from rayalign.config import RayConfig
    from rayalign.ray_utils import init_ray
    from rayalign.serve.annotate_app import TOKEN_ENV, resolve_token, start_annotation_server

    from rayalign.serve.common import describe_bind, is_loopback, running_proxy

    q = _queue(args.run_dir, must_exist=False)
    token, generated = resolve_token(args.token)
    init_ray(RayConfig())
    # Refuses when a Serve proxy already runs on another host (it cannot be rebound).
    base = start_annotation_server(q.db_path, token, host=args.host, port=args.port)
    # What the proxy really listens on, not what was asked: Serve's proxy is shared.
    bound = running_proxy() or (args.host, args.port)
    print(f"Serve HTTP proxy bound to {describe_bind(*bound)}")
    if not is_loopback(bound[0]):
        print(f"warning: the page is reachable from other machines ({describe_bind(*bound)}); "
              "only the token protects it (put it behind TLS)", file=sys.stderr)
    shown = token if generated else "<your token>"
    print(f"annotation page: {base}/?token={shown}")
    print(f"reviewer view:   {base}/review?token={shown}")
    if generated:
        print(f"(token generated for this session; set {TOKEN_ENV} to reuse one)")
    _print_status(q)
    print("Ctrl-C to stop")
    try:
        while True:
            time.sleep(args.poll)
            if args.exit_when_complete:
                st = q.status()
                if st and all(s["complete"] for s in st):
                    print("every batch is complete")
                    break
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete("annotate")
    return 0
