"""DPO and SFT with TRL under Ray Train on a tiny offline model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rayalign.models.tiny import build_tiny_causal_lm
from toy_data import toy_preference_pairs
from rayalign.training.config import DPOTrainConfig, LoraSettings, SFTTrainConfig, TrainScaling


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm")


def _dpo_cfg(**kw) -> DPOTrainConfig:
    base = dict(learning_rate=5e-3, beta=0.1, num_epochs=2, effective_batch_size=16,
                per_device_batch_size=8, max_length=64, scaling=TrainScaling(num_workers=1))
    base.update(kw)
    return DPOTrainConfig(**base)


def test_dpo_defaults_are_the_papers():
    cfg = DPOTrainConfig()
    assert cfg.learning_rate == 1e-6 and cfg.beta == 0.1
    assert cfg.lora is None and cfg.scaling.deepspeed is None


def test_dpo_raises_the_chosen_vs_rejected_margin(ray_local, tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    from rayalign.policy.dpo import run_dpo
    from toy_data import preference_margins

    pairs = toy_preference_pairs(32, seed=1)
    heldout = toy_preference_pairs(16, seed=7)
    before = preference_margins(tiny_lm, pairs)
    before_h = preference_margins(tiny_lm, heldout)
    out = run_dpo(pairs, tiny_lm, tmp_path / "dpo", _dpo_cfg())
    # A plain causal LM directory, loadable without PEFT or rayalign.
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size > 0
    after = preference_margins(out, pairs)
    after_h = preference_margins(out, heldout)
    assert after.mean() > before.mean() + 1.0
    assert np.mean(after > before) >= 0.9
    assert after_h.mean() > before_h.mean()  # generalises: it learnt the marker word
    meta = json.loads((out / "rayalign_dpo.json").read_text())
    assert meta["metrics"]["train_loss"] < meta["metrics"]["first_loss"]
    assert meta["config"]["beta"] == 0.1


@pytest.mark.slow
def test_dpo_with_lora_uses_adapter_disabled_reference_and_merges(ray_local, tiny_lm, tmp_path):
    from rayalign.policy.dpo import run_dpo
    from toy_data import preference_margins

    pairs = toy_preference_pairs(32, seed=1)
    before = preference_margins(tiny_lm, pairs)
    out = run_dpo(pairs, tiny_lm, tmp_path / "dpo_lora",
                  _dpo_cfg(learning_rate=2e-2, lora=LoraSettings(r=8, alpha=16, dropout=0.0)))
    assert not (out / "adapter_config.json").exists()  # merged into the weights
    after = preference_margins(out, pairs)
    assert after.mean() > before.mean()


@pytest.mark.slow
def test_sft_learns_the_completions(ray_local, tiny_lm, tmp_path):
    from toy_data import completion_logprobs
    from rayalign.policy.sft import run_sft

    examples = [{"prompt": f"Human: say the colour number {i}. Assistant:",
                 "completion": " red green blue"} for i in range(24)]
    prompts = [e["prompt"] for e in examples]
    before = completion_logprobs(tiny_lm, prompts, [e["completion"] for e in examples])
    cfg = SFTTrainConfig(learning_rate=5e-3, num_epochs=3, effective_batch_size=8,
                         per_device_batch_size=8, max_length=64)
    out = run_sft(examples, tiny_lm, tmp_path / "sft", cfg)
    after = completion_logprobs(out, prompts, [e["completion"] for e in examples])
    assert after.mean() > before.mean() + 2.0


def test_sft_rejects_bad_examples(tiny_lm, tmp_path):
    from rayalign.policy.sft import run_sft

    with pytest.raises(ValueError, match="example 1: field 'completion'"):
        run_sft([{"prompt": "a", "completion": "b"}, {"prompt": "a"}], tiny_lm, tmp_path,
                SFTTrainConfig())


@pytest.mark.slow
def test_deepspeed_zero2_dpo_if_installed(ray_local, tiny_lm, tmp_path):
    pytest.importorskip("deepspeed")
    from rayalign.policy.dpo import run_dpo

    cfg = _dpo_cfg(scaling=TrainScaling(num_workers=1, deepspeed=2))
    out = run_dpo(toy_preference_pairs(16, seed=1), tiny_lm, tmp_path / "ds", cfg)
    assert (out / "config.json").is_file()


def test_deepspeed_switch_without_the_package_says_how_to_install(tiny_lm, tmp_path):
    try:
        import deepspeed  # noqa: F401
        pytest.skip("deepspeed is installed")
    except ImportError:
        pass
    from rayalign.policy.dpo import run_dpo

    with pytest.raises(ValueError, match="deepspeed"):
        run_dpo(toy_preference_pairs(4), tiny_lm, tmp_path / "x",
                _dpo_cfg(scaling=TrainScaling(deepspeed=3)))
