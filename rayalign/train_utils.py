"""Glue between TRL trainers and Ray Train, shared by the RM, SFT and DPO jobs.

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

import hashlib
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from rayalign.config import RayConfig
from rayalign.policy.train_config import LoraSettings, TrainHyper, TrainScaling

log = logging.getLogger(__name__)

FINAL_MARKER = "rayalign_final.json"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# ---------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------

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


def lora_kwargs(lora: LoraSettings | None) -> dict[str, Any] | None:
    """Plain-dict LoRA settings for the worker (PEFT objects are built where they are used)."""
    return None if lora is None else lora.model_dump()


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
                      ray_cfg: RayConfig | None = None):
    """Run ``train_fn`` on ``scaling.num_workers`` Ray Train workers; return the Result.

    Checkpoints go where :func:`ray_run_location` says (``name`` is the kind: rm, sft, dpo);
    rerunning with the same ``output_dir`` picks up the latest checkpoint (Ray Train restores
    a run from its storage path and name), a different ``output_dir`` never does.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayalign.ray_utils import init_ray
    from rayalign.train_cpus import worker_resources

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
            checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    return trainer.fit()


def export_final_model(result, dest: Path) -> Path:
    """Copy the final model reported by rank 0 out of Ray storage into ``dest`` (atomically)."""
    ckpt = result.checkpoint
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


# ---------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------

def worker_setup() -> tuple[int, int]:
    """Offline env + thread count for a training worker; returns (rank, world size)."""
    import ray.train

    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))
    if cpus > 1:  # torch threads = the worker's CPU reservation (see rayalign.train_cpus)
        import torch

        torch.set_num_threads(cpus)
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def resume_checkpoint_dir() -> tuple[Path | None, str | None, Path | None]:
    """Latest Ray Train checkpoint: (local copy, HF checkpoint path, final-model dir).

    The checkpoint is copied to a local temp dir first: Ray Train prunes old checkpoints
    (``num_to_keep``) while training goes on, and on a cluster storage is remote anyway.
    A *final* checkpoint means an earlier attempt finished training and only the export was
    lost: the worker re-reports it instead of training again.
    """
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None, None, None
    d = Path(tempfile.mkdtemp(prefix="rayalign-resume-"))
    ckpt.to_directory(str(d))
    log.warning("resuming from Ray Train checkpoint %s", ckpt.path)
    if (d / "final" / FINAL_MARKER).is_file():
        return d, None, d
    hf = d / RayTrainReportCallback.CHECKPOINT_NAME
    return d, (str(hf) if hf.is_dir() else None), None


def checkpoint_step(hf_checkpoint: str | None) -> int:
    """The optimizer step an HF checkpoint was taken at (0 = fresh start)."""
    import json

    if not hf_checkpoint:
        return 0
    state = Path(hf_checkpoint) / "trainer_state.json"
    return int(json.loads(state.read_text()).get("global_step", 0)) if state.is_file() else 0


def rereport_final(rank: int, ckpt_dir: Path) -> None:
    """Report an already-finished final model again (see :func:`resume_checkpoint_dir`)."""
    import json

    import ray.train
    from ray.train import Checkpoint

    metrics = json.loads((ckpt_dir / "final" / FINAL_MARKER).read_text())
    ray.train.report(metrics=metrics,
                     checkpoint=Checkpoint.from_directory(str(ckpt_dir)) if rank == 0 else None)


def make_fault_callback(fail_at_step: int | None, first_attempt: bool, rank: int = 0):
    """Chaos hook for tests: on the first attempt, once the checkpoint at ``fail_at_step``
    is registered with Ray Train, rank 0's process dies as if its node were lost."""
    from transformers import TrainerCallback

    class _KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if first_attempt and fail_at_step is not None and state.global_step >= fail_at_step:
                import ray.train

                # Wait until the controller has the checkpoint, or the restart finds none.
                ray.train.get_all_reported_checkpoints(timeout_s=120)
                if rank == 0:
                    log.warning("fault injection: killing rank 0 after step %d", state.global_step)
                    os._exit(1)

    return _KillAfterCheckpoint()


def save_and_report_final(trainer, rank: int, make_final: Callable[[Path, Path], None],
                          metrics: dict[str, Any]) -> None:
    """All ranks save (ZeRO-3 gathers), rank 0 builds the final dir and reports it.

    ``make_final(saved_dir, final_dir)`` turns what ``trainer.save_model`` wrote (an adapter
    or a full model) into a plain ``from_pretrained`` directory.
    """
    import json

    import ray.train
    from ray.train import Checkpoint

    saved = Path(trainer.args.output_dir) / "final_save"
    trainer.save_model(str(saved))
    if rank != 0:
        ray.train.report(metrics=metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "final"
        make_final(saved, final)
        (final / FINAL_MARKER).write_text(json.dumps(metrics, default=str, indent=2))
        ray.train.report(metrics=metrics, checkpoint=Checkpoint.from_directory(tmp))


def peak_memory_bytes() -> int:
    """Peak memory of this process: CUDA allocator peak on GPU, else peak RSS."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
    except Exception:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def summarize_log_history(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each logged metric, plus the first training loss (for the record)."""
    out: dict[str, Any] = {}
    first_loss = None
    for row in history:
        if first_loss is None and "loss" in row:
            first_loss = row["loss"]
        for k, v in row.items():
            if isinstance(v, (int, float)):
                out[k] = v
    if first_loss is not None:
        out["first_loss"] = first_loss
    return out


def causal_lm_final_builder(base_path: str, tokenizer, lora: bool) -> Callable[[Path, Path], None]:
    """``make_final`` for causal LMs: merge a LoRA adapter into the base, or copy weights."""

    def make_final(saved: Path, final: Path) -> None:
        from transformers import AutoModelForCausalLM

        if lora:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_path)
            model = PeftModel.from_pretrained(base, str(saved)).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(str(saved))
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)

    return make_final


def resolve_model_dir(model_path: str | os.PathLike) -> str:
    """A local model directory (``tiny`` = the bundled tiny model); never a hub id."""
    from rayalign.policy.train_config import model_path_or_tiny

    p = Path(model_path_or_tiny(str(model_path))).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"model {model_path!r} is not a local model directory")
    return str(p.resolve())


def count_too_long_prompts(model_dir: str, prompts: list[str], max_length: int) -> list[int]:
    """Indices of prompts that alone fill ``max_length`` tokens: TRL drops those rows
    (keep_start truncation leaves no completion), so we say so instead of losing them quietly."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [i for i, p in enumerate(prompts) if len(tok(p)["input_ids"]) >= max_length]
