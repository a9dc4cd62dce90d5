"""``rayalign generate --config`` and ``rayalign llm serve``.

``generate`` samples n candidates per prompt through the Ray Data pipeline and writes
``candidates.jsonl`` (one row per prompt, in input order, failures as rows with ``error``).
``llm serve`` runs the OpenAI-compatible Serve app over a local model until interrupted
(named ``llm serve`` because the shared ``serve`` command belongs to another area).
"""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="sample candidate answers for prompts (Ray Data fan-out)")
    g.add_argument("--config", required=True, help="generate job YAML (see jobs/configs/generate_*.yaml)")
    g.add_argument("--set", dest="overrides", action="append", default=[], help="override key.path=value")
    g.add_argument("--run-dir", help="run directory (default: run_dir in the config)")
    g.set_defaults(func=_generate)

    llm = sub.add_parser("llm", help="local LLM endpoints")
    ls = llm.add_subparsers(dest="llm_command", metavar="<subcommand>")
    add_llm_serve_parser(ls, "serve")
    llm.set_defaults(func=lambda _a: (llm.print_help(), 0)[1])


def add_llm_serve_parser(sub: argparse._SubParsersAction, name: str) -> None:
    """``rayalign llm serve`` and its alias ``rayalign serve llm``."""
    s = sub.add_parser(name, help="OpenAI-compatible /v1/chat/completions over a local HF model (Ray Serve)")
    s.add_argument("--model", default="smollm2", help="model spec: smollm2, tiny-llama, or a local dir")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8400)
    s.add_argument("--route-prefix", default="/llm")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--num-gpus", type=float, default=0)
    s.set_defaults(func=_serve)


def _generate(args: argparse.Namespace) -> int:
    import json

    from rayalign.config import load_config
    from rayalign.data.schema import PromptRecord
    from rayalign.feedback.config import GenerateJobConfig
    from rayalign.feedback.pipeline import generate_candidates_with_stats
    from rayalign.ray_utils import init_ray
    from rayalign.runs import RunDir, atomic_write_json, read_jsonl, write_jsonl

    cfg = load_config(GenerateJobConfig, args.config, args.overrides)
    run = RunDir.create_or_open(args.run_dir or cfg.run_dir, job="generate", config=cfg)
    if run.is_done("generate"):
        print(f"already done: {run.file('candidates.jsonl')}")
        return 0
    prompts = []
    for i, row in enumerate(read_jsonl(cfg.input)):
        text = row.get("prompt") or row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{cfg.input}: row {i + 1}: field prompt: missing or empty")
        prompts.append(PromptRecord(id=str(row.get("id") or f"p{i}"), prompt=text))
        if cfg.limit and len(prompts) >= cfg.limit:
            break
    init_ray(cfg.ray)
    cands, stats = generate_candidates_with_stats(
        prompts, cfg.engine, n=cfg.n, concurrency=cfg.concurrency, batch_size=cfg.actor_batch_size,
        system_prompt=cfg.system_prompt, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
    write_jsonl(run.file("candidates.jsonl"), cands)
    atomic_write_json(run.file("stats.json"), stats.as_dict())
    run.mark_done("generate", n=len(cands), errors=stats.n_errors)
    run.finish()
    print(json.dumps({k: v for k, v in stats.as_dict().items() if v}, indent=1))
    print(f"candidates: {run.file('candidates.jsonl')}")
    return 0


def _serve(args: argparse.Namespace) -> int:
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
