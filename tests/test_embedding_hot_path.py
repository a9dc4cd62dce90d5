"""Issue 17 hot path: sorted batches give the same vectors, prompts keep their final turn,
bf16 is opt-in and close to fp32, CPU training workers get the free cores."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rayalign.data.bundled import load_bundled
from rayalign.data.schema import PairwiseItem
from rayalign.models.batching import token_budget_batches
from rayalign.models.encoders import SentenceEncoder
from rayalign.rewards.embedding_head import (
    EmbeddingHeadBackend,
    EmbeddingHeadConfig,
    embed_with_ray,
    store_tag,
    text_key,
)
from rayalign.ray_utils import cpu_share
from rayalign.training.cpus import worker_resources


@pytest.fixture(scope="module")
def enc() -> SentenceEncoder:
    return SentenceEncoder("minilm")


def _long_dialogue(final: str) -> str:
    turns = []
    for i in range(60):
        turns.append(f"\n\nHuman: Tell me about the history of harbour number {i} and its ships.")
        turns.append(f"\n\nAssistant: Harbour {i} was built long ago and has seen many ships come and go.")
    return "".join(turns) + f"\n\nHuman: {final}\n\nAssistant:"


def test_left_cut_keeps_the_final_human_turn(enc):
    final = "What is the safest way to dispose of old paint cans?"
    prompt = _long_dialogue(final)
    tok = enc.tokenizer
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) > 3 * enc.token_limit
    [cut] = enc.keep_end([prompt])
    assert cut.endswith(final + "\n\nAssistant:") and prompt.endswith(cut)
    n = len(tok(cut, add_special_tokens=False)["input_ids"])
    assert enc.token_limit - 8 <= n <= enc.token_limit  # fills the window, no more
    assert enc.keep_end(["short prompt"]) == ["short prompt"]
    # What the model reads of the cut text is the final turn; the raw prompt would lose it:
    ids_cut = enc.model.tokenizer(cut, truncation=True, max_length=enc.model.max_seq_length)["input_ids"]
    ids_raw = enc.model.tokenizer(prompt, truncation=True, max_length=enc.model.max_seq_length)["input_ids"]
    assert "paint" in enc.model.tokenizer.decode(ids_cut)
    assert "paint" not in enc.model.tokenizer.decode(ids_raw)


def test_backend_embeds_prompts_by_their_last_turn(enc, tmp_path):
    final = "How do I get rid of wasps under my roof?"
    other = "How do I make a sourdough starter at home?"
    items = [PairwiseItem(id=f"p{i}", prompt=_long_dialogue(q), response_a="Call a pest service.",
                          response_b="Try vinegar.") for i, q in enumerate([final, other])]
    backend = EmbeddingHeadBackend(EmbeddingHeadConfig(), tmp_path)
    cut = backend.prompt_texts([it.prompt for it in items])
    assert cut[0].rstrip().endswith(final + "\n\nAssistant:")
    # Same long history, different final question: the prompt vectors now differ clearly.
    v = enc.encode(cut)
    assert float(v[0] @ v[1]) < 0.99
    raw = enc.encode([it.prompt[-2000:] for it in items])  # the old right-truncated read
    assert float(raw[0] @ raw[1]) > 0.99  # near-identical windows: the question was lost


def test_sorted_and_unsorted_ray_batches_give_identical_vectors(ray_local):
    pairs = load_bundled("hh_rlhf_harmless")[:60]
    texts = [p.prompt[-2000:] for p in pairs] + [p.chosen for p in pairs]
    random.Random(1).shuffle(texts)
    todo = {text_key(t): t for t in texts}
    k1, v1 = embed_with_ray(todo, "minilm", num_actors=1, batch_size=16, sort_by_length=True)
    k2, v2 = embed_with_ray(todo, "minilm", num_actors=1, batch_size=16, sort_by_length=False)
    assert sorted(k1) == sorted(k2) == sorted(todo)
    a = dict(zip(k1, v1))
    b = dict(zip(k2, v2))
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in todo)
    assert diff < 1e-5, diff
    # and the sorted run really was sorted: longest first (short tasks fill the tail)
    lengths = [len(todo[k]) for k in k1]
    assert lengths == sorted(lengths, reverse=True)


def test_token_budget_batches_respect_both_limits():
    rng = random.Random(3)
    lengths = [rng.choice([3, 8, 40, 256, 300]) + rng.randrange(5) for _ in range(500)]
    batches = token_budget_batches(lengths, max_rows=32, max_tokens=1024)
    assert sorted(i for b in batches for i in b) == list(range(500))  # each text exactly once
    for b in batches:
        padded = max(lengths[i] for i in b) * len(b)
        assert len(b) <= 32
        assert padded <= 1024 or len(b) == 1  # a text longer than the budget rides alone
    # shortest first, and no batch is cut while the next text would still fit
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    for b, nxt in zip(batches, batches[1:]):
        assert len(b) == 32 or (len(b) + 1) * lengths[nxt[0]] > 1024


def test_token_budget_encode_matches_sentence_transformers_in_input_order(enc):
    pairs = load_bundled("hh_rlhf_harmless")[:40]
    texts = [p.prompt[-2000:] for p in pairs] + [p.chosen for p in pairs] + ["ok", "a" * 5]
    random.Random(2).shuffle(texts)
    plain = enc.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    lengths = enc.token_lengths(texts)
    assert max(lengths) == enc.model.max_seq_length and min(lengths) <= 4  # long and short mixed
    budget = enc.encode(texts, batch_size=8, max_batch_tokens=512)  # many small forward passes
    assert len(token_budget_batches(lengths, 8, 512)) > len(texts) // 8
    assert np.abs(budget - plain).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(budget, axis=1), 1.0, atol=1e-5)
    assert np.abs(enc.encode(texts, max_batch_tokens=None) - plain).max() < 1e-5  # old path kept


def test_bf16_is_opt_in_close_to_fp32_and_cached_apart(enc):
    texts = [p.chosen for p in load_bundled("hh_rlhf_harmless")[:16]]
    assert EmbeddingHeadConfig().precision == "fp32"
    v32 = enc.encode(texts)
    v16 = SentenceEncoder("minilm", precision="bf16").encode(texts)
    assert v16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v16, axis=1), 1.0, atol=1e-5)
    cos = (v32 * v16).sum(axis=1)
    assert cos.min() > 0.995 and np.abs(v32 - v16).max() > 0  # close, not the same numbers
    assert store_tag("minilm", "bf16") != store_tag("minilm")
    with pytest.raises(ValueError, match="precision"):
        SentenceEncoder("minilm", precision="fp8")  # type: ignore[arg-type]


def test_cpu_share_of_training_workers_and_actors_uses_the_free_cores():
    assert cpu_share(1, free_cpus=2, largest_node_cpus=2) == 2
    assert cpu_share(2, free_cpus=2, largest_node_cpus=2) == 1
    assert cpu_share(3, free_cpus=2, largest_node_cpus=2) == 1  # never 0
    assert cpu_share(1, free_cpus=16, largest_node_cpus=8) == 8  # fits one node
    assert cpu_share(2, free_cpus=16, largest_node_cpus=8) == 8
    assert cpu_share(1, free_cpus=8, largest_node_cpus=8, reserve_cpus=2) == 6


def test_worker_resources_from_the_running_cluster(ray_local, caplog):
    caplog.set_level("INFO", logger="rayalign.training.cpus")
    free = int(ray_local.available_resources().get("CPU", 0))
    assert worker_resources(1, use_gpu=False, configured=None) == {"CPU": float(max(1, free))}
    assert "CPU worker(s)" in caplog.text  # the run log says what it chose
    assert worker_resources(1, use_gpu=False, configured={"CPU": 1}) == {"CPU": 1}
    assert worker_resources(1, use_gpu=True, configured=None) is None  # Ray's GPU default


def test_rm_scorer_length_sorted_batches_keep_input_order(tmp_path):
    from rayalign.models.tiny import build_tiny_reward_model
    from rayalign.rewards.seq_cls_scorer import RewardScorer

    rm = RewardScorer(build_tiny_reward_model(tmp_path / "rm"), max_length=64)
    prompts = [("Human: hi " * k) + "Assistant:" for k in (9, 1, 5, 2, 7, 1, 3)]
    responses = [" sure" * k for k in (1, 6, 2, 4, 1, 3, 2)]
    one_by_one = np.array([rm.score([p], [r], batch_size=1)[0] for p, r in zip(prompts, responses)])
    batched = rm.score(prompts, responses, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    by_tokens = rm.score(prompts, responses, batch_size=64, max_batch_tokens=48)  # 2-3 rows a pass
    np.testing.assert_allclose(by_tokens, one_by_one, atol=1e-5)
    assert len(set(np.round(one_by_one, 5))) > 1  # distinct rewards: a shuffle would show
