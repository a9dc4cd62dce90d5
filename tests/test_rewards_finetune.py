"""The ``finetune`` RM backend: top layers of an encoder trained as a Bradley-Terry RM.

Fast tests use a tiny random BERT (MiniLM's tokenizer, 2 layers of width 32); the slow test
fine-tunes the real pretrained all-MiniLM-L6-v2 on real HH-RLHF pairs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from rayalign.config import ConfigError, validate_config
from rayalign.data.schema import PairwiseItem
from rayalign.rewards.base import preference_accuracy
from rayalign.rewards.factory import make_reward_backend
from rayalign.rewards.finetune import FinetuneRewardBackend, FinetuneRMConfig
from rayalign.rlthf.config import RLTHFConfig


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rayalign.models.registry import minilm_dir

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def toy_items(n: int, seed: int = 0) -> tuple[list[PairwiseItem], list[str]]:
    """Pairs whose true winner is the response that thanks the user (a learnable signal)."""
    rng = random.Random(seed)
    words = ["river", "table", "garden", "window", "yellow", "music", "number", "letter"]
    items, truth = [], []
    for i in range(n):
        filler = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
        good = f"thank you so much, {filler}"
        bad = f"go away, {filler}"
        a_good = rng.random() < 0.5
        items.append(PairwiseItem(id=f"toy-{i}", prompt=f"question {i}: tell me about {rng.choice(words)}",
                                  response_a=good if a_good else bad, response_b=bad if a_good else good))
        truth.append("A" if a_good else "B")
    return items, truth


def test_config_is_typed_and_rejects_typos_naming_the_field():
    cfg = validate_config(RLTHFConfig, {"reward_model": {"backend": "finetune",
                                                         "finetune": {"train_layers": 2},
                                                         "lora": {"learning_rate": 3e-4}}})
    assert isinstance(cfg.reward_model.finetune, FinetuneRMConfig)
    assert cfg.reward_model.finetune.train_layers == 2
    assert cfg.reward_model.lora.learning_rate == 3e-4  # a model, not a dict
    assert cfg.effective_cross_fit_folds == 0  # k extra fine-tunes per iteration are opt-in
    with pytest.raises(ConfigError, match="trian_layers"):
        validate_config(RLTHFConfig, {"reward_model": {"finetune": {"trian_layers": 2}}})
    with pytest.raises(ConfigError, match="lerning_rate"):
        validate_config(RLTHFConfig, {"reward_model": {"lora": {"lerning_rate": 0.1}}})


def test_tiny_encoder_learns_caches_saves_and_reloads(tiny_bert, tmp_path, ray_local):
    cfg = FinetuneRMConfig(base_model=str(tiny_bert), train_layers=1, max_length=32, num_epochs=6,
                           learning_rate=1e-3, head_learning_rate=1e-2, batch_size=16)
    backend = FinetuneRewardBackend(cfg, tmp_path / "cache")
    assert backend.cut == 1  # one frozen layer run once, one trained
    items, truth = toy_items(96)
    test_items, test_truth = toy_items(48, seed=1)
    backend.prepare(items + test_items)
    assert len(backend.store.states) == 2 * (96 + 48)
    model = backend.fit(items, truth, [1.0] * len(items), tmp_path / "rm")
    acc = preference_accuracy(backend.reward_diff(model, test_items), test_truth)
    assert acc >= 0.9, acc
    # the saved model scores exactly like the fitted one; the cache reloads from disk
    again = FinetuneRewardBackend(cfg, tmp_path / "cache")
    assert len(again.store.states) == len(backend.store.states)
    np.testing.assert_allclose(again.reward_diff(again.load(tmp_path / "rm"), test_items),
                               backend.reward_diff(model, test_items), rtol=1e-5, atol=1e-6)
    # labels drive the model: trained on the inverted labels it prefers the other response
    inverted = ["B" if t == "A" else "A" for t in truth]
    anti = backend.fit(items, inverted, [1.0] * len(items), None)
    assert preference_accuracy(backend.reward_diff(anti, test_items), test_truth) <= 0.1
    # zero weight = the row is ignored: only the inverted half counts
    half = len(items) // 2
    mixed = truth[:half] + inverted[half:]
    w = [0.0] * half + [1.0] * (len(items) - half)
    m2 = backend.fit(items, mixed, w, None)
    assert preference_accuracy(backend.reward_diff(m2, test_items), test_truth) <= 0.1


def test_frozen_layer_states_come_from_the_cross_run_cache_in_a_new_run_dir(tiny_bert, tmp_path,
                                                                           ray_local, monkeypatch):
    from rayalign import cache
    from rayalign.rewards import finetune

    cfg = FinetuneRMConfig(base_model=str(tiny_bert), train_layers=1, max_length=32)
    items, _ = toy_items(20)
    first = FinetuneRewardBackend(cfg, tmp_path / "run1")
    before = cache.stats()
    first.prepare(items)
    assert cache.stats_since(before) == {"hidden_states_misses": 40}
    assert len(first.shared) == 40

    def no_encoder(*a, **k):
        raise AssertionError("the frozen layers ran again")

    monkeypatch.setattr(finetune, "run_lower_layers", no_encoder)
    second = FinetuneRewardBackend(cfg, tmp_path / "run2")  # a new run dir: empty local store
    assert not second.store.states
    before = cache.stats()
    second.prepare(items)
    assert cache.stats_since(before) == {"hidden_states_hits": 40}
    for k, h in first.store.states.items():
        got = second.store.states[k]
        assert got.dtype == h.dtype and got.shape == h.shape and np.array_equal(got, h)
    # another cut of the same model is another key: nothing is reused wrongly
    other = FinetuneRewardBackend(cfg.model_copy(update={"train_layers": 2}), tmp_path / "run3")
    with pytest.raises(AssertionError, match="ran again"):
        other.prepare(items)


def test_factory_builds_finetune_backend_and_rejects_too_many_layers(tiny_bert, tmp_path):
    cfg = validate_config(RLTHFConfig, {"reward_model": {"backend": "finetune", "finetune": {
        "base_model": str(tiny_bert), "train_layers": 2}}})
    b = make_reward_backend(cfg.reward_model, tmp_path)
    assert isinstance(b, FinetuneRewardBackend) and b.cut == 0
    cfg.reward_model.finetune.train_layers = 3
    with pytest.raises(ValueError, match="has 2 layers"):
        make_reward_backend(cfg.reward_model, tmp_path)


@pytest.mark.slow
def test_real_minilm_learns_hh_preferences_and_follows_its_labels(tmp_path, ray_local):
    """Pretrained MiniLM on real HH pairs: above chance on held-out pairs, and the labels steer it."""
    from rayalign.data.bundled import bundled_path
    from rayalign.data.loaders import load_hh_rlhf
    from rayalign.data.splits import assign_ab_order

    pairs = list(load_hh_rlhf(str(bundled_path("hh_rlhf_harmless")), skip_bad_rows=True))[:700]
    items = assign_ab_order(pairs, seed=0)
    train, test = items[:500], items[500:]
    truth = [it.label for it in train]
    test_truth = [it.label for it in test]
    inverted = ["B" if t == "A" else "A" for t in truth]
    backend = FinetuneRewardBackend(FinetuneRMConfig(max_length=96), tmp_path / "cache")
    assert backend.cut == 5  # MiniLM-L6: five frozen layers, the top one trained
    t0 = time.perf_counter()
    backend.prepare(items)
    clean_model = backend.fit(train, truth, [1.0] * len(train), tmp_path / "clean")
    fit_s = backend.last_fit_seconds
    clean = preference_accuracy(backend.reward_diff(clean_model, test), test_truth)
    anti = preference_accuracy(backend.reward_diff(backend.fit(train, inverted, [1.0] * len(train), None),
                                                   test), test_truth)
    print(f"held-out acc: true labels {clean:.3f}, inverted labels {anti:.3f}; fit {fit_s:.1f}s, "
          f"total {time.perf_counter() - t0:.1f}s")
    # HH's raw labels are noisy (a MiniLM RM trained on all of them tops out near 62 %); with
    # 500 pairs this measured 58.0 % vs 42.0 % with the current defaults (fit 47 s, 2 cores;
    # 55 % vs 45 % with the first, under-trained defaults).
    assert clean >= 0.53
    assert clean > anti + 0.05
