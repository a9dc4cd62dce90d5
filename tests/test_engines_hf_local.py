"""HFLocalEngine on a tiny Llama built in the test: batching, left padding, determinism."""

from __future__ import annotations

import pytest

from rayalign.engines.base import Engine, GenerationRequest, SamplingParams
from rayalign.engines.config import EngineConfig
from rayalign.engines.factory import build_engine


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from rayalign.models.tiny import build_tiny_causal_lm

    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm"))


def _req(i, text, **p):
    return GenerationRequest(id=str(i), messages=[{"role": "user", "content": text}],
                             params=SamplingParams(max_tokens=8, **p))


def test_batched_greedy_is_deterministic_and_padding_safe(tiny_dir):
    eng = build_engine(EngineConfig(kind="hf_local", model=tiny_dir, batch_size=4))
    assert isinstance(eng, Engine) and eng.spec == f"hf_local:{tiny_dir}"
    prompts = ["hello", "What is the capital of France? Tell me in detail please.", "bread", "one two"]
    batched = eng.generate([_req(i, t) for i, t in enumerate(prompts)])
    again = eng.generate([_req(i, t) for i, t in enumerate(prompts)])
    single = [eng.generate([_req(i, t)])[0] for i, t in enumerate(prompts)]
    assert [r.id for r in batched] == ["0", "1", "2", "3"]
    assert all(r.error is None and len(r.texts) == 1 for r in batched)
    assert [r.texts for r in batched] == [r.texts for r in again]
    # left padding: a prompt's output does not depend on the other prompts in its batch
    assert [r.texts for r in batched] == [r.texts for r in single]
    assert all(fr in ("stop", "length") for r in batched for fr in r.finish_reasons)


def test_sampling_n_and_seed(tiny_dir):
    eng = build_engine(EngineConfig(kind="hf_local", model=tiny_dir, batch_size=2))
    a = eng.generate([_req(0, "hello", n=3, temperature=1.0, seed=7), _req(1, "dog", n=3, temperature=1.0, seed=7)])
    b = eng.generate([_req(0, "hello", n=3, temperature=1.0, seed=7), _req(1, "dog", n=3, temperature=1.0, seed=7)])
    assert all(len(r.texts) == 3 for r in a)
    assert [r.texts for r in a] == [r.texts for r in b]


def test_tokenizer_uses_chat_template(tiny_dir):
    from rayalign.engines.hf_local import render_chat

    eng = build_engine(EngineConfig(kind="hf_local", model=tiny_dir))
    text = render_chat(eng.tokenizer, [{"role": "user", "content": "hi"}])
    assert text.startswith("<|user|>") and text.endswith("<|assistant|>\n")


def test_outputs_are_not_empty(tiny_dir):
    eng = build_engine(EngineConfig(kind="hf_local", model=tiny_dir))
    (r,) = eng.generate([_req(0, "hello")])
    assert r.texts[0] and r.finish_reasons == ["length"]  # random weights: never an EOS in 8 tokens


def test_hf_judge_through_build_judge_records_parse_errors(tiny_dir):
    """A random-weight judge answers gibberish: every pair is still a row, with the raw text."""
    from rayalign.data.schema import PairwiseItem
    from rayalign.feedback.config import JudgeConfig, build_judge

    judge = build_judge(JudgeConfig(kind="hf_local", model=tiny_dir, parse_retries=0,
                                    params=SamplingParams(max_tokens=6)))
    items = [PairwiseItem(prompt=f"q{i}", response_a="yes", response_b="no") for i in range(3)]
    js = judge.judge(items)
    assert [j.item_id for j in js] == [it.id for it in items]
    assert all(j.label is None and j.error.startswith("parse error") and j.raw for j in js)


def test_prefill_continues_the_assistant_message(tiny_dir):
    from rayalign.engines.hf_local import render_chat

    eng = build_engine(EngineConfig(kind="hf_local", model=tiny_dir))
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Preference: Response"}]
    text = render_chat(eng.tokenizer, msgs)
    assert text.endswith("Preference: Response")  # no end-of-turn, no new assistant header
