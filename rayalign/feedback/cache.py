"""A sqlite cache of judgments: rerunning or resuming a labelling job never pays twice.

Key = sha256(judge spec + template identity + input content). The judge spec names the
model and everything that changes its answer (template hash, both-order flag, sampling
params), never an endpoint or a key, so moving to another server keeps the cache valid.

Concurrency: many Ray actors (possibly on several nodes sharing a filesystem that supports
locks) write the same file. Each process opens its own connection (a ``JudgmentCache`` is
never pickled across processes: it reopens lazily after unpickling); WAL mode lets readers
run beside a writer; ``busy_timeout`` makes writers wait for each other instead of failing;
``INSERT OR REPLACE`` makes concurrent writes of the same key harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from rayalign.data.schema import Judgment

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    judge TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
)
"""
#: One row per successful (pair, order) request: a pair whose other order failed costs
#: only the failed request on rerun. Written the moment the request's answer parsed.
_REQUEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(judge_spec: str, *parts: str) -> str:
    """sha256 over the judge spec and the input's content (NUL-separated, unambiguous)."""
    h = hashlib.sha256()
    for p in (judge_spec, *parts):
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class JudgmentCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def _db(self) -> sqlite3.Connection:
        # One connection per process: a forked or unpickled copy opens its own.
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only, like every other file of a run directory (judge answers may be
            # confidential); sqlite gives its -wal/-shm files the database's permissions.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute(_SCHEMA)
            conn.execute(_REQUEST_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Judgment]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Judgment] = {}
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), 500):  # stay under sqlite's variable limit
                chunk = keys[i:i + 500]
                q = f"SELECT key, payload FROM judgments WHERE key IN ({','.join('?' * len(chunk))})"
                for k, payload in db.execute(q, chunk):
                    out[k] = Judgment.model_validate_json(payload)
        return out

    def get_requests(self, keys: Iterable[str]) -> dict[str, str]:
        """Stored payloads of (pair, order) requests (see ``put_request``)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, payload FROM requests WHERE key IN ({','.join('?' * len(chunk))})"
                out.update(db.execute(q, chunk))
        return out

    def put_request(self, key: str, payload: str) -> None:
        """Commit one request's answer now (autocommit): a kill loses only what is in flight."""
        with self._lock:
            self._db().execute("INSERT OR REPLACE INTO requests VALUES (?,?,?)",
                               (key, payload, time.time()))

    def get(self, key: str) -> Judgment | None:
        return self.get_many([key]).get(key)

    def put_many(self, rows: Iterable[tuple[str, Judgment]]) -> int:
        data = [(k, j.item_id, j.judge, j.model_dump_json(), time.time()) for k, j in rows]
        if not data:
            return 0
        with self._lock:
            db = self._db()
            for attempt in range(5):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany("INSERT OR REPLACE INTO judgments VALUES (?,?,?,?,?)", data)
                    db.execute("COMMIT")
                    break
                except sqlite3.OperationalError:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.OperationalError:
                        pass
                    if attempt == 4:
                        raise
                    time.sleep(0.2 * (attempt + 1))
        return len(data)

    def __len__(self) -> int:
        with self._lock:
            return self._db().execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def stats(self) -> dict[str, int]:
        with self._lock:
            rows = self._db().execute("SELECT judge, COUNT(*) FROM judgments GROUP BY judge").fetchall()
        return {j: n for j, n in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def judgment_to_json(j: Judgment) -> str:
    return json.dumps(j.model_dump(), ensure_ascii=False)


class LayeredJudgmentCache:
    """The run's own cache in front of the cross-run one (``rayalign.cache``).

    Reads try the run's file, then the shared file (a shared hit is copied into the run's
    file, so the run directory stays complete on its own); writes go to both. Same methods
    as ``JudgmentCache``, and picklable the same way (paths only).
    """

    def __init__(self, path: str | os.PathLike, shared: str | os.PathLike):
        self.path = Path(path)
        self.own = JudgmentCache(path)
        self.shared = JudgmentCache(shared)

    def __getstate__(self) -> dict:
        return {"path": str(self.path), "shared": str(self.shared.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["shared"])

    def get_many(self, keys: Iterable[str]) -> dict[str, Judgment]:
        keys = list(dict.fromkeys(keys))
        out = self.own.get_many(keys)
        rest = [k for k in keys if k not in out]
        if rest:
            got = self.shared.get_many(rest)
            if got:
                self.own.put_many(got.items())
                out.update(got)
        return out

    def get_requests(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))
        out = self.own.get_requests(keys)
        rest = [k for k in keys if k not in out]
        if rest:
            got = self.shared.get_requests(rest)
            for k, payload in got.items():
                self.own.put_request(k, payload)
            out.update(got)
        return out

    def put_request(self, key: str, payload: str) -> None:
        self.own.put_request(key, payload)
        self.shared.put_request(key, payload)

    def get(self, key: str) -> Judgment | None:
        return self.get_many([key]).get(key)

    def put_many(self, rows: Iterable[tuple[str, Judgment]]) -> int:
        rows = list(rows)
        self.shared.put_many(rows)
        return self.own.put_many(rows)

    def __len__(self) -> int:
        return len(self.own)

    def stats(self) -> dict[str, int]:
        return self.own.stats()

    def close(self) -> None:
        self.own.close()
        self.shared.close()


def open_judgment_cache(path: str | os.PathLike | None,
                        shared: str | os.PathLike | None) -> JudgmentCache | LayeredJudgmentCache | None:
    """The run's cache, layered over the shared one when that is on (either may be None)."""
    if path is None and shared is None:
        return None
    if path is None or shared is None or Path(path).resolve() == Path(shared).resolve():
        return JudgmentCache(path if path is not None else shared)  # type: ignore[arg-type]
    return LayeredJudgmentCache(path, shared)
