"""The MiniLM sentence encoder: real, deterministic, normalised, lazily loaded, picklable."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rayalign.models.encoders import SentenceEncoder
from rayalign.models.registry import ModelResolutionError


@pytest.fixture(scope="module")
def enc() -> SentenceEncoder:
    return SentenceEncoder("minilm")


def test_embeddings_are_real_normalised_and_deterministic(enc):
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    v = enc.encode(texts, batch_size=2)
    assert v.dtype == np.float32 and v.shape == (3, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)
    assert sims[0, 1] < 0.9999 and sims[0, 2] < 0.9999
    assert sims[0, 1] > sims[0, 2] + 0.3  # paraphrases are much closer than unrelated text
    np.testing.assert_array_equal(enc.encode(texts, batch_size=2), v)  # same vectors again
    # batching does not change the vectors beyond float noise
    np.testing.assert_allclose(enc.encode(texts[:1], batch_size=1)[0], v[0], atol=1e-5)


def test_pickles_without_weights_and_reloads_identically(enc):
    enc.encode(["warm up"])
    blob = pickle.dumps(enc)
    assert len(blob) < 10_000  # the spec travels to Ray actors, not the weights
    clone = pickle.loads(blob)
    assert clone._model is None
    np.testing.assert_allclose(clone.encode(["hello there"]), enc.encode(["hello there"]), atol=1e-6)


def test_empty_input_and_wrong_kind(enc, tmp_path):
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        enc.encode(["ok", None])
    import json

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelResolutionError, match="not a sentence-transformers model"):
        SentenceEncoder(str(tmp_path)).encode(["x"])
