"""The frozen lower layers of the ``finetune`` RM backend, run once per text pair, and their store.

WHY apart from ``finetune``: this is the expensive, cacheable half (a Ray Data actor pool over
every (prompt, response) once; float16 states on disk per run and in the cross-run cache),
while ``finetune`` trains the cheap top layers on these states many times per run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_CHARS = 4000  # longer text only costs tokenizer time: max_length tokens are kept anyway


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.truncation_side = "left"  # keep the end of the prompt (the turn being answered)
    return tok


def pair_key(spec: str, cut: int, max_length: int, prompt: str, response: str) -> str:
    h = hashlib.sha256()
    for part in (spec, str(cut), str(max_length), prompt[-MAX_CHARS:], "\x00", response[:MAX_CHARS]):
        h.update(part.encode("utf-8"))
    return h.hexdigest()[:32]


class _LowerLayers:
    """Ray Data actor: embeddings + the frozen lower ``cut`` layers of the encoder."""

    def __init__(self, path: str, cut: int, max_length: int, threads: int | None):
        import torch
        from transformers import AutoModel

        if threads:
            torch.set_num_threads(threads)
        self.tok = _tokenizer(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.cut = cut
        self.max_length = max_length

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        enc = self.tok([str(p) for p in batch["prompt"]], [str(r) for r in batch["response"]],
                       truncation="longest_first", max_length=self.max_length,
                       padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=True)
        hidden = out.hidden_states[self.cut].to(torch.float16).numpy()
        return {"key": batch["key"], "hidden": hidden,
                "length": enc["attention_mask"].sum(dim=1).numpy().astype(np.int32)}


class HiddenStore:
    """text-pair hash → cached lower-layer states (float16, unpadded), persisted in one file."""

    def __init__(self, directory: Path, tag: str):
        self.path = Path(directory) / f"finetune-cache-{tag}.npz"
        self.states: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as z:
                keys = json.loads(bytes(z["keys"]).decode())
                flat, offsets = z["flat"], z["offsets"]
                for i, k in enumerate(keys):
                    self.states[k] = flat[offsets[i]:offsets[i + 1]]

    def add_states(self, states: dict[str, np.ndarray]) -> None:
        """Unpadded states (computed, or from the cross-run cache), saved at once."""
        for k, h in states.items():
            self.states[k] = np.ascontiguousarray(h)
        self.save()

    def save(self) -> None:
        keys = list(self.states)
        if not keys:
            return
        offsets = np.cumsum([0] + [len(self.states[k]) for k in keys])
        flat = np.concatenate([self.states[k] for k in keys])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.frombuffer(json.dumps(keys).encode(), dtype=np.uint8),
                 flat=flat, offsets=offsets)
        os.replace(tmp, self.path)


def run_lower_layers(rows: list[dict[str, str]], path: str, cut: int, max_length: int,
                     num_actors: int, batch_size: int, threads: int | None
                     ) -> dict[str, np.ndarray]:
    """Lower-layer states of ``rows`` ({key, prompt, response}) via a Ray Data actor pool,
    each cut to its row's real length: ``{key: (tokens, hidden) float16}``."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    t0 = time.time()
    ds = ray.data.from_items(rows).map_batches(
        _LowerLayers, fn_constructor_kwargs={"path": path, "cut": cut, "max_length": max_length,
                                              "threads": threads},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=num_actors))
    states: dict[str, np.ndarray] = {}
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k, h, n in zip(b["key"], b["hidden"], b["length"]):
            states[str(k)] = h[: int(n)]
    if len(states) != len(rows):
        raise RuntimeError(f"lower layers returned {len(states)} states for {len(rows)} texts")
    log.info("cached lower-layer states of %d texts in %.1fs", len(rows), time.time() - t0)
    return states
