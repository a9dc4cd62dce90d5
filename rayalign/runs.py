"""Every run is a directory: resolved config, manifest, metrics, artefacts, finished steps.

A killed run is reopened from its directory. Steps record themselves as done only after
their outputs are written (atomically), so a rerun skips exactly what was already paid for.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel

SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")


def _redact(obj: Any) -> Any:
    """Never write secrets to a run directory, whatever a config holds."""
    if isinstance(obj, dict):
        return {
            k: ("***" if any(m in str(k).lower() for m in SECRET_MARKERS) and v else _redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | BaseModel]) -> int:
    n = 0
    lines = []
    for r in rows:
        d = r.model_dump() if isinstance(r, BaseModel) else r
        lines.append(json.dumps(d, ensure_ascii=False, default=str))
        n += 1
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


class RunDir:
    """A run directory under ``root/name`` (default ``runs/<name>``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation / reopening ------------------------------------------------------------
    @classmethod
    def create_or_open(cls, path: str | os.PathLike, job: str, config: BaseModel | dict,
                       resume: bool = True) -> "RunDir":
        """Open an existing run of the same job (resume) or create a new one.

        Resuming with a changed config is refused: the steps already done were paid for
        under the old config, and mixing would make the run's numbers meaningless.
        """
        run = cls(path)
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        cfg = _redact(cfg)
        if run.manifest_path.exists():
            man = run.manifest()
            if not resume:
                raise FileExistsError(
                    f"run directory {run.path} already exists; pass --resume to continue it "
                    "or choose another --run-dir")
            if man.get("job") != job:
                raise ValueError(f"{run.path} holds a {man.get('job')!r} run, not {job!r}")
            old = yaml.safe_load((run.path / "config.yaml").read_text()) or {}
            if old != cfg:
                changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
                raise ValueError(
                    f"{run.path} was started with a different config (changed: {', '.join(changed)}); "
                    "use a new run directory, or restore the original config to resume")
            run.update_manifest(status="running", resumed_at=time.time(),
                                resumes=man.get("resumes", 0) + 1)
            return run
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        atomic_write_json(run.manifest_path, {
            "job": job, "status": "running", "created_at": time.time(), "steps": {},
            "git_sha": _git_sha(), "python": platform.python_version(),
            "host": platform.node(), "resumes": 0,
        })
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        run = cls(path)
        if not run.manifest_path.exists():
            raise FileNotFoundError(f"{run.path} is not a rayalign run directory (no manifest.json)")
        return run

    # -- manifest ------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    def update_manifest(self, **fields: Any) -> None:
        man = self.manifest()
        man.update(fields)
        atomic_write_json(self.manifest_path, man)

    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "config.yaml").read_text()) or {}

    # -- steps (resume) ------------------------------------------------------------------
    def is_done(self, step: str) -> bool:
        return step in self.manifest().get("steps", {})

    def step_info(self, step: str) -> dict[str, Any] | None:
        return self.manifest().get("steps", {}).get(step)

    def mark_done(self, step: str, **info: Any) -> None:
        man = self.manifest()
        man.setdefault("steps", {})[step] = {"finished_at": time.time(), **info}
        atomic_write_json(self.manifest_path, man)

    def finish(self, status: str = "finished", **fields: Any) -> None:
        self.update_manifest(status=status, finished_at=time.time(), **fields)

    # -- files ---------------------------------------------------------------------------
    def sub(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def file(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # -- metrics -------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log_metrics(self, **row: Any) -> None:
        row.setdefault("time", time.time())
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path) if self.metrics_path.exists() else []
