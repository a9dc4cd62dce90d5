"""LoRA reward model on Ray Train: learns a separable toy set, survives a killed worker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rayalign.models.tiny import build_tiny_causal_lm
from toy_data import toy_preference_pairs
from rayalign.training.config import LoraSettings, TrainScaling
from rayalign.rewards.lora import LoraRewardBackend, LoraRMConfig, train_lora_rm
from rayalign.rewards.rm_dir import encode
from rayalign.training.ray_train import base_training_args, gradient_accumulation


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm")


def _cfg(base, workers=1, **kw) -> LoraRMConfig:
    return LoraRMConfig(
        base_model=str(base), learning_rate=3e-3, num_epochs=3, effective_batch_size=16,
        per_device_batch_size=8, max_length=64, checkpoint_every_steps=2,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        scaling=TrainScaling(num_workers=workers, max_failures=1), **kw)


def test_defaults_follow_the_paper_and_batch_math():
    cfg = LoraRMConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.learning_rate, cfg.num_epochs,
            cfg.effective_batch_size, cfg.warmup_ratio) == (32, 64, 1e-4, 2.0, 128, 0.1)
    # 8 per device x 4 workers x 4 accumulation = 128 pairs per optimizer step
    assert gradient_accumulation(cfg, 4) == 4
    args = base_training_args(cfg, TrainScaling(num_workers=2))
    assert args["gradient_accumulation_steps"] == 8 and args["use_cpu"] and not args["bf16"]
    # transformers 5 reads a warmup_steps float in [0, 1) as a ratio of the training steps
    assert args["warmup_steps"] == 0.1
    # the RM's warm-up default is its own: SFT and DPO keep theirs
    from rayalign.training.config import DPOTrainConfig, SFTTrainConfig
    assert SFTTrainConfig().warmup_ratio == DPOTrainConfig().warmup_ratio == 0.0
    assert base_training_args(cfg, TrainScaling(use_gpu=True))["bf16"] is True
    with pytest.raises(Exception):
        LoraRMConfig(learning_rate=0)
    with pytest.raises(Exception):
        LoraRMConfig(lora_rank=3)  # unknown field


def test_encode_keeps_the_end_and_appends_eos(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    long_prompt = "the quick brown fox " * 50
    ids = encode(tok, long_prompt, " wonderful answer", max_length=16)
    assert len(ids) == 16 and ids[-1] == tok.eos_token_id
    assert "wonderful answer" in tok.decode(ids)


def test_encode_lays_out_hh_text_as_trl_does(tiny_lm):
    """RM training and scoring see "Assistant: reply" (TRL's layout), not "Assistant:reply"."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    prompt = "\n\nHuman: Can you help?\n\nAssistant:"
    ids = encode(tok, prompt, "No, sorry!", max_length=512)
    assert ids == tok(prompt + " No, sorry!" + tok.eos_token)["input_ids"]


def test_backend_refuses_fractional_weights(tmp_path):
    backend = LoraRewardBackend(LoraRMConfig())
    item = toy_preference_pairs(1)[0].to_pairwise(True)
    with pytest.raises(ValueError, match="whole number"):
        backend.fit([item], ["A"], [1.5], tmp_path)


@pytest.mark.parametrize("kill_at", [None, pytest.param(2, marks=pytest.mark.slow)],
                         ids=["two_workers", "two_workers_rank0_killed"])
def test_two_workers_rank_heldout_pairs(ray_local, tiny_lm, tmp_path, kill_at):
    """One 2-worker run shared by several assertions (a TorchTrainer costs ~40 s here).

    Slow variant: rank 0 is killed after the step-2 checkpoint; Ray Train restarts the
    worker group, which resumes from that checkpoint (not from scratch) and finishes."""
    from rayalign.rewards.scoring import score_pairs

    train, heldout = toy_preference_pairs(48, seed=1), toy_preference_pairs(24, seed=2)
    out = tmp_path / "rm"
    model_dir = train_lora_rm(train, _cfg(tiny_lm, workers=2), out, _fail_at_step=kill_at)

    meta = json.loads((model_dir / "rayalign_rm.json").read_text())
    m = meta["metrics"]
    assert m["world_size"] == 2
    assert m["resumed_from_step"] == (kill_at or 0)
    assert m["global_step"] == 9                # 48 pairs / 16 per step x 3 epochs
    assert m["train_loss"] < m["first_loss"]
    assert any(p.name.startswith("checkpoint_") for p in (out / "ray_train" / "rm").iterdir())

    items = [p.to_pairwise(a_is_chosen=(i % 2 == 0)) for i, p in enumerate(heldout)]
    rewards = score_pairs(model_dir, items, batch_size=8, num_actors=1)
    assert rewards.shape == (24, 2) and np.isfinite(rewards).all()
    pred = np.where(rewards[:, 0] > rewards[:, 1], "A", "B")
    acc = float(np.mean(pred == np.array([it.label for it in items])))
    assert acc >= 0.9, acc

    # A finished output dir is reused, never retrained.
    assert train_lora_rm(train, _cfg(tiny_lm, workers=2), out) == model_dir


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_last_checkpoint(tmp_path):
    """Kill the whole `rayalign rm train` process (driver, embedded Ray and workers) after
    its first checkpoint; the same command again continues from that checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).parent / "rayalign"
    run_dir = tmp_path / "rm_run"
    cmd = [str(exe), "rm", "train", "--config", "jobs/configs/rm_tiny.yaml",
           "--run-dir", str(run_dir), "--set", "rm.checkpoint_every_steps=2"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpts = run_dir / "ray_train" / "rm"
    deadline = time.monotonic() + 300
    try:
        while not (ckpts.is_dir() and any(p.name.startswith("checkpoint_")
                                          and (p / "checkpoint" / "trainer_state.json").is_file()
                                          for p in ckpts.iterdir())):
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (run_dir / "model" / "rayalign_rm.json").exists()

    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads((run_dir / "model" / "rayalign_rm.json").read_text())
    assert meta["metrics"]["resumed_from_step"] >= 2
    assert meta["metrics"]["global_step"] == 12  # 64 pairs / 16 x 3 epochs
    assert "held-out preference accuracy" in out.stdout


@pytest.mark.parametrize("n, fail_at", [(2, None), pytest.param(3, (1, 2), marks=pytest.mark.slow)],
                         ids=["two_fits", "three_fits_killed_in_the_second"])
def test_several_fits_share_one_ray_train_run(ray_local, tiny_lm, tmp_path, n, fail_at):
    """Cross-fitted folds train in ONE TorchTrainer run (issue 16: the start-up dwarfs a small
    fit) and each gets exactly the model it would get alone. Slow variant: the worker dies in
    the second fit after its step-2 checkpoint; the restarted group skips the finished first
    fit, resumes the second from that checkpoint, and trains the third."""
    from rayalign.rewards.base import FitJob, fit_all
    from rayalign.rewards.lora import train_lora_rms

    data = [toy_preference_pairs(32, seed=s) for s in (3, 4, 5)[:n]]
    cfg = _cfg(tiny_lm, workers=1)
    outs = [tmp_path / f"fold_{i}" for i in range(n)]
    dirs = train_lora_rms([(pairs, out) for pairs, out in zip(data, outs)], cfg, _fail_at=fail_at)
    metas = [json.loads((d / "rayalign_rm.json").read_text()) for d in dirs]
    assert [m["batched_fits"] for m in metas] == [n] * n
    assert [m["num_pairs"] for m in metas] == [32] * n
    assert [m["metrics"]["global_step"] for m in metas] == [6] * n  # 32 / 16 x 3 epochs
    assert [m["metrics"]["rayalign_subjob"] for m in metas] == list(range(n))
    if fail_at:
        assert metas[1]["metrics"]["resumed_from_step"] == 2
        assert metas[2]["metrics"]["resumed_from_step"] == 0
    assert not (tmp_path / "ray_train").exists()  # the batch's checkpoints are removed once exported

    # The second fit alone, in its own run, gives the same reward model.
    alone = train_lora_rm(data[1], cfg, tmp_path / "alone")
    backend = LoraRewardBackend(cfg)
    items = [p.to_pairwise(a_is_chosen=(i % 2 == 0)) for i, p in enumerate(toy_preference_pairs(12, seed=9))]
    np.testing.assert_allclose(backend.reward_diff(dirs[1], items), backend.reward_diff(alone, items),
                               atol=1e-4)
    # Finished fits are never retrained: fit_all returns the same directories at once.
    jobs = [FitJob([p.to_pairwise(True) for p in pairs], ["A"] * len(pairs), [1.0] * len(pairs), out)
            for pairs, out in zip(data, outs)]
    mtime = (dirs[0] / "rayalign_rm.json").stat().st_mtime
    assert fit_all(backend, jobs) == dirs
    assert (dirs[0] / "rayalign_rm.json").stat().st_mtime == mtime
