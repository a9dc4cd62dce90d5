"""Sentence encoder over a locally resolved sentence-transformers model (MiniLM by default).

WHY lazy: the embedding-head reward model builds one encoder per Ray Data actor. The object
is constructed (and pickled to the actor) as a tiny spec; the weights load on first
``encode`` inside the actor, never in the driver, and are not pickled back.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class SentenceEncoder:
    """``encode(texts) -> float32 array (n, dim)``, L2-normalised rows (cosine = dot product)."""

    def __init__(self, spec: str = "minilm", device: str = "cpu", max_seq_length: int | None = None,
                 normalize: bool = True) -> None:
        self.spec = spec
        self.device = device
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # ship the spec, not the weights
        return state

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use, from a local dir only)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from rayalign.models.registry import ModelResolutionError, resolve_model

            resolved = resolve_model(self.spec)
            if resolved.kind not in ("sentence-encoder", "local"):
                raise ModelResolutionError(
                    f"model spec {self.spec!r} resolved to a {resolved.kind} at {resolved.path}, "
                    "not a sentence-transformers model")
            model = SentenceTransformer(resolved.path, device=self.device, local_files_only=True)
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            model.eval()
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(fn())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``; returns a (len(texts), dim) float32 array."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"encode() needs strings; items {bad[:5]} are not")
        emb = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32)
