"""Bradley-Terry reward model on frozen sentence embeddings (the CPU backend).

r(prompt, response) = θ · [e(response), e(prompt) ⊙ e(response)]

The encoder (MiniLM by default) runs once per distinct text through Ray Data and is
cached on disk, so every RLTHF iteration after the first trains in well under a second:
the loop's cost is dominated by judges and humans, as it should be. The head is a
logistic regression on feature differences (the Bradley-Terry likelihood) with sample
weights, fitted by L-BFGS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field

from rayalign.config import StrictModel
from rayalign.data.schema import PairwiseItem
from rayalign.models.batching import DEFAULT_MAX_BATCH_TOKENS
from rayalign.runs import atomic_write_text

log = logging.getLogger(__name__)

MAX_CHARS = 2000  # MiniLM reads 256 tokens; longer text only costs tokenizer time.


class EmbeddingHeadConfig(StrictModel):
    encoder: str = "minilm"
    #: Strong enough that the head cannot memorise label noise (1e-3 fits ~800 features to
    #: 1,400 noisy pairs and hides the mislabelled ones; 3e-2 measured best on HH).
    l2: float = Field(default=3e-2, ge=0.0)
    max_iter: int = Field(default=200, ge=1)
    num_actors: int = Field(default=1, ge=1, description="Ray Data encoder actors")
    #: CPUs reserved per encoder actor, and its torch thread count. None = the cluster's free
    #: CPUs split evenly over ``num_actors`` (one actor on a 2-core laptop gets both cores).
    num_cpus_per_actor: int | None = Field(default=None, ge=1)
    #: Most texts per forward pass.
    batch_size: int = Field(default=64, ge=1)
    #: Most padded tokens per forward pass (texts grouped by token length); None = plain
    #: ``SentenceTransformer.encode`` batches of ``batch_size``. 2048 measured fastest on 2 CPU
    #: cores (benchmarks/embedding_speed.py); on a GPU raise it (e.g. 32768).
    max_batch_tokens: int | None = Field(default=DEFAULT_MAX_BATCH_TOKENS, ge=16)
    #: Texts per Ray Data task handed to an encoder actor (it batches them by tokens inside).
    rows_per_task: int = Field(default=256, ge=1)
    #: "bf16": torch autocast to bfloat16 in the encoder. Opt-in: it pays only on CPUs with
    #: bf16 matmul units (AMX) or GPUs, and the vectors are close to fp32 but not identical,
    #: so results may move (see benchmarks/README.md, "Hot-path round").
    precision: Literal["fp32", "bf16"] = "fp32"
    cache_dir: str | None = Field(default=None, description="embedding cache; default: run dir")
    # (the cross-run cache, keyed by encoder + precision + text, is ``rayalign.cache``)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def prompt_text(prompt: str) -> str:
    """Character tail of a prompt (cheap pre-cut; the token-level cut is :meth:`keep_end`)."""
    # Dialogue prompts end with the turn being answered: keep the end, not the start.
    return prompt[-MAX_CHARS:]


def response_text(response: str) -> str:
    """What the encoder reads of a response (its first ``MAX_CHARS`` characters)."""
    return response[:MAX_CHARS]


def pair_features(prompt_emb: np.ndarray, response_emb: np.ndarray) -> np.ndarray:
    """The head's input for (prompt, response) embeddings: ``[e(r), e(p) * e(r)]``.

    The one definition of the features, used when fitting, when scoring pairs and when an
    RL reward function scores fresh completions (``rewards.sources``), so all three agree.
    """
    return np.concatenate([response_emb, prompt_emb * response_emb], axis=1)


def store_tag(spec: str, precision: str = "fp32") -> str:
    """Cache file tag: fp32 and bf16 vectors of one model never share a file."""
    return text_key(spec if precision == "fp32" else f"{spec}|{precision}")[:8]


class _EncodeBatch:
    """Ray Data actor: loads the encoder once (per actor, not per batch), embeds batches."""

    def __init__(self, spec: str, threads: int | None = None, precision: str = "fp32",
                 batch_size: int = 64, max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS):
        import torch

        from rayalign.models.encoders import SentenceEncoder

        # Ray sets OMP_NUM_THREADS to the actor's CPU reservation; torch follows it unless told.
        n = int(os.environ.get("RAYALIGN_ENCODER_THREADS", "0")) or threads or torch.get_num_threads()
        torch.set_num_threads(max(1, n))
        self.encoder = SentenceEncoder(spec, precision=precision)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.encoder.model  # load now: the first batch should not carry the load time
        import ray

        self.node = ray.get_runtime_context().get_node_id()  # where the work ran (logged)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode([str(t) for t in batch["text"]], batch_size=self.batch_size,
                                   max_batch_tokens=self.max_batch_tokens)
        return {"key": batch["key"], "emb": np.asarray(vecs, dtype=np.float32),
                "node": np.array([self.node] * len(vecs))}


class EmbeddingStore:
    """text-hash → vector, persisted as two files; only missing texts are ever encoded."""

    def __init__(self, directory: Path, spec: str, precision: str = "fp32"):
        self.dir = Path(directory)
        self.spec = spec
        tag = store_tag(spec, precision)
        self._keys_path = self.dir / f"embeddings-{tag}.keys.json"
        self._vecs_path = self.dir / f"embeddings-{tag}.npy"
        self.index: dict[str, int] = {}
        self.vecs = np.zeros((0, 0), dtype=np.float32)
        if self._keys_path.exists() and self._vecs_path.exists():
            keys = json.loads(self._keys_path.read_text())
            self.vecs = np.load(self._vecs_path)
            self.index = {k: i for i, k in enumerate(keys)}

    def missing(self, texts: Sequence[str]) -> dict[str, str]:
        out = {}
        for t in texts:
            k = text_key(t)
            if k not in self.index:
                out[k] = t
        return out

    def add(self, keys: Sequence[str], vecs: np.ndarray) -> None:
        if len(keys) == 0:
            return
        base = len(self.index)
        self.vecs = vecs if self.vecs.size == 0 else np.concatenate([self.vecs, vecs])
        for j, k in enumerate(keys):
            self.index[k] = base + j
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._vecs_path.with_suffix(".tmp.npy")
        np.save(tmp, self.vecs)
        os.replace(tmp, self._vecs_path)
        ordered = sorted(self.index, key=self.index.__getitem__)
        atomic_write_text(self._keys_path, json.dumps(ordered))

    def get(self, texts: Sequence[str]) -> np.ndarray:
        return self.vecs[[self.index[text_key(t)] for t in texts]]


def actor_cpus(num_actors: int, requested: int | None = None) -> int:
    """CPUs (= torch threads) per encoder actor: ``requested``, or the free CPUs split evenly."""
    if requested:
        return int(requested)
    from rayalign.ray_utils import cluster_cpus, cpu_share

    return cpu_share(num_actors, *cluster_cpus())


def embed_with_ray(texts: dict[str, str], spec: str, num_actors: int, batch_size: int,
                   cpus_per_actor: int | None = None, precision: str = "fp32",
                   sort_by_length: bool = True,
                   placement: dict[str, int] | None = None,
                   max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
                   rows_per_task: int = 256) -> tuple[list[str], np.ndarray]:
    """Encode ``{key: text}`` with a Ray Data actor pool; returns keys and vectors in order.

    WHY sorted: Ray Data cuts the rows into blocks in the order given and every batch pads to
    its longest text. In random length order the model processed ~3.5x the real tokens on the
    HH data; sorted by length, neighbours in a batch have about the same length (issue 17).
    Longest first: the last tasks are the short ones, so no actor waits alone on a long task
    at the end while the others idle.
    Each actor call gets ``rows_per_task`` neighbouring texts and groups them again by token
    length into forward passes of at most ``max_batch_tokens`` padded tokens (issue 16).
    The vectors do not depend on the order (each row is encoded alone, padding is masked).
    ``placement``, if given, is filled with {Ray node id: texts encoded there}.
    """
    import time

    import ray

    # Ray Data's bars are for terminals; inside the driver actor they flood the log.
    ray.data.DataContext.get_current().enable_progress_bars = False
    t0 = time.time()
    items = list(texts.items())
    if sort_by_length:
        items.sort(key=lambda kv: len(kv[1]), reverse=True)
    rows = [{"key": k, "text": t} for k, t in items]
    cpus = actor_cpus(num_actors, cpus_per_actor)
    log.info("encoder: %d Ray Data actor(s) x %d CPU/torch thread(s), batch <= %d texts / %s "
             "tokens, %s, %s order", num_actors, cpus, batch_size, max_batch_tokens, precision,
             "length-sorted" if sort_by_length else "given")
    ds = ray.data.from_items(rows).map_batches(
        _EncodeBatch,
        fn_constructor_kwargs={"spec": spec, "threads": cpus, "precision": precision,
                               "batch_size": batch_size, "max_batch_tokens": max_batch_tokens},
        batch_size=max(rows_per_task, batch_size) if max_batch_tokens else batch_size,
        num_cpus=cpus,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
    )
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    nodes: dict[str, int] = placement if placement is not None else {}
    step, next_log = max(256, len(rows) // 10), 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        keys.extend(str(k) for k in batch["key"])
        vecs.append(batch["emb"])
        for node in batch["node"]:
            nodes[str(node)] = nodes.get(str(node), 0) + 1
        if len(keys) >= next_log and len(keys) < len(rows):
            # Progress for the person waiting: the encoder is the one slow step on a CPU.
            rate = len(keys) / max(time.time() - t0, 1e-9)
            log.info("embedded %d/%d texts (%.0f/s, about %.0fs left)", len(keys), len(rows), rate,
                     (len(rows) - len(keys)) / max(rate, 1e-9))
            next_log = len(keys) + step
    if len(keys) != len(rows):
        raise RuntimeError(f"encoder returned {len(keys)} vectors for {len(rows)} texts")
    dt = time.time() - t0
    log.info("embedded %d texts in %.1fs (%.0f texts/s) on %d node(s)", len(rows), dt,
             len(rows) / max(dt, 1e-9), len(nodes))
    return keys, np.concatenate(vecs).astype(np.float32)


class EmbeddingHeadBackend:
    """``RewardBackend`` on cached frozen embeddings + a Bradley-Terry linear head."""

    name = "embedding_head"

    def __init__(self, cfg: EmbeddingHeadConfig, cache_dir: Path):
        self.cfg = cfg
        self.store = EmbeddingStore(Path(cfg.cache_dir or cache_dir), cfg.encoder, cfg.precision)
        from rayalign.cache import SharedEmbeddings, cache_root

        root = cache_root()
        #: The cross-run cache (None when off): a new run dir on the same data encodes nothing.
        self.shared = SharedEmbeddings(root, cfg.encoder, cfg.precision) if root else None
        self._prompt_cut: dict[str, str] = {}
        self._encoder: Any = None

    # -- features ------------------------------------------------------------------------
    def prompt_texts(self, prompts: Sequence[str]) -> list[str]:
        """What the encoder reads of each prompt: its last tokens (final turn kept).

        The encoder truncates on the right, which would drop the turn being answered; so
        prompts are cut from the left here, with the encoder's own tokenizer (loaded alone,
        no weights), and memoised: the loop asks for the same prompts every iteration.
        """
        todo = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cut]
        if todo:
            if self._encoder is None:
                from rayalign.models.encoders import SentenceEncoder

                self._encoder = SentenceEncoder(self.cfg.encoder)
            cut = self._encoder.keep_end([prompt_text(p) for p in todo])
            self._prompt_cut.update(zip(todo, cut))
        return [self._prompt_cut[p] for p in prompts]

    def prepare(self, items: Sequence[PairwiseItem]) -> None:
        texts = list(self.prompt_texts([it.prompt for it in items]))
        for it in items:
            texts += [response_text(it.response_a), response_text(it.response_b)]
        todo = self.store.missing(texts)
        if todo and self.shared is not None:
            from rayalign import cache

            got = self.shared.get_many(list(todo.values()))
            hit_keys = [k for k, t in todo.items() if t in got]
            if hit_keys:
                self.store.add(hit_keys, np.stack([got[todo[k]] for k in hit_keys]))
                todo = {k: t for k, t in todo.items() if t not in got}
            cache.count("embeddings", hits=len(hit_keys), misses=len(todo))
            log.info("embedding cache %s: %d hits, %d misses", self.shared.path, len(hit_keys), len(todo))
        if todo:
            log.info("embedding %d new texts with %s (%d Ray Data actors)", len(todo),
                     self.cfg.encoder, self.cfg.num_actors)
            keys, vecs = embed_with_ray(todo, self.cfg.encoder, self.cfg.num_actors,
                                        self.cfg.batch_size, self.cfg.num_cpus_per_actor,
                                        self.cfg.precision,
                                        max_batch_tokens=self.cfg.max_batch_tokens,
                                        rows_per_task=self.cfg.rows_per_task)
            self.store.add(keys, vecs)
            if self.shared is not None:
                self.shared.put_many([todo[k] for k in keys], vecs)

    def _features(self, items: Sequence[PairwiseItem]) -> tuple[np.ndarray, np.ndarray]:
        ep = self.store.get(self.prompt_texts([it.prompt for it in items]))
        ea = self.store.get([response_text(it.response_a) for it in items])
        eb = self.store.get([response_text(it.response_b) for it in items])
        return pair_features(ep, ea), pair_features(ep, eb)

    # -- model ---------------------------------------------------------------------------
    def fit(self, items: Sequence[PairwiseItem], labels: Sequence[str],
            weights: Sequence[float], out_dir: Path | None = None) -> np.ndarray:
        if len(items) == 0:
            raise ValueError("cannot train a reward model on an empty training set")
        import torch

        fa, fb = self._features(items)
        x = torch.from_numpy(fa - fb).double()
        y = torch.tensor([1.0 if lab == "A" else -1.0 for lab in labels], dtype=torch.float64)
        w = torch.tensor(list(weights), dtype=torch.float64)
        w = w / w.sum()
        theta = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([theta], max_iter=self.cfg.max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = (w * torch.nn.functional.softplus(-y * (x @ theta))).sum()
            loss = loss + self.cfg.l2 * (theta @ theta)
            loss.backward()
            return loss

        opt.step(closure)
        head = theta.detach().numpy().astype(np.float64)
        if out_dir is not None:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = out_dir / "head.tmp.npy"
            np.save(tmp, head)
            os.replace(tmp, out_dir / "head.npy")
            atomic_write_text(out_dir / "rm.json", json.dumps(
                {"backend": self.name, "encoder": self.cfg.encoder, "dim": int(head.size)}))
        return head

    def load(self, out_dir: Path) -> np.ndarray:
        return np.load(Path(out_dir) / "head.npy")

    def reward_diff(self, model: np.ndarray, items: Sequence[PairwiseItem]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros(0)
        fa, fb = self._features(items)
        return (fa - fb).astype(np.float64) @ model

    def rewards(self, model: np.ndarray, items: Sequence[PairwiseItem]) -> tuple[np.ndarray, np.ndarray]:
        fa, fb = self._features(items)
        return fa.astype(np.float64) @ model, fb.astype(np.float64) @ model
