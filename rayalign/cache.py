"""The content-addressed cache shared by every run on a machine (``~/.cache/rayalign/``).

WHY: each run directory keeps its own embeddings and judgments (so a run resumes without
any shared state), but a second run on the same data — a new ``--run-dir``, another seed,
another selection strategy — would otherwise re-encode every text and re-ask the judge for
every pair. Both are pure functions of content, so they are cached by content:

* embeddings: key = sha256(encoder spec + precision, text) -> float32 vector;
* hidden states of the ``finetune`` RM backend's frozen layers: key = that backend's
  ``pair_key`` (model path, cut layer, max length, prompt, response) -> float16 array;
* judgments: key = sha256(judge spec, input, order) where the judge spec is
  ``JudgeConfig.cache_spec()`` (kind, model, template text hash, parser, sampling params;
  never an endpoint, an API key or its variable name: those are operational fields).

Where: ``CacheConfig.dir``, else ``$RAYALIGN_CACHE_DIR``, else ``~/.cache/rayalign``; off with
``CacheConfig.enabled: false``, ``--no-cache`` or ``RAYALIGN_NO_CACHE=1``.

Storage: sqlite in WAL mode, one connection per process, ``busy_timeout`` so concurrent
writers wait instead of failing, ``INSERT OR IGNORE`` so two runs writing the same key
are harmless (the value is a function of the key). ``diskcache`` would fit but is not a
dependency of the project; the judgment cache already uses this sqlite recipe. Files are
created owner-only (judge answers may be confidential).

Hits and misses are counted per process (``stats``); ``RunDir.finish`` writes the counts of
its run into the manifest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from rayalign.config import StrictModel, operational

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ENV_DIR = "RAYALIGN_CACHE_DIR"
ENV_OFF = "RAYALIGN_NO_CACHE"
DEFAULT_DIR = "~/.cache/rayalign"


class CacheConfig(StrictModel):
    """The cross-run cache. Operational: it changes what is paid, never what is computed."""

    enabled: bool = operational(True)
    #: default: ``$RAYALIGN_CACHE_DIR``, else ``~/.cache/rayalign``
    dir: str | None = operational(None)


_ACTIVE: CacheConfig | None = None
_COUNTS: Counter = Counter()
_COUNT_LOCK = threading.Lock()


def activate(cfg: CacheConfig | None) -> None:
    """Make ``cfg`` this process's cache setting (a job calls it once with its config)."""
    global _ACTIVE
    _ACTIVE = cfg


def from_env(cfg: CacheConfig | None = None) -> CacheConfig:
    """``cfg`` with the environment applied (the CLI calls this on the user's machine, so the
    setting reaches a driver actor on a cluster whose environment is not the user's)."""
    cfg = cfg or CacheConfig()
    if os.environ.get(ENV_OFF, "").strip().lower() in ("1", "true", "yes"):
        return cfg.model_copy(update={"enabled": False})
    if cfg.dir is None and os.environ.get(ENV_DIR):
        return cfg.model_copy(update={"dir": os.environ[ENV_DIR]})
    return cfg


def cache_root(cfg: CacheConfig | None = None) -> Path | None:
    """The shared cache directory, or None when the cache is off."""
    cfg = from_env(cfg if cfg is not None else _ACTIVE)
    if not cfg.enabled:
        return None
    raw = cfg.dir or DEFAULT_DIR
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def judgment_cache_path(cfg: CacheConfig | None = None) -> Path | None:
    root = cache_root(cfg)
    return None if root is None else root / "judgments.sqlite"


# -- hit/miss accounting -------------------------------------------------------------------
def count(kind: str, hits: int, misses: int) -> None:
    """Record ``hits``/``misses`` of one lookup (kind: ``embeddings``, ``judgments`` or ``hidden_states``)."""
    with _COUNT_LOCK:
        _COUNTS[f"{kind}_hits"] += int(hits)
        _COUNTS[f"{kind}_misses"] += int(misses)


def stats() -> dict[str, int]:
    """Counts so far in this process (monotonic; subtract a snapshot for one run's share)."""
    with _COUNT_LOCK:
        return dict(_COUNTS)


def stats_since(snapshot: dict[str, int]) -> dict[str, int]:
    now = stats()
    return {k: now[k] - snapshot.get(k, 0) for k in sorted(now) if now[k] - snapshot.get(k, 0)}


# -- sqlite storage --------------------------------------------------------------------------
def open_sqlite(path: Path) -> sqlite3.Connection:
    """A WAL connection safe beside other processes writing the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # owner-only before sqlite opens it
    conn = sqlite3.connect(str(path), timeout=60.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def embedding_key(spec: str, precision: str, text: str) -> str:
    """sha256 over the encoder identity and the text (NUL-separated, unambiguous)."""
    h = hashlib.sha256()
    for part in (spec, precision, text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class _SharedBlobs:
    """key -> bytes in one sqlite table, shared by all runs and processes (the plumbing of
    the caches below: one connection per process, chunked lookups, idempotent inserts)."""

    FILE = ""
    TABLE = ""
    #: (metadata column and its sqlite type, payload column): fixed per table, since caches
    #: written by earlier versions must stay readable
    META, META_TYPE, DATA = "meta", "TEXT", "data"

    def __init__(self, root: Path):
        self.path = Path(root) / self.FILE
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            conn = open_sqlite(self.path)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (key TEXT PRIMARY KEY, "
                         f"{self.META} {self.META_TYPE} NOT NULL, {self.DATA} BLOB NOT NULL)")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _get(self, keys: Sequence[str]) -> "list[tuple[str, str, bytes]]":
        rows: list[tuple[str, str, bytes]] = []
        keys = list(dict.fromkeys(keys))
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), 500):  # sqlite's variable limit
                chunk = keys[i:i + 500]
                q = (f"SELECT key, {self.META}, {self.DATA} FROM {self.TABLE} "
                     f"WHERE key IN ({','.join('?' * len(chunk))})")
                rows.extend(db.execute(q, chunk))
        return rows

    def _put(self, rows: "list[tuple[str, object, bytes]]") -> None:
        if not rows:
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(f"INSERT OR IGNORE INTO {self.TABLE} VALUES (?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db().execute(f"SELECT COUNT(*) FROM {self.TABLE}").fetchone()[0]


class SharedEmbeddings(_SharedBlobs):
    """text -> vector for one encoder (spec + precision), shared by all runs and processes."""

    FILE = "embeddings.sqlite"
    TABLE = "embeddings"
    META, META_TYPE, DATA = "dim", "INTEGER", "vec"

    def __init__(self, root: Path, spec: str, precision: str = "fp32"):
        super().__init__(root)
        self.spec, self.precision = spec, precision

    def __getstate__(self) -> dict:
        return {"root": str(self.path.parent), "spec": self.spec, "precision": self.precision}

    def __setstate__(self, s: dict) -> None:
        self.__init__(Path(s["root"]), s["spec"], s["precision"])

    def key(self, text: str) -> str:
        return embedding_key(self.spec, self.precision, text)

    def get_many(self, texts: Sequence[str]) -> "dict[str, np.ndarray]":
        """``{text: vector}`` for the texts present (others absent)."""
        import numpy as np

        by_key = {self.key(t): t for t in dict.fromkeys(texts)}
        return {by_key[k]: np.frombuffer(blob, dtype=np.float32, count=int(dim)).copy()
                for k, dim, blob in self._get(list(by_key))}

    def put_many(self, texts: Iterable[str], vecs: "np.ndarray") -> None:
        import numpy as np

        self._put([(self.key(t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                   for t, v in zip(texts, vecs)])


class SharedArrays(_SharedBlobs):
    """content key -> n-d array (dtype and shape kept), shared by all runs and processes.

    WHY: the ``finetune`` RM backend runs the frozen lower layers of its encoder once per
    (model, cut, max length, prompt, response); its keys already hash all of that
    (``rewards.finetune_states.pair_key``), so a second run on the same data skips that pass.
    """

    FILE = "arrays.sqlite"
    TABLE = "arrays"

    def __getstate__(self) -> dict:
        return {"root": str(self.path.parent)}

    def __setstate__(self, s: dict) -> None:
        self.__init__(Path(s["root"]))

    def get_many(self, keys: Sequence[str]) -> "dict[str, np.ndarray]":
        """``{key: array}`` for the keys present (others absent)."""
        import numpy as np

        out = {}
        for k, meta, blob in self._get(keys):
            dtype, _, shape = meta.partition("|")
            dims = tuple(int(d) for d in shape.split(",") if d)
            out[k] = np.frombuffer(blob, dtype=np.dtype(dtype)).reshape(dims).copy()
        return out

    def put_many(self, keys: Iterable[str], arrays: "Iterable[np.ndarray]") -> None:
        import numpy as np

        rows = []
        for k, a in zip(keys, arrays):
            a = np.ascontiguousarray(a)
            rows.append((str(k), f"{a.dtype.str}|{','.join(str(d) for d in a.shape)}", a.tobytes()))
        self._put(rows)
