"""``rayalign submit | status | logs``: run any rayalign job on a Ray cluster (Ray Jobs SDK).

``rayalign submit jobs/configs/dpo_tiny.yaml --address http://head:8265`` ships the project
(package + configs) as the job's ``working_dir`` and runs ``python -m rayalign.cli <job>
--config <config>`` on the cluster; the job's own code then uses the cluster through
``RAY_ADDRESS`` (Ray Jobs sets it), so nothing in the job changes between laptop and cluster.

Which job a config belongs to: ``--job`` if given, else a ``# rayalign-job: <job>`` line in
the YAML, else the file name (``rm_*`` -> ``rm train``, ``dpo_*`` -> ``dpo``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from rayalign.config import ConfigError, load_yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"

# File-name prefix -> rayalign sub-command (checked against the real CLI in the tests).
JOB_BY_PREFIX: list[tuple[str, str]] = [
    ("quickstart", "rlthf run"),
    ("rlthf_", "rlthf run"),
    ("align_", "align"),
    ("label_", "label"),
    ("generate_", "generate"),
    ("rm_", "rm train"),
    ("dpo_", "dpo"),
    ("sft_", "sft"),
]

# Never shipped to the cluster: environments, run outputs, caches, VCS.
WORKING_DIR_EXCLUDES = [
    ".venv", ".venv/**", "runs", "runs/**", ".git", ".git/**", "**/__pycache__", "**/*.pyc",
    ".pytest_cache", "*.egg-info", "benchmarks/results", "**/.ipynb_checkpoints",
]

# Offline by default on the cluster too; API keys are never put here (set them on the nodes).
JOB_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0",
}

_HEADER = re.compile(r"^\s*#\s*rayalign-job:\s*(.+?)\s*$", re.MULTILINE)


def infer_job(config_path: Path) -> str:
    """The rayalign sub-command a config file is for (header comment, else file name)."""
    m = _HEADER.search(config_path.read_text(encoding="utf-8"))
    if m:
        return m.group(1)
    name = config_path.name
    for prefix, job in JOB_BY_PREFIX:
        if name.startswith(prefix):
            return job
    raise ConfigError(
        f"{config_path}: cannot tell which job this config is for; pass --job "
        f"(e.g. 'rm train', 'dpo', 'rlthf run') or add a '# rayalign-job: <job>' line")


def build_submission(config_path: str | os.PathLike, job: str | None = None,
                     project_root: Path = PROJECT_ROOT, env: dict[str, str] | None = None,
                     extra_args: list[str] | None = None, pip: list[str] | None = None,
                     entrypoint_num_cpus: float | None = None,
                     entrypoint_num_gpus: float | None = None) -> dict[str, Any]:
    """Keyword arguments for ``JobSubmissionClient.submit_job`` (pure: no cluster needed)."""
    cfg = Path(config_path).resolve()
    load_yaml(cfg)  # a YAML error is reported here, not minutes later on the cluster
    root = Path(project_root).resolve()
    try:
        rel = cfg.relative_to(root)
    except ValueError:
        raise ConfigError(
            f"{cfg} is outside the project directory {root}; only files under it are shipped "
            "to the cluster (put the config in jobs/configs/)") from None
    job = job or infer_job(cfg)
    argv = [*job.split(), "--config", rel.as_posix(), *(extra_args or [])]
    runtime_env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": {**JOB_ENV, **(env or {})},
    }
    if pip:
        runtime_env["pip"] = list(pip)
    spec: dict[str, Any] = {
        "entrypoint": " ".join(["python", "-m", "rayalign.cli", *argv]),
        "runtime_env": runtime_env,
        "metadata": {"rayalign_job": job, "config": rel.as_posix()},
    }
    if entrypoint_num_cpus is not None:
        spec["entrypoint_num_cpus"] = entrypoint_num_cpus
    if entrypoint_num_gpus is not None:
        spec["entrypoint_num_gpus"] = entrypoint_num_gpus
    return spec


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    addr = address or os.environ.get("RAY_JOBS_ADDRESS") or os.environ.get("RAY_ADDRESS") \
        or DEFAULT_ADDRESS
    if not addr.startswith(("http://", "https://")):
        # `ray start` prints the GCS address (host:6379); the Jobs API is the dashboard's.
        raise ConfigError(f"--address {addr!r}: give the dashboard URL, e.g. {DEFAULT_ADDRESS}")
    return JobSubmissionClient(addr)


def submit(config_path: str, address: str | None = None, job: str | None = None,
           wait: bool = False, timeout_s: float = 3600, **kw: Any) -> tuple[str, str | None]:
    """Submit; return (job id, final status or None). ``wait`` blocks until the job ends."""
    spec = build_submission(config_path, job=job, **kw)
    client = _client(address)
    job_id = client.submit_job(**spec)
    status = wait_for(client, job_id, timeout_s) if wait else None
    if status is not None and status != "SUCCEEDED":
        tail = client.get_job_logs(job_id).splitlines()[-40:]
        sys.stderr.write("\n".join(tail) + "\n")
    return job_id, status


def wait_for(client, job_id: str, timeout_s: float) -> str:
    terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in terminal:
            return status
        if time.monotonic() > deadline:
            return status
        time.sleep(1.0)


# --- CLI ----------------------------------------------------------------------------------

def _cmd_submit(args: argparse.Namespace) -> int:
    bad = [kv for kv in args.env if "=" not in kv]
    if bad:
        raise ConfigError(f"--env {bad[0]!r} must look like KEY=VALUE")
    env = dict(kv.split("=", 1) for kv in args.env)
    import shlex

    extra = shlex.split(args.job_args)
    job_id, status = submit(args.config, address=args.address, job=args.job, wait=args.wait,
                            timeout_s=args.timeout, env=env, extra_args=extra,
                            entrypoint_num_gpus=args.entrypoint_gpus)
    print(json.dumps({"job_id": job_id, "status": status}))
    if status is not None and status != "SUCCEEDED":
        print(f"job {job_id} ended {status}; full logs: rayalign logs {job_id}", file=sys.stderr)
        return 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    info = _client(args.address).get_job_info(args.job_id)
    print(json.dumps({"job_id": args.job_id, "status": str(info.status.value),
                      "message": info.message, "entrypoint": info.entrypoint,
                      "metadata": info.metadata}, default=str))
    return 0 if str(info.status.value) != "FAILED" else 1


def _cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if not args.follow:
        sys.stdout.write(client.get_job_logs(args.job_id))
        return 0
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(args.job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())
    return 0


ADDRESS_HELP = f"Ray dashboard URL (default: $RAY_ADDRESS or {DEFAULT_ADDRESS})"


def add_submit(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="job YAML under the project (e.g. jobs/configs/dpo_tiny.yaml)")
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--job", default=None, help="sub-command, e.g. 'rm train' (default: inferred)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment variable for the job (never put secrets here)")
    p.add_argument("--entrypoint-gpus", type=float, default=None,
                   help="GPUs reserved for the driver process itself")
    p.add_argument("--wait", action="store_true", help="block until the job ends")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--job-args", default="",
                   help="more arguments for the job, one string, e.g. "
                        "--job-args='--set train.beta=0.2 --run-dir /shared/runs/x'")
    p.set_defaults(func=_cmd_submit)


def add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id")
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.set_defaults(func=_cmd_status)


def add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id")
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(func=_cmd_logs)
