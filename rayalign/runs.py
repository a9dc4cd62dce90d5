"""Every run is a directory: resolved config, manifest, metrics, artefacts, finished steps.

A killed run is reopened from its directory. Steps record themselves as done only after
their outputs are written (atomically), so a rerun skips exactly what was already paid for.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import yaml
from filelock import FileLock, Timeout
from pydantic import BaseModel

from rayalign.config import flatten, is_operational, operational_fields
from rayalign.errors import UserError

log = logging.getLogger(__name__)

#: Config keys whose values are secrets, by exact name (case-insensitive). By name, not by
#: substring: ``max_tokens`` or ``api_key_env`` (the NAME of a variable) are not secrets, and
#: redacting them hid real changes from the resume check.
SECRET_FIELDS = frozenset({
    "api_key", "apikey", "api_token", "access_token", "auth_token", "bearer_token", "token",
    "hf_token", "secret", "client_secret", "secret_key", "password", "passwd",
    "authorization", "private_key",
})


def _redact(obj: Any) -> Any:
    """Never write secrets to a run directory, whatever a config holds."""
    if isinstance(obj, dict):
        return {k: ("***" if str(k).lower() in SECRET_FIELDS and v else _redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


class RunDirBusy(UserError):
    """Another live process holds the run directory's lock."""


#: Locks this process holds, by run directory: reopening a run in the same process (a resume
#: after an error, a test) re-enters instead of waiting for itself.
_HELD: dict[str, FileLock] = {}


def _lock_run_dir(path: Path) -> None:
    """Hold ``<run>/.lock`` until this process ends (the OS drops it even on ``kill -9``).

    Two runs on one directory would both pay for everything; the second one stops here and
    names the first (pid, host, command, start time) from ``<run>/.lock.owner``.
    """
    key = str(path.resolve())
    if key in _HELD:
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / ".lock"), timeout=0)
    owner_file = path / ".lock.owner"
    try:
        lock.acquire()
    except Timeout:
        try:
            who = json.loads(owner_file.read_text())
            holder = (f"pid {who.get('pid')} on {who.get('host')} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(who.get('started', 0)))}"
                      f": {who.get('command')}")
        except (OSError, ValueError):
            holder = "another process"
        raise RunDirBusy(f"run directory {path} is in use by {holder}; wait for it to finish "
                         "or stop it, or choose another --run-dir") from None
    _HELD[key] = lock
    atomic_write_json(owner_file, {"pid": os.getpid(), "host": socket.gethostname(),
                                   "command": " ".join(sys.argv), "started": time.time()})


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


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


def read_jsonl(path: Path, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (``missing_ok``: no file = no rows).

    A last line without its newline that does not parse is what a process killed in the
    middle of an append leaves: it is skipped with a warning (that row is redone on the
    rerun). Any other bad line is an error naming the file and line, because no writer of
    rayalign's leaves one there (``append_jsonl`` cuts a torn tail before it appends).
    """
    if missing_ok and not Path(path).is_file():
        return []
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: torn by a kill mid-append
                log.warning("%s: ignoring a torn last line (a write was killed); it is redone", path)
                continue
            raise UserError(f"{path}:{number}: not valid JSON ({e.msg}, column {e.colno}); "
                            "fix or delete that line, then rerun") from None
    return rows


def append_jsonl(path: Path, rows: Iterable[dict[str, Any] | BaseModel], mode: int = 0o600) -> int:
    """Append whole rows in one write + fsync; returns the number of rows.

    WHY: a kill can leave at most one torn last line, and that line is cut before the next
    append, so it can never glue itself onto a good row and corrupt it. New files are
    owner-only (labels and judge answers may be confidential).
    """
    text = "".join(json.dumps(r.model_dump(mode="json") if isinstance(r, BaseModel) else r,
                              ensure_ascii=False, default=str) + "\n" for r in rows)
    if not text:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, mode)
    with open(fd, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(end - 1)
            if f.read(1) != b"\n":  # a torn tail from a killed append: cut it
                f.seek(0)
                keep = f.read().rfind(b"\n") + 1
                log.warning("%s: cutting a torn last line (%d bytes) before appending", path, end - keep)
                f.truncate(keep)
                f.seek(keep)
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return text.count("\n")


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
        from rayalign import cache

        #: Cross-run cache counts when this run was opened: ``finish`` records the difference.
        self._cache_counts = cache.stats()

    # -- creation / reopening ------------------------------------------------------------
    @classmethod
    def create_or_open(cls, path: str | os.PathLike, job: str, config: BaseModel | dict,
                       resume: bool = True) -> "RunDir":
        """Open an existing run of the same job (resume) or create a new one.

        The directory is locked for this process first (``RunDirBusy`` names the holder).
        On resume, a changed *operational* field (declared with ``rayalign.config.operational``:
        concurrency, timeouts, endpoints...) is accepted and logged; a changed field that
        can change results is refused in one line naming the field and both values, since
        the steps already done were paid for under the old value. A run with no finished
        step (e.g. one that stopped on a wrong input path) paid for nothing under its old
        config, so it takes the new config whatever changed.
        """
        run = cls(path)
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        cfg = _redact(cfg)
        ops = operational_fields(type(config)) if isinstance(config, BaseModel) else set()
        if run.manifest_path.exists():
            man = run.manifest()
            if not resume:
                raise FileExistsError(
                    f"run directory {run.path} already exists; pass --resume to continue it "
                    "or choose another --run-dir")
            if man.get("job") != job:
                raise ValueError(f"{run.path} holds a {man.get('job')!r} run, not {job!r}")
            _lock_run_dir(run.path)
            old = yaml.safe_load((run.path / "config.yaml").read_text()) or {}
            changes = run._check_resume(old, cfg, ops, bool(man.get("steps")))
            if changes:
                atomic_write_text(run.path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
            run.update_manifest(status="running", resumed_at=time.time(),
                                resumes=man.get("resumes", 0) + 1,
                                **({"config_changes": man.get("config_changes", []) + [
                                    {"at": time.time(), "changed": changes}]} if changes else {}))
            return run
        _lock_run_dir(run.path)
        atomic_write_text(run.path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        atomic_write_json(run.manifest_path, {
            "job": job, "status": "running", "created_at": time.time(), "steps": {},
            "git_sha": _git_sha(), "python": platform.python_version(),
            "host": platform.node(), "resumes": 0,
        })
        return run

    def _check_resume(self, old: dict, new: dict, ops: set[str], paid: bool) -> dict[str, list]:
        """The changed fields (path -> [old, new]); raises on a result-changing one."""
        a, b = flatten(old), flatten(new)
        changed = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        blocking = [k for k in changed if not is_operational(k, ops)]
        if blocking and paid:
            k = blocking[0]
            more = f" (and {len(blocking) - 1} more: {', '.join(blocking[1:4])})" if len(blocking) > 1 else ""
            raise ValueError(
                f"{self.path} was started with a different config: {k}={_describe(changed[k][0])}, now "
                f"{k}={_describe(changed[k][1])}{more}; that changes results, so resume with the "
                f"original value or use a new --run-dir")
        for k, (was, now) in changed.items():
            log.info("resuming %s with %s changed: %s -> %s%s", self.path, k, _describe(was),
                     _describe(now), "" if is_operational(k, ops) else " (no step was finished)")
        return changed

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
        from rayalign import cache

        used = cache.stats_since(self._cache_counts)
        if used:  # hits/misses of the cross-run cache by this run (this process's lookups)
            fields.setdefault("cache", used)
            log.info("cross-run cache (%s): %s", cache.cache_root() or "off",
                     ", ".join(f"{k} {v}" for k, v in used.items()))
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
        append_jsonl(self.metrics_path, [row])

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path, missing_ok=True)
