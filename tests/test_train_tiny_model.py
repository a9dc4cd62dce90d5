"""The bundled tiny model builder: loads like a real checkpoint, cached, seeded."""

from __future__ import annotations

import time

from rayalign.models.tiny import build_tiny_causal_lm, build_tiny_reward_model


def test_tiny_lm_builds_loads_and_is_cached(tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    lm = build_tiny_causal_lm(tmp_path / "lm", vocab_size=300, hidden_size=32, layers=1)
    t0 = time.perf_counter()
    again = build_tiny_causal_lm(tmp_path / "lm", vocab_size=300, hidden_size=32, layers=1)
    assert again == lm and time.perf_counter() - t0 < 0.5  # cached: no rebuild
    tok = AutoTokenizer.from_pretrained(lm)
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    text = "Hello, what is the capital of France?"
    assert tok.decode(tok(text).input_ids) == text  # byte-level BPE round-trips
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "hi" in chat and chat.endswith("<|assistant|>\n")
    model = AutoModelForCausalLM.from_pretrained(lm)
    assert model.config.vocab_size == len(tok)
    ids = tok(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.input_ids.shape[1] + 3

    rm = build_tiny_reward_model(tmp_path / "rm", vocab_size=300, hidden_size=32, layers=1)
    clf = AutoModelForSequenceClassification.from_pretrained(rm)
    assert clf(**ids).logits.shape == (1, 1)

    # Same seed, same weights; a different seed gives different weights.
    other = build_tiny_causal_lm(tmp_path / "lm2", vocab_size=300, hidden_size=32, layers=1,
                                 seed=1)
    w0 = model.model.embed_tokens.weight
    w1 = AutoModelForCausalLM.from_pretrained(other).model.embed_tokens.weight
    assert w0.shape == w1.shape and not (w0 == w1).all()
