"""The driver side of every Ray Train job (RM, SFT, DPO): one TorchTrainer around TRL.

The pattern (Ray's documented one for Hugging Face trainers):

* the driver builds a ``TorchTrainer`` whose ``RunConfig.storage_path`` is inside the job's
  output directory (or ``scaling.storage_path``, then under a run name unique to the output
  directory, see :func:`ray_run_location`), with a ``FailureConfig``: a dead worker restarts
  the whole worker group and every worker resumes from the latest reported checkpoint;
* each worker builds a TRL trainer with ``RayTrainReportCallback`` (every HF checkpoint is
  reported to Ray Train) and resumes from ``ray.train.get_checkpoint()`` when there is one —
  which is also what happens when a killed *job* is simply rerun with the same output dir;
* at the end every worker calls ``trainer.save_model`` (DeepSpeed ZeRO-3 needs all ranks to
  gather weights), rank 0 turns it into a plain ``from_pretrained`` directory (LoRA merged)
  and reports it as the final checkpoint; the driver copies it to ``output_dir/model``.

Nothing here is a trainer: TRL trains, Ray schedules, restarts and persists.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from rayalign.config import RayConfig
from rayalign.runs import atomic_write_json
from rayalign.training.config import LoraSettings, TrainHyper, TrainScaling
from rayalign.training.worker import FINAL_MARKER, trl_train_loop, trl_train_many

log = logging.getLogger(__name__)



def gradient_accumulation(hyper: TrainHyper, num_workers: int) -> int:
    """Accumulation steps so that per-device batch x workers x steps ~= effective batch."""
    per_step = hyper.per_device_batch_size * num_workers
    return max(1, math.ceil(hyper.effective_batch_size / per_step))


def deepspeed_config(stage: int | None) -> dict[str, Any] | None:
    """A ZeRO-2/3 config with every size left to the HF integration ("auto")."""
    if stage is None:
        return None
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }


def check_deepspeed_available(stage: int | None) -> None:
    if stage is None:
        return
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ValueError(
            f"scaling.deepspeed: {stage} needs the optional `deepspeed` package "
            "(pip install 'rayalign[gpu]' or DS_BUILD_OPS=0 pip install deepspeed)") from None


def base_training_args(hyper: TrainHyper, scaling: TrainScaling) -> dict[str, Any]:
    """Keyword arguments every TRL *Config gets (RewardConfig, SFTConfig, DPOConfig)."""
    use_bf16 = bool(hyper.bf16) if hyper.bf16 != "auto" else scaling.use_gpu
    return {
        "per_device_train_batch_size": hyper.per_device_batch_size,
        "per_device_eval_batch_size": hyper.per_device_batch_size,
        "gradient_accumulation_steps": gradient_accumulation(hyper, scaling.num_workers),
        "learning_rate": hyper.learning_rate,
        "num_train_epochs": hyper.num_epochs,
        "warmup_steps": hyper.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        "lr_scheduler_type": hyper.lr_scheduler_type,
        "weight_decay": hyper.weight_decay,
        "logging_steps": hyper.logging_steps,
        "save_strategy": "steps" if hyper.checkpoint_every_steps else "epoch",
        "save_steps": hyper.checkpoint_every_steps or 500,
        "save_total_limit": 1,  # Ray Train keeps its own copies of reported checkpoints
        "report_to": "none",
        "seed": hyper.seed,
        "use_cpu": not scaling.use_gpu,
        "bf16": use_bf16,
        "gradient_checkpointing": hyper.gradient_checkpointing,
        "deepspeed": deepspeed_config(scaling.deepspeed),
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,
    }


def ray_run_location(scaling: TrainScaling, output_dir: Path, kind: str) -> tuple[str, str]:
    """``(storage_path, run name)`` of the Ray Train run that trains ``kind`` into ``output_dir``.

    Ray Train restores a run from ``<storage_path>/<name>`` when that folder holds a checkpoint,
    so the pair must identify *this job's* output directory and nothing else:

    * no ``scaling.storage_path``: storage is ``<output_dir>/ray_train`` (already private to the
      output dir) and the name is ``kind`` -> ``<output_dir>/ray_train/<kind>``;
    * shared ``scaling.storage_path`` (NFS path or ``s3://`` URI): the name is
      ``<kind>-<first 12 hex of sha256(resolved output_dir)>``, so two jobs with different
      output dirs never restore each other's checkpoints (a new fit would otherwise silently
      return the previous run's model), while rerunning a killed job into the *same* output dir
      gets the same folder and resumes.
    """
    out = Path(output_dir).expanduser().resolve()
    if not scaling.storage_path:
        return str(out / "ray_train"), kind
    digest = hashlib.sha256(str(out).encode("utf-8")).hexdigest()[:12]
    return scaling.storage_path, f"{kind}-{digest}"


def run_torch_trainer(train_fn: Callable[[dict], None], loop_config: dict[str, Any],
                      scaling: TrainScaling, output_dir: Path, name: str = "train",
                      ray_cfg: RayConfig | None = None, keep_checkpoints: int | None = 2):
    """Run ``train_fn`` on ``scaling.num_workers`` Ray Train workers; return the Result.

    Checkpoints go where :func:`ray_run_location` says (``name`` is the kind: rm, sft, dpo);
    rerunning with the same ``output_dir`` picks up the latest checkpoint (Ray Train restores
    a run from its storage path and name), a different ``output_dir`` never does.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayalign.ray_utils import init_ray
    from rayalign.training.cpus import worker_resources

    check_deepspeed_available(scaling.deepspeed)
    init_ray(ray_cfg)
    storage, run_name = ray_run_location(scaling, output_dir, name)
    log.info("Ray Train run %s/%s (output dir %s)", storage, run_name, output_dir)
    trainer = TorchTrainer(
        train_loop_per_worker=train_fn,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker=worker_resources(  # CPU default: the free cores, logged
                scaling.num_workers, scaling.use_gpu, scaling.resources_per_worker)),
        run_config=RunConfig(
            name=run_name, storage_path=storage,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints)),
    )
    return trainer.fit()


def export_final_model(result, dest: Path, checkpoint=None) -> Path:
    """Copy the final model reported by rank 0 (``checkpoint``, default the run's latest) out
    of Ray storage into ``dest`` (atomically)."""
    ckpt = checkpoint if checkpoint is not None else result.checkpoint
    if ckpt is None:
        raise RuntimeError(f"training finished without a final checkpoint (error: {result.error})")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.export."))
    try:
        with ckpt.as_directory() as d:
            src = Path(d) / "final"
            if not (src / FINAL_MARKER).is_file():
                raise RuntimeError(f"the last checkpoint {ckpt.path} holds no final model")
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def is_final_model(path: Path) -> bool:
    return (Path(path) / FINAL_MARKER).is_file()




def resolve_model_dir(model_spec: str | os.PathLike) -> str:
    """A local model directory for a spec (``tiny``, ``smollm2``, a path); never a hub id."""
    from rayalign.models.registry import model_dir

    return model_dir(str(model_spec))


def count_too_long_prompts(model_dir: str, prompts: list[str], max_length: int) -> list[int]:
    """Indices of prompts that alone fill ``max_length`` tokens: TRL drops those rows
    (keep_start truncation leaves no completion), so we say so instead of losing them quietly."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [i for i, p in enumerate(prompts) if len(tok(p)["input_ids"]) >= max_length]


def train_job(kind: str, build_trainer: Callable, job: dict[str, Any], hyper: TrainHyper,
              scaling: TrainScaling, lora: LoraSettings | None, output_dir: Path,
              meta_file: str, meta: dict[str, Any], ray_cfg: RayConfig | None = None,
              fail_at_step: int | None = None) -> Path:
    """Train with ``build_trainer`` (see ``training.worker.TrainerFactory``) on Ray Train.

    ``job`` holds what the factory needs (``model_path``, rows, ...). The final model lands in
    ``output_dir/model`` with ``meta_file`` (``meta`` + config-independent facts: metrics, wall
    time). Idempotent: a finished ``output_dir`` returns at once; an interrupted one resumes.
    """
    output_dir = Path(output_dir).resolve()
    model_dir = output_dir / "model"
    if is_final_model(model_dir) and (model_dir / meta_file).is_file():
        log.info("%s already finished: %s", kind, model_dir)
        return model_dir
    loop_cfg = {
        **job, "kind": kind, "build_trainer": build_trainer,
        "training_args": base_training_args(hyper, scaling),
        "lora": None if lora is None else lora.model_dump(), "fail_at_step": fail_at_step,
        "torch_threads": int(os.environ.get("RAYALIGN_TRAIN_THREADS", "0")) or None,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run_torch_trainer(trl_train_loop, loop_cfg, scaling, output_dir, name=kind, ray_cfg=ray_cfg)
    export_final_model(result, model_dir)
    atomic_write_json(model_dir / meta_file, {
        **meta, "metrics": dict(result.metrics or {}), "wall_seconds": time.perf_counter() - t0})
    return model_dir


def train_jobs(kind: str, build_trainer: Callable, jobs: list[tuple[dict[str, Any], Path, dict[str, Any]]],
               hyper: TrainHyper, scaling: TrainScaling, lora: LoraSettings | None, meta_file: str,
               ray_cfg: RayConfig | None = None, fail_at: tuple[int, int] | None = None) -> list[Path]:
    """Several :func:`train_job` s (``(job, output_dir, meta)`` each, same hyper-parameters)
    in ONE ``TorchTrainer`` run; returns their ``output_dir/model`` directories in order.

    WHY: the worker group start-up (~17 s here) dwarfs a small fit; cross-fitted folds pay it
    once instead of k times (see ``training.worker.trl_train_many``). Finished jobs are
    skipped, so a rerun trains only what is missing; an interrupted run resumes inside the
    sub-job it was in. A single remaining job takes the ordinary :func:`train_job` path.
    """
    outs = [Path(out).resolve() for _, out, _ in jobs]
    todo = [i for i, out in enumerate(outs)
            if not (is_final_model(out / "model") and (out / "model" / meta_file).is_file())]
    if len(todo) == 1 and fail_at is None:
        job, out, meta = jobs[todo[0]]
        train_job(kind, build_trainer, job, hyper, scaling, lora, out, meta_file, meta, ray_cfg=ray_cfg)
    elif todo:
        common = Path(os.path.commonpath([str(outs[i]) for i in todo]))
        digest = hashlib.sha256("\n".join(str(outs[i]) for i in todo).encode()).hexdigest()[:12]
        batch_name = f"{kind}-batch-{digest}"
        loop_cfg = {
            "kind": kind, "build_trainer": build_trainer, "subjobs": [jobs[i][0] for i in todo],
            "training_args": base_training_args(hyper, scaling),
            "lora": None if lora is None else lora.model_dump(), "fail_at": fail_at,
            "torch_threads": int(os.environ.get("RAYALIGN_TRAIN_THREADS", "0")) or None,
        }
        log.info("%s: %d fits in one Ray Train run (%s)", kind, len(todo), batch_name)
        t0 = time.perf_counter()
        # Every checkpoint is kept: the final of each sub-job must still be there at the end.
        result = run_torch_trainer(trl_train_many, loop_cfg, scaling, common, name=batch_name,
                                   ray_cfg=ray_cfg, keep_checkpoints=None)
        wall = time.perf_counter() - t0
        finals = {int(m["rayalign_subjob"]): (c, m) for c, m in (result.best_checkpoints or [])
                  if c is not None and "rayalign_subjob" in (m or {})}
        for pos, i in enumerate(todo):
            if pos not in finals:
                raise RuntimeError(f"{kind}: the batched Ray Train run reported no final model for "
                                   f"{outs[i]} (error: {result.error})")
            ckpt, metrics = finals[pos]
            model_dir = export_final_model(result, outs[i] / "model", checkpoint=ckpt)
            atomic_write_json(model_dir / meta_file, {
                **jobs[i][2], "metrics": dict(metrics), "wall_seconds": wall, "batched_fits": len(todo)})
        storage, run_name = ray_run_location(scaling, common, batch_name)
        if not scaling.storage_path:  # every model is exported: the batch's checkpoints are spent
            shutil.rmtree(Path(storage) / run_name, ignore_errors=True)
            with contextlib.suppress(OSError):
                Path(storage).rmdir()  # only if nothing else lives there
    return [out / "model" for out in outs]
